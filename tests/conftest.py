"""Fixtures shared by every test suite: the repository and its two configurations; and the
rule that a skipped test fails the run (no_skips.py); and which tests share an xdist worker."""

import copy
import os
from pathlib import Path

import pytest
import yaml
from no_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

REPO = Path(__file__).resolve().parents[1]

with open(REPO / "config" / "config.yaml") as _f:
    _PAPER_CONFIG = yaml.safe_load(_f)
with open(REPO / "config" / "test.yaml") as _f:
    _TEST_CONFIG = yaml.safe_load(_f)


@pytest.fixture
def repo() -> Path:
    """The repository root (where the Snakefile is)."""
    return REPO


@pytest.fixture
def paper_config() -> dict:
    """A fresh copy of config/config.yaml (the paper's setup); tests may edit it."""
    return copy.deepcopy(_PAPER_CONFIG)


@pytest.fixture
def test_config() -> dict:
    """A fresh copy of config/test.yaml (the tiny setup); tests may edit it."""
    return copy.deepcopy(_TEST_CONFIG)


# --- two workers (pytest-xdist, ``-n auto`` in pyproject.toml) -----------------------------
#
# Each test file runs on one worker (its module fixtures are built once), the files that read
# the tiny run of the whole DAG (~3 minutes, a session fixture) all on the same one, so do the
# physics tests (CAMB's spectra, a session fixture), and the
# longest of these units are handed out first. (xdist's own ``--dist loadgroup`` cannot be
# used: it renames items through ``Item._nodeid``, which pytest 9.2 no longer reads.)

#: The files whose tests use the ``tiny_run`` fixture: one unit of work, so one tiny run.
TINY_RUN_FILES = ("tests/workflow/test_tiny_run.py", "tests/workflow/test_killed.py")
#: Units handed out first, on their own workers: the longest chains.
FIRST_UNITS = ("tiny_run", "tests/unit/network/test_train.py")


def _unit(nodeid: str) -> str:
    """The unit of work (sent whole to one worker) of the test ``nodeid``."""
    path = nodeid.split("::", 1)[0]
    if path in TINY_RUN_FILES:
        return "tiny_run"
    # the physics tests share session fixtures (CAMB at the paper's settings: ~5 s)
    return "physics" if path.startswith("tests/physics/") else path


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
    stray = [
        i.nodeid for i in items if "tiny_run" in i.fixturenames and _unit(i.nodeid) != "tiny_run"
    ]
    if stray:
        raise pytest.UsageError(f"add the files of {stray} to TINY_RUN_FILES in tests/conftest.py")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the order xdist hands out the units in
        rank = {unit: i for i, unit in enumerate(FIRST_UNITS)}
        items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(rank)))
