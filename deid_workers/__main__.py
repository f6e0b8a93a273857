"""``python -m deid_workers`` is ``deid-submit``."""

import sys

from .cli import main

sys.exit(main())
