import sys

from meshaccel_e2e.cli import main

sys.exit(main())
