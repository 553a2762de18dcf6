"""A killed job never leaves something that looks finished, and snakemake reruns it; a hard
kill's lock goes with ``snakemake --unlock``; a corrupt shard's error gives the command that
rebuilds it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from szmass.config import shard_spec
from szmass.io import ShardError, open_shard

from . import smk

pytestmark = pytest.mark.slow

with open(smk.REPO / "config" / "test.yaml") as _f:
    CONFIG = yaml.safe_load(_f)
SPECTRA = "results/spectra/spectra.ecsv"

#: Simulates one shard in a child process; READY marks the end of the imports.
SCRIPT = """
import json, sys
from szmass.logs import setup_logging
from szmass.sky.simulate import simulate_shard
setup_logging(None)
kwargs = json.loads(sys.argv[1])
print("READY", flush=True)
simulate_shard(**kwargs)
print("DONE", flush=True)
"""


def _start_shard(tiny_run, out_path: Path, n_realizations: int) -> subprocess.Popen:
    spec = shard_spec(CONFIG, "grid", "M2")
    spec["n_realizations"] = n_realizations  # ~500 maps/s on one core
    kwargs = {"spectra_path": str(tiny_run.path / SPECTRA), "out_path": str(out_path), **spec}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=smk.env(),
    )
    watchdog = threading.Timer(120, proc.kill)  # never hang the suite
    watchdog.daemon = True
    watchdog.start()
    proc.watchdog = watchdog
    assert proc.stdout.readline().strip() == "READY", proc.communicate()
    return proc


def _kill(proc: subprocess.Popen) -> str:
    """SIGKILL ``proc``, which must still be running; returns its stderr."""
    assert proc.poll() is None, "the job finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=30)
    proc.watchdog.cancel()
    assert proc.returncode == -signal.SIGKILL
    assert "DONE" not in stdout
    return stderr


def _assert_nothing_finished(out_path: Path, pid: int) -> list[str]:
    assert not out_path.exists()
    left = os.listdir(out_path.parent) if out_path.parent.exists() else []
    assert set(left) <= {f".{out_path.name}.tmp-{pid}"}, left
    return left


def test_killed_while_simulating(tiny_run, tmp_path):
    out_path = tmp_path / "sims" / "grid" / "M2.zarr"
    proc = _start_shard(tiny_run, out_path, n_realizations=3000)  # ~6 s of maps
    time.sleep(1.5)
    stderr = _kill(proc)
    assert "wrote" not in stderr, stderr
    _assert_nothing_finished(out_path, proc.pid)


def test_killed_while_writing(tiny_run, tmp_path):
    out_path = tmp_path / "sims" / "grid" / "M2.zarr"
    proc = _start_shard(tiny_run, out_path, n_realizations=2000)  # ~0.7 s to write
    tmp = out_path.with_name(f".{out_path.name}.tmp-{proc.pid}")
    deadline = time.monotonic() + 100
    while not tmp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert tmp.exists(), "the temporary store never appeared"
    _kill(proc)
    assert _assert_nothing_finished(out_path, proc.pid) == [tmp.name]


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never said {text!r} (snakemake exit {proc.poll()})")


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped
    except psutil.NoSuchProcess:
        return True


def test_killed_snakemake_job_is_rerun(tiny_run, workflow_copy):
    """Kill snakemake and its job mid-shard: the dry run then wants that shard again."""
    (workflow_copy / "results" / "spectra").mkdir(parents=True)
    shutil.copy2(tiny_run.path / SPECTRA, workflow_copy / SPECTRA)

    def bigger(config):
        config["grid"]["n_realizations"] = 2000

    config = smk.write_config(workflow_copy / "big.yaml", bigger)
    target = "results/sims/grid/M1.zarr"
    proc = subprocess.Popen(
        [smk.SNAKEMAKE, target, "--cores", "1", "--configfile", str(config)],
        cwd=workflow_copy,
        env=smk.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(workflow_copy / "logs/simulate_shard/grid/M1.log", "simulating", proc)
        time.sleep(1.0)
        job = psutil.Process(proc.pid).children(recursive=True)
        assert job, "snakemake has no running job"
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job: one process group
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(job, timeout=10)
    assert all(_dead(p) for p in alive), alive
    assert not (workflow_copy / target).exists()

    # SIGKILL left Snakemake's lock: the next run stops at once and says what to do (README,
    # "Interrupted runs"); `snakemake --unlock`, with no --configfile, removes it.
    locked = smk.run(workflow_copy, target, "--cores", "1", "--configfile", str(config))
    assert locked.returncode != 0 and "--unlock" in locked.stdout, locked.stdout
    assert "Directory cannot be locked" in locked.stdout, locked.stdout
    unlocked = smk.run(workflow_copy, "--unlock")
    assert unlocked.returncode == 0 and "Unlocked" in unlocked.stdout, unlocked.stdout
    assert not list((workflow_copy / ".snakemake" / "locks").glob("*"))

    dry = smk.run(workflow_copy, "-n", target, "--configfile", str(config))
    assert dry.returncode == 0, dry.stdout
    assert smk.job_stats(dry.stdout) == {"simulate_shard": 1}, dry.stdout
    assert smk.jobs(dry.stdout)[target].startswith("Missing output files"), dry.stdout


def test_corrupt_shard_is_rebuilt_by_the_command_its_error_gives(tiny_run_copy, monkeypatch):
    """Garbage in one chunk of a finished shard: open_shard's error names the variable and a
    `snakemake -f` command; run as it says (the run's --configfile added), that command
    rebuilds exactly that shard, which then reads again."""
    target = "results/sims/grid/M1.zarr"
    chunk = next(p for p in (tiny_run_copy / target / "sky" / "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"\x00garbage\xff" * 8)
    monkeypatch.chdir(tiny_run_copy)  # where a rule opens it, by the path the rule names
    with pytest.raises(ShardError) as err:
        open_shard(target)
    problem, hint = str(err.value).splitlines()
    assert "variable 'sky' does not decode" in problem
    command = hint.split("`")[1].split()
    assert command == ["snakemake", "-f", target]

    args = [*command[1:], "--cores", "1", "--configfile", "config/test.yaml"]
    dry = smk.run(tiny_run_copy, *args, "-n")
    assert smk.job_stats(dry.stdout) == {"simulate_shard": 1}, dry.stdout
    rebuilt = smk.run(tiny_run_copy, *args)
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert open_shard(target).sizes["realization"] == CONFIG["grid"]["n_realizations"]
