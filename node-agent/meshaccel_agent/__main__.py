import sys

from meshaccel_agent.main import main

sys.exit(main())
