"""`python -m ami_lifecycle_cli`: the same as the `ami-lifecycle` command."""

import sys

from .main import main

sys.exit(main())
