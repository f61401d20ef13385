"""``python -m sim --seed N``: see ``sim.cli``."""

import sys

from sim.cli import main

sys.exit(main())
