"""`python -m load.replay SCENARIO --out DIR` (the same as `waitroom replay`)."""

import sys

from .cli import main

sys.exit(main())
