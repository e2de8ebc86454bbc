import sys

from xivo_bus.cli import main

sys.exit(main())
