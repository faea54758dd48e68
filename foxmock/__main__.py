"""``python -m foxmock``."""

import sys

from foxmock.cli import main

sys.exit(main())
