import sys

from backmark.cli.main import main

sys.exit(main())
