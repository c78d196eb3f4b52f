"""`python -m dagfast.cli`: the console script without installing it."""

import sys

from dagfast.cli import main

sys.exit(main())
