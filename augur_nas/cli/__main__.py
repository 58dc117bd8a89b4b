"""``python -m augur_nas.cli``."""

import sys

from . import main

sys.exit(main())
