"""`python -m hpt.runtime.warm`: the warm interpreter (server.py)."""

import sys

from hpt.runtime.warm.server import main

sys.exit(main())
