"""Fixtures shared by every test suite: the repository and its two configurations; and the
rule that a skipped test fails the run (no_skips.py)."""

import copy
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
