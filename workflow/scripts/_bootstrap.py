"""Put this checkout's ``src/`` first on ``sys.path``.

Rule scripts import ``_bootstrap`` before ``szmass`` so that they run the szmass of the workflow
they belong to, also inside a per-rule conda env (``--use-conda``) where it is not installed.
"""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
