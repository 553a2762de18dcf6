"""Imported first by every rule script: this checkout's szmass, quiet TensorFlow, the rule's log.

- Puts this checkout's ``src/`` first on ``sys.path``, so that the scripts run the szmass of the
  workflow they belong to, also inside a per-rule conda env (``--use-conda``) where it is not
  installed.
- Importing ``szmass`` hides TensorFlow's C++ start-up lines before any script imports it
  (``szmass.logs.quiet_tensorflow``; ``SZMASS_TF_LOGS=1`` shows them).
- Run by Snakemake (a ``snakemake`` object in the script's globals), sends the ``szmass`` logger
  and any uncaught exception, with its traceback, to the rule's log before the script's own
  imports run, so that a job that fails anywhere, an import included, says why in its log.
"""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
# First, even where it is already on the path: Snakemake's preamble appends the parent process's
# path (this src/ among it) after the entries of an installed szmass's .pth file.
sys.path[:] = [SRC, *(p for p in sys.path if p != SRC)]

from szmass.logs import quiet_tensorflow, setup_logging  # noqa: E402

quiet_tensorflow()
_snakemake = getattr(sys.modules.get("__main__"), "snakemake", None)
if _snakemake is not None and len(_snakemake.log):
    setup_logging(_snakemake.log[0])
