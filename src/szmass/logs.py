"""Logging set-up (the rule's log, uncaught exceptions) and progress lines for long work."""

import logging
import os
import sys
import time


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
