"""szmass: galaxy-cluster masses from SZ maps (Gupta & Reichardt 2020, arXiv:2003.06135)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("szmass")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
