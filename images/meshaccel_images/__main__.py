import sys

from meshaccel_images.build import main

sys.exit(main())
