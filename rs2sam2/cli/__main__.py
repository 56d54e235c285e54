"""``python -m rs2sam2.cli …`` (the same as ``rs2sam2 …``)."""

import sys

from . import main

sys.exit(main())
