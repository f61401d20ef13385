"""``python -m soak``: see ``soak.cli``."""

import sys

from soak.cli import main

sys.exit(main())
