import sys

from meshaccel_operator.main import main

sys.exit(main())
