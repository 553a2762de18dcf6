"""Helpers to run the venv's snakemake on a copy of the workflow and read what it says."""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")
#: What a copy of the workflow needs (no outputs, caches or metadata).
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "envs", "src", "profiles")
_IGNORE = shutil.ignore_patterns(".snakemake", "results", "logs", "benchmarks", "__pycache__")


def env() -> dict[str, str]:
    """The environment for subprocesses: the venv's binaries first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow's sources (not its outputs) to ``dest``; mtimes are kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if not src.exists():  # profiles/ (the default workflow profile) is optional
            continue
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=_IGNORE)
        else:
            shutil.copy2(src, dest / part)
    return dest


def run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``cwd``; stdout and stderr together in ``.stdout``.

    Targets must come before ``--configfile`` (which takes several values).
    """
    return subprocess.run(
        [SNAKEMAKE, *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def job_stats(output: str) -> dict[str, int]:
    """The first ``Job stats:`` table of a snakemake run: rule -> count (without 'total')."""
    lines = output.splitlines()
    try:
        start = lines.index("Job stats:") + 3  # title, header, rule of dashes
    except ValueError:
        return {}
    stats = {}
    for line in lines[start:]:
        m = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not m or m.group(1) == "total":
            break
        stats[m.group(1)] = int(m.group(2))
    return stats


def jobs(output: str) -> dict[str, str]:
    """Each job of a (dry) run: its first output (or rule name) -> its ``reason:`` line."""
    found = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        m = re.match(r"rule (\w+):", block)
        if not m:
            continue
        out = re.search(r"^\s+output: ([^,\s]+)", block, re.M)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        found[out.group(1) if out else m.group(1)] = reason.group(1) if reason else ""
    return found


def job_inputs(output: str) -> dict[str, list[str]]:
    """Each job of a (dry) run: its first output (or rule name) -> its ``input:`` files."""
    found = {}
    for block in re.split(r"\n(?=rule \w+:)", output):
        m = re.match(r"rule (\w+):", block)
        if not m:
            continue
        out = re.search(r"^\s+output: ([^,\s]+)", block, re.M)
        inp = re.search(r"^\s+input: (.*)$", block, re.M)
        found[out.group(1) if out else m.group(1)] = inp.group(1).split(", ") if inp else []
    return found


def write_config(dest: Path, edit: Callable[[dict], object], *, base: Path | None = None) -> Path:
    """A copy of config/test.yaml with ``edit`` applied, keys in their original order."""
    with open(base or REPO / "config" / "test.yaml") as f:
        config = yaml.safe_load(f)
    edit(config)
    with open(dest, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return dest


def set_key(*keys_and_value) -> Callable[[dict], None]:
    """An edit for ``write_config``: ``set_key("sky", "npix", 32)`` sets config.sky.npix."""
    *keys, value = keys_and_value

    def edit(config: dict) -> None:
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


def del_key(*keys) -> Callable[[dict], None]:
    """An edit for ``write_config`` that removes a key."""

    def edit(config: dict) -> None:
        node = config
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return edit
