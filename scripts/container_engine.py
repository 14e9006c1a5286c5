"""hpt's own Docker engine, as CI and the README start it from a checkout:

    eval "$(python scripts/container_engine.py start)"
    python scripts/container_engine.py stop

The tool ships with hpt (`python -m hpt.runtime.container_engine`); this runs that module
from the checkout, with the machine's Python too (it needs only the standard library).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpt.runtime.container_engine import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
