"""`python -m hpt.runtime.warm`: the warm interpreter (fork_server.py)."""

import sys

from hpt.runtime.warm.fork_server import main

sys.exit(main())
