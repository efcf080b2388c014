"""``python -m robustlab.studies``: see `robustlab.studies.cli`."""

import sys

from .cli import main

sys.exit(main())
