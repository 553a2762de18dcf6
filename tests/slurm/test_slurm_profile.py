"""profiles/slurm on a real SLURM: the tiny DAG (config/test.yaml) submitted job by job through
snakemake-executor-plugin-slurm to the single-node cluster of tests/slurm/local_cluster.sh, and
its outputs against a local run of the same config.

These tests are not part of the README's `pytest`: they need root or an installed SLURM and the
cluster's daemons, and a skipped test fails that run (tests/no_skips.py). Their marker, `slurm`,
is deselected by pyproject.toml's addopts (`-m "not slurm"`); .ci/run runs them after the
README's command, inside the cluster, as

    tests/slurm/local_cluster.sh -- python -m pytest -n 0 -m slurm tests/slurm

which also works by hand (as root, or where SLURM is installed).
"""

import csv
import hashlib
import json
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from workflow import smk

pytestmark = pytest.mark.slurm

#: The whole tiny run through SLURM; ~4 minutes here (2 CPUs), most of it the jobs themselves.
SLURM_RUN_TIMEOUT_S = 900
#: The plugin's line for each submission (snakemake_executor_plugin_slurm 2.8).
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
#: Where the plugin writes a job's SLURM log: .snakemake/slurm_logs/rule_<rule>/<wildcards>/
#: <jobid>.log (the wildcards' values joined by '_'), rule_<rule>/<jobid>.log without wildcards.
SLURM_LOG = re.compile(r"\.snakemake/slurm_logs/rule_(\w+)/(?:([^/]+)/)?(\d+)\.log$")


def local_overlay(profile: dict, *, partition: str, cpus: int, mem_mb: int) -> dict:
    """profiles/slurm for tests/slurm/local_cluster.sh's cluster: what a user of a cluster
    without GPUs, accounts or an accounting database changes (README, "On SLURM"), and nothing
    else. Every rule keeps its memory (capped at the node's), time limit and CPU count."""
    profile = yaml.safe_load(yaml.safe_dump(profile))  # a deep copy
    defaults = profile["default-resources"]
    del defaults["slurm_account"]  # no accounts: the README says to delete the line
    defaults["slurm_partition"] = partition
    defaults["mem_mb"] = min(defaults["mem_mb"], mem_mb)
    for resources in profile["set-resources"].values():
        if "slurm_partition" in resources:  # the GPU partition
            resources["slurm_partition"] = partition
        if "gpu" in resources:  # no GPUs: gpu 0 (the rules declare gpu=1), as README says
            resources["gpu"] = 0
        for key in ("gres", "gpu_model"):
            resources.pop(key, None)
        resources["mem_mb"] = min(resources["mem_mb"], mem_mb)
    profile.update(
        {
            "cores": cpus,  # at most one node's CPUs (check_slurm_cores refuses more)
            "use-conda": False,  # this venv (no conda here)
            "restart-times": 0,  # a failure shows at once, not after two resubmissions
            "slurm-status-command": "squeue",  # no accounting database: sacct cannot answer
            # poll every 2 s after a job ends (default 40 s): the tiny run's jobs take seconds
            "slurm-init-seconds-before-status-checks": 2,
            "seconds-between-status-checks": 2,
            "slurm-keep-successful-logs": True,  # the test reads every job's SLURM log
        }
    )
    return profile


@pytest.fixture(scope="module")
def cluster() -> dict:
    """The partition, CPUs and memory of local_cluster.sh's node (fails outside it)."""
    partition = os.environ.get("SZMASS_SLURM_PARTITION")
    if not partition or not os.environ.get("SLURM_CONF"):
        pytest.fail("run these tests through tests/slurm/local_cluster.sh (module docstring)")
    mem = subprocess.run(
        ["sinfo", "--noheader", "--format=%m", "--partition", partition],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        "partition": partition,
        "cpus": int(os.environ["SZMASS_SLURM_CPUS"]),
        "mem_mb": int(mem.split()[0].rstrip("+")),
    }


@pytest.fixture(scope="module")
def profile(tmp_path_factory, cluster) -> Path:
    with open(smk.REPO / "profiles" / "slurm" / "config.yaml") as f:
        config = local_overlay(yaml.safe_load(f), **cluster)
    path = tmp_path_factory.mktemp("profile") / "slurm-local"
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _snakemake(cwd: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """``snakemake *args`` in a fresh process (output also in ``cwd/snakemake.out``); seconds."""
    start = time.monotonic()
    with open(cwd / "snakemake.out", "w+") as out:
        try:
            proc = subprocess.run(
                [smk.SNAKEMAKE, *args],
                cwd=cwd,
                env=smk.env(),
                stdout=out,
                stderr=out,
                timeout=timeout,
            )
        finally:
            out.seek(0)
            text = out.read()
    return subprocess.CompletedProcess(proc.args, proc.returncode, text), time.monotonic() - start


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, cluster):
    """The tiny run with profiles/default and as many cores as the node has CPUs (train_model
    then gets the same threads in both runs)."""
    path = smk.copy_workflow(tmp_path_factory.mktemp("local") / "wf")
    args = ["--cores", str(cluster["cpus"]), "--configfile", "config/test.yaml"]
    proc, seconds = _snakemake(path, *args, timeout=SLURM_RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return path, seconds


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, profile):
    path = smk.copy_workflow(tmp_path_factory.mktemp("slurm") / "wf")
    args = ["--workflow-profile", str(profile), "--configfile", "config/test.yaml"]
    try:
        proc, seconds = _snakemake(path, *args, timeout=SLURM_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        queue = subprocess.run(["squeue", "-o", "%i %T %r %k"], capture_output=True, text=True)
        tail = (path / "snakemake.out").read_text()[-3000:]
        pytest.fail(f"no end after {SLURM_RUN_TIMEOUT_S} s; squeue:\n{queue.stdout}\n{tail}")
    assert proc.returncode == 0, proc.stdout[-5000:]
    return path, proc.stdout, seconds


def test_every_job_went_through_slurm(slurm_run):
    """Each job of the run was submitted (a SLURM job id in the plugin's log), and its SLURM
    log is where README says: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<jobid>.log."""
    path, output, _ = slurm_run
    stats = smk.job_stats(output)
    stats.pop("all")  # rule all has no action: Snakemake finishes it itself
    submitted = SUBMITTED.findall(output)
    assert len(submitted) == sum(stats.values()), output
    assert len({slurm_id for _, slurm_id, _ in submitted}) == len(submitted)
    rules = {}
    for _, slurm_id, log in submitted:
        m = SLURM_LOG.search(log)
        assert m and m.group(3) == slurm_id, log
        assert Path(log).is_file(), log
        rules[m.group(1)] = rules.get(m.group(1), 0) + 1
    assert rules == stats
    assert "Finished jobid" in output and "100%" in output, output[-3000:]


#: The parts of outputs that say when or how fast they were made, left out of the comparison
#: (found by comparing the two runs byte for byte; everything else is identical): a PDF's
#: CreationDate (its PNG twin is compared whole), the .keras file's date_saved and Python
#: object ids (metadata.json, config.json; its weights are compared), the training log's
#: timing columns, and the training job's wall time, which the summary reports (summary.json's
#: training.wall_minutes and the "training time" claim's figure in claims.csv and summary.md).
KERAS_STAMPED = ("metadata.json", "config.json")
HISTORY, HISTORY_TIMING = "model/history.csv", ("seconds", "images_per_s")
SUMMARY, WALL_TIME_KEY = "summary.json", "wall_minutes"
#: The training-time claim's row: its measured figure ("0.3 min") is masked.
WALL_TIME_CLAIM = re.compile(rb"^(\| )?(training time \(beyond the paper\).*?)\d+\.\d min", re.M)


def _digest(path: Path, name: str) -> str | None:
    """The SHA-256 of what must be equal in the output ``name`` (None: nothing)."""
    if path.suffix == ".pdf":
        return None
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as z:
            data = b"".join(
                z.read(member) for member in sorted(z.namelist()) if member not in KERAS_STAMPED
            )
    elif name == HISTORY:
        rows = list(csv.DictReader(path.read_text().splitlines()))
        assert rows and set(HISTORY_TIMING) <= set(rows[0]), name
        data = repr([{k: v for k, v in r.items() if k not in HISTORY_TIMING} for r in rows])
        data = data.encode()
    elif name == SUMMARY:
        summary = json.loads(path.read_text())
        assert WALL_TIME_KEY in summary["training"], name
        del summary["training"][WALL_TIME_KEY]
        data = json.dumps(summary, sort_keys=True).encode()
    elif name in ("claims.csv", "summary.md"):
        data, n = WALL_TIME_CLAIM.subn(rb"\1\2<wall time> min", path.read_bytes())
        assert n == 1, (name, n)
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


def _contents(run: Path) -> dict[str, str | None]:
    """Each file under results/ -> ``_digest``."""
    root = run / "results"
    return {
        str(p.relative_to(root)): _digest(p, str(p.relative_to(root)))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_outputs_equal_a_local_run(slurm_run, local_run, capsys):
    path, _, slurm_seconds = slurm_run
    local_path, local_seconds = local_run
    with capsys.disabled():
        print(f"\nthe tiny run: {slurm_seconds:.0f} s through SLURM, {local_seconds:.0f} s local")
    assert _digest(path / "results" / SUMMARY, SUMMARY) == _digest(
        local_path / "results" / SUMMARY, SUMMARY
    )
    slurm, local = _contents(path), _contents(local_path)
    assert slurm and set(slurm) == set(local)
    differ = sorted(name for name in slurm if slurm[name] != local[name])
    assert not differ, differ


def test_cores_above_a_node_are_refused(tmp_path, profile, cluster):
    """`cores` above one node's CPUs: the run stops before it submits anything, naming the
    rules, instead of leaving train_model pending for ever (Reason=PartitionConfig)."""
    path = smk.copy_workflow(tmp_path / "wf")
    too_many = str(cluster["cpus"] + 1)
    args = ["--workflow-profile", str(profile), "--configfile", "config/test.yaml"]
    proc, _ = _snakemake(path, *args, "--cores", too_many, timeout=300)
    assert proc.returncode != 0
    assert "can never start on this cluster" in proc.stdout, proc.stdout[-3000:]
    expected = f"train_model: {too_many} CPUs, but the nodes of partition {cluster['partition']}"
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert not SUBMITTED.search(proc.stdout), proc.stdout[-3000:]
