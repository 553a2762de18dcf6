"""Workflow fixtures: fresh copies of the workflow, and one tiny run per session."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import smk


@dataclass(frozen=True)
class TinyRun:
    path: Path  # the run directory (a copy of the workflow, with results/)
    output: str  # what snakemake printed


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    """A fresh copy of the workflow's sources, without any outputs."""
    return smk.copy_workflow(tmp_path / "wf")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """``snakemake --cores 2 --configfile config/test.yaml`` in a copy, once per session.

    Tests must not change it; copy it (``tiny_run_copy``) to experiment.
    """
    path = smk.copy_workflow(tmp_path_factory.mktemp("tiny") / "wf")
    proc = smk.run(path, "--cores", "2", "--configfile", "config/test.yaml", timeout=600)
    if proc.returncode:
        pytest.fail(f"the tiny run failed (exit {proc.returncode}):\n{proc.stdout[-5000:]}")
    return TinyRun(path, proc.stdout)


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the finished tiny run (outputs, logs and .snakemake metadata, mtimes kept)."""
    dest = tmp_path / "wf"
    shutil.copytree(
        tiny_run.path,
        dest,
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return dest
