"""szmass: galaxy-cluster masses from SZ maps (Gupta & Reichardt 2020, arXiv:2003.06135).

Importing szmass before TensorFlow keeps TensorFlow's C++ start-up lines (oneDNN, absl) out of
the terminal and the rule logs; ``SZMASS_TF_LOGS=1`` shows them (``szmass.logs.quiet_tensorflow``).
"""

from importlib.metadata import PackageNotFoundError, version

from .logs import quiet_tensorflow

quiet_tensorflow()

try:
    __version__ = version("szmass")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
