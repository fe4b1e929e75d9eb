"""``python -m daemon`` is the ``avid`` command."""

import sys

from daemon.cli import main

sys.exit(main())
