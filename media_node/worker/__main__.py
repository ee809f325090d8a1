"""`python -m media_node.worker`: one worker process of a node, started by its
supervisor (app.py)."""

from __future__ import annotations

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
