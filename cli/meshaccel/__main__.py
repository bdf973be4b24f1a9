import sys

from meshaccel.cli import main

sys.exit(main())
