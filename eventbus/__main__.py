"""``python -m eventbus`` is the ``eventbus`` command."""

import sys

from eventbus.cli import main

sys.exit(main())
