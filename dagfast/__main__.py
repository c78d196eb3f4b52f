"""`python -m dagfast` is the `dagfast` command."""

import sys

from .cli import main

sys.exit(main())
