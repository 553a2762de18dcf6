"""Logging set-up, quiet TensorFlow start-up, and progress lines for long work."""

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
import time

#: Set to 1 to see TensorFlow's C++ log lines, which ``quiet_tensorflow`` hides otherwise.
TF_LOGS_ENV = "SZMASS_TF_LOGS"

#: TensorFlow's C++ log level while ``SZMASS_TF_LOGS`` is unset: 3 hides INFO, WARNING and ERROR
#: lines. 2 is not enough: at the first training step oneDNN logs an E line, "oneDNN supports
#: DT_INT32 only on platforms with AVX-512. Falling back to the default Eigen-based
#: implementation" (measured with TF 2.21: shown at 2, gone at 3). Failures still raise Python
#: exceptions with TensorFlow's message.
TF_QUIET_LEVEL = "3"

#: A line of TensorFlow's C++ (absl) log: severity and date, time (before absl is set up,
#: 00:00:<epoch seconds>), thread, file:line].
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
#: What absl prints before the first line it logs before TensorFlow has set its log level.
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called"
#: The second line of cpu_feature_guard.cc's INFO message.
_CONTINUATION = b"To enable the following instructions:"


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the ``szmass`` logger to ``log_path`` (a rule's log) and to stderr.

    An uncaught exception is logged there too, with its traceback (``log_uncaught_exceptions``),
    so a failed job's log says why. Calling it again with the same path keeps the open file
    (``workflow/scripts/_bootstrap.py`` calls it before the script's imports, then the script).
    """
    logger = logging.getLogger("szmass")
    logger.setLevel(level)
    path = os.path.abspath(log_path) if log_path else None
    kept = [
        h for h in logger.handlers if isinstance(h, logging.FileHandler) and h.baseFilename == path
    ]
    for handler in logger.handlers:
        if handler not in kept:
            handler.close()
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        handlers += kept or [logging.FileHandler(path, mode="w")]
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    log_uncaught_exceptions(logger)
    return logger


def log_uncaught_exceptions(logger: logging.Logger) -> None:
    """Make ``sys.excepthook`` log an uncaught exception with its traceback to ``logger``.

    The hook that was installed before is called after, unless it is Python's default, which
    would print the traceback to stderr a second time (the logger already writes it there).
    """
    previous = getattr(sys.excepthook, "szmass_previous", sys.excepthook)

    def hook(exc_type, exc, tb):
        try:
            logger.critical(
                "uncaught %s: the job fails", exc_type.__name__, exc_info=(exc_type, exc, tb)
            )
        except Exception:  # the log cannot be written: print it as Python would
            sys.__excepthook__(exc_type, exc, tb)
        if previous is not sys.__excepthook__:
            previous(exc_type, exc, tb)

    hook.szmass_previous = previous  # type: ignore[attr-defined]
    sys.excepthook = hook


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ log lines (start-up, then INFO to ERROR), unless ``SZMASS_TF_LOGS=1``.

    Call before TensorFlow is imported (``import szmass`` does). It sets only the log level,
    ``TF_CPP_MIN_LOG_LEVEL`` = ``TF_QUIET_LEVEL`` where the user has not set it; never
    ``TF_ENABLE_ONEDNN_OPTS``, which changes the numerics. The lines TensorFlow logs while it
    loads, before that level applies ("oneDNN custom operations are on", absl's "All log
    messages before absl::InitializeLog()"), are taken out of stderr during ``import
    tensorflow`` when the level would hide them; every other line passes through.
    """
    if os.environ.get(TF_LOGS_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_QUIET_LEVEL)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietImport())


def _min_severity() -> int:
    """Index in "IWEF" of the least severe line TF_CPP_MIN_LOG_LEVEL lets through."""
    try:
        return min(max(int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")), 0), 3)
    except ValueError:
        return 0


def filter_tf_startup(text: bytes, min_severity: int) -> bytes:
    """``text`` without the absl log lines below ``min_severity`` (0 I, 1 W, 2 E, 3 F)."""
    kept, dropped = [], False
    for line in text.splitlines(keepends=True):
        m = _ABSL_LINE.match(line)
        if m:
            dropped = "IWEF".index(m.group(1).decode()) < min_severity
        elif line.startswith(_ABSL_PREAMBLE):
            dropped = min_severity > 0
        elif not (dropped and line.startswith(_CONTINUATION)):
            dropped = False
        if not dropped:
            kept.append(line)
    return b"".join(kept)


@contextlib.contextmanager
def _filtered_stderr():
    """Collect what is written to file descriptor 2 (C++ included); write back what is kept."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_tf_startup(tmp.read(), _min_severity())
            while rest:
                rest = rest[os.write(2, rest) :]


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` inside ``_filtered_stderr``, then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        for finder in sys.meta_path:
            spec = (
                finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            )
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # as if imported plainly
        with _filtered_stderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class Progress:
    """Periodic progress lines with rate and ETA: ``done/total, items/s, ETA``."""

    def __init__(self, total: int, what: str, logger: logging.Logger, every_s: float = 5.0):
        self.total, self.what, self.logger, self.every_s = total, what, logger, every_s
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.logger.info(
                "%s: %d/%d (%.3g/s, ETA %.0f s)", self.what, self.done, self.total, rate, eta
            )
