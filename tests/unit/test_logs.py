"""szmass.logs: the rule log and periodic progress lines with rate and ETA."""

import logging
import re

import pytest

from szmass import logs
from szmass.logs import Progress, setup_logging


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(logs.time, "perf_counter", fake)
    return fake


@pytest.fixture
def logger():
    return logging.getLogger("szmass.test_progress")


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "szmass.test_progress"]


def test_progress_line_has_rate_and_eta(clock, logger, caplog):
    caplog.set_level(logging.INFO, logger="szmass.test_progress")
    progress = Progress(10, "maps", logger, every_s=5.0)
    clock.now += 6.0
    progress.update(6)  # 6 maps in 6 s: 1/s, 4 left: ETA 4 s
    clock.now += 2.0
    progress.update(2)  # only 2 s since the last line: silent
    clock.now += 2.0
    progress.update(2)  # the last one always reports
    assert _messages(caplog) == [
        "maps: 6/10 (1/s, ETA 4 s)",
        "maps: 10/10 (1/s, ETA 0 s)",
    ]


def test_progress_rate(clock, logger, caplog):
    caplog.set_level(logging.INFO, logger="szmass.test_progress")
    progress = Progress(1000, "maps", logger, every_s=1.0)
    clock.now += 2.0
    progress.update(400)  # 200/s, 600 left: ETA 3 s
    (line,) = _messages(caplog)
    assert re.fullmatch(r"maps: 400/1000 \(200/s, ETA 3 s\)", line)


def test_setup_logging_writes_the_rule_log(tmp_path):
    path = tmp_path / "rule.log"
    log = setup_logging(str(path))
    try:
        progress = Progress(2, "cluster profiles", logging.getLogger("szmass.simulate"))
        progress.update(2)
        log.info("wrote %s", "x.zarr")
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    text = path.read_text()
    assert re.search(r"INFO szmass\.simulate: cluster profiles: 2/2 \([0-9.e+]+/s, ETA 0 s\)", text)
    assert "INFO szmass: wrote x.zarr" in text
