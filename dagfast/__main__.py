"""`python -m dagfast` is the `dagfast` command."""

import sys

from dagfast.cli import main

sys.exit(main())
