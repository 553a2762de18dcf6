"""Logging set-up and progress lines for long work."""

import logging
import sys
import time


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Send the ``szmass`` logger to ``log_path`` (a rule's log) and to stderr."""
    logger = logging.getLogger("szmass")
    logger.setLevel(level)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


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
