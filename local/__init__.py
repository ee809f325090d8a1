"""Parlor on one machine: the embedded AWS, the local token issuer and `make up`."""

import sys
from pathlib import Path

# The control plane's code lives in functions/ (Chalice's layout); the local runtime
# runs that same code, so it puts the folder on the import path.
_FUNCTIONS = str(Path(__file__).resolve().parent.parent / "functions")
if _FUNCTIONS not in sys.path:
    sys.path.insert(0, _FUNCTIONS)
