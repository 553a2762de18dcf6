"""Helpers to run the venv's snakemake on a copy of the workflow and read what it says."""

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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

    Targets must come before ``--configfile`` (which takes several values). The command runs
    in a fork of a process that has imported Snakemake once (``_Forker``): the same CLI,
    without its ~1 s of imports each time; ``SZMASS_TEST_SNAKEMAKE_FORK=0`` runs a fresh
    ``snakemake`` process instead.
    """
    if os.environ.get(FORK_SWITCH, "1") == "0":
        return subprocess.run(
            [SNAKEMAKE, *args],
            cwd=cwd,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    return _forker().run(cwd, list(args), timeout)


FORK_SWITCH = "SZMASS_TEST_SNAKEMAKE_FORK"
#: The fork server: imports Snakemake (not szmass: each workflow copy imports its own src/),
#: then for each request (a JSON line: cwd, argv, environment, output file) forks a child that runs
#: snakemake's CLI there with stdout and stderr in the file, and answers its pid, then its
#: exit status.
_SERVER = """
import json, os, sys
import snakemake.cli
snakemake.cli.get_argument_parser()  # loads the plugin registries once
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = ["snakemake", *req["args"]]
            try:
                snakemake.cli.main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


class _Forker:
    """One fork server per test process (started on first use)."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            env=env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()

    def run(self, cwd: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.txt"
            req = {"cwd": str(cwd), "args": args, "out": str(out), "env": env()}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            pid = int(self.proc.stdout.readline())
            timed_out = threading.Event()

            def kill():
                timed_out.set()
                os.kill(pid, signal.SIGKILL)

            killer = threading.Timer(timeout, kill)
            killer.daemon = True
            killer.start()
            try:
                code = int(self.proc.stdout.readline())
            finally:
                killer.cancel()
            text = out.read_text(errors="replace") if out.exists() else ""
            if timed_out.is_set():
                raise subprocess.TimeoutExpired(["snakemake", *args], timeout, output=text)
            return subprocess.CompletedProcess(["snakemake", *args], code, text)


@functools.cache
def _forker() -> _Forker:
    return _Forker()


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
