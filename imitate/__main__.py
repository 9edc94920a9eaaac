"""``python -m imitate``: the same as the ``imitate`` command."""

import sys

from imitate.cli import main

sys.exit(main())
