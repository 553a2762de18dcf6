"""How long Snakemake takes to decide what to do, for the paper config, against its own start-up.

In a temporary copy of the workflow (sources only, as the workflow tests make it) this times

- the bare start-up: ``snakemake --version`` (the baseline: Python + Snakemake imports);
- (a) DAG construction: ``snakemake -n --quiet`` with nothing built, so every job is planned;
- (b) the no-op rerun: ``snakemake -n --quiet`` once every output exists and its metadata is
  recorded, which must say "Nothing to be done".

Building the real outputs takes hours (training), so for (b) every output of the dry run is
created empty (Zarr stores, the workflow's ``directory()`` outputs, as empty directories) and
``snakemake --touch --forceall`` then stamps them in DAG order and records their metadata
(params, code, software env) as a real run would, so (b) pays for every rerun check.

Each figure is the median of ``--repeats`` runs; ratios are against the start-up time measured
in the same run. The target is under 3 s each. If (a) or (b) is over it, or with
``--cprofile``, both are run once more under cProfile and the time of the main stages (imports,
Snakefile parsing and its config validation, DAG building, rerun checks) is printed, with the
top functions by cumulative time.

    python bench/bench_workflow.py [--configfile config/config.yaml] [--repeats 5] [--cprofile]
"""

import argparse
import io
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.workflow import smk  # noqa: E402  (copy_workflow, the venv's snakemake)

TARGET_S = 3.0
NOTHING_TO_DO = "Nothing to be done"
MISSING_METADATA = "missing provenance/metadata"


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``cwd``; raises with its output if it fails."""
    proc = smk.run(cwd, *args, timeout=600)
    if proc.returncode:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}")
    return proc


def timed(cwd: Path, args: list[str], repeats: int) -> tuple[float, list[float], str]:
    """Median wall seconds of ``snakemake *args`` over ``repeats`` runs, all runs, last output."""
    times, out = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        out = snakemake(cwd, *args).stdout
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def planned_outputs(dry_run_output: str) -> list[str]:
    """Every output path a (full) dry run lists, without duplicates."""
    paths: dict[str, None] = {}
    for line in re.findall(r"^\s+output: (.*)$", dry_run_output, re.M):
        paths.update(dict.fromkeys(p.strip() for p in line.split(",")))
    return list(paths)


def fake_outputs(cwd: Path, config_args: list[str]) -> int:
    """Create every planned output empty, then let ``snakemake --touch`` record it."""
    outputs = planned_outputs(snakemake(cwd, "-n", *config_args).stdout)
    for rel in outputs:
        path = cwd / rel
        if path.suffix == ".zarr":  # the directory() outputs (CONVENTIONS: Zarr stores)
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    # --forceall: touch every job in DAG order, so each records its metadata (params, code,
    # software env) as a real run does, and the no-op dry run below has all of it to check.
    snakemake(cwd, "--touch", "--forceall", "--cores", "1", "--quiet", *config_args)
    return len(outputs)


#: Where a dry run spends its time: (label, file name ending, function) of cProfile entries.
PROFILE_SPOTS = [
    ("import snakemake (CLI, plugin registries)", "snakemake/cli.py", "<module>"),
    ("parse Snakefile + rules (workflow.include)", "snakemake/workflow.py", "include"),
    ("  of which workflow/rules/common.smk", "common.smk", "<module>"),
    ("    of which config schema validation", "szmass/config.py", "validate_config"),
    ("    of which import szmass.config", "szmass/config.py", "<module>"),
    ("build the DAG (dag.init)", "snakemake/dag.py", "init"),
    ("  of which params-changed checks", "snakemake/persistence/__init__.py", "params_changed"),
    ("import pandas (by snakemake, wherever first)", "pandas/__init__.py", "<module>"),
]


def profile_dry_run(cwd: Path, config_args: list[str], top: int = 15) -> str:
    """cProfile of one ``snakemake -n --quiet`` (in a child process): the spots of
    ``PROFILE_SPOTS`` (cumulative seconds) and the top cumulative rows."""
    script, out_file = cwd.parent / "profile_snakemake.py", cwd.parent / f"{cwd.name}.prof"
    script.write_text(
        "import sys\nfrom snakemake.cli import main\n"
        f"sys.argv = ['snakemake', '-n', '--quiet', *{config_args!r}]\nmain()\n"
    )
    subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(out_file), str(script)],
        cwd=cwd,
        env=smk.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    text = io.StringIO()
    stats = pstats.Stats(str(out_file), stream=text)
    lines = [f"  {'total (under cProfile, which slows calls)':46s} {stats.total_tt:6.2f} s"]
    for label, file_end, func in PROFILE_SPOTS:
        cumulative = [
            ct
            for (file, _, name), (_, _, _, ct, _) in stats.stats.items()
            if file.endswith(file_end) and name == func
        ]
        shown = f"{max(cumulative):6.2f} s" if cumulative else "   not called"
        lines.append(f"  {label:46s} {shown}")
    stats.sort_stats("cumulative").print_stats(top)
    return "\n".join(lines) + "\n" + text.getvalue()


def import_seconds(module: str) -> float:
    """Wall seconds of ``import module`` in a fresh interpreter (what common.smk pays)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=smk.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(proc.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", default=None, help="default: config/config.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true", help="profile even under target")
    args = parser.parse_args()
    config_args = ["--configfile", args.configfile] if args.configfile else []

    with tempfile.TemporaryDirectory(prefix="bench_workflow_") as tmp:
        wf = smk.copy_workflow(Path(tmp) / "wf")
        base, base_all, _ = timed(wf, ["--version"], args.repeats)
        dag, dag_all, out = timed(wf, ["-n", "--quiet", *config_args], args.repeats)
        stats = smk.job_stats(snakemake(wf, "-n", *config_args).stdout)
        n_out = fake_outputs(wf, config_args)
        noop, noop_all, out = timed(wf, ["-n", "--quiet", *config_args], args.repeats)
        if NOTHING_TO_DO not in out or MISSING_METADATA in out:
            raise RuntimeError(f"not a no-op with full metadata:\n{out[-3000:]}")
        szmass_config = import_seconds("szmass.config")

        print(f"config: {args.configfile or 'config/config.yaml'} (the paper's by default)")
        print(
            f"DAG: {sum(stats.values())} jobs ({', '.join(f'{k} {v}' for k, v in stats.items())})"
        )
        print(f"faked outputs for the no-op rerun: {n_out}")
        print(f"median of {args.repeats} runs, seconds (ratio to the start-up):")
        rows = [
            ("snakemake --version (start-up)", base, base_all),
            ("(a) snakemake -n, nothing built", dag, dag_all),
            ("(b) snakemake -n, all up to date", noop, noop_all),
        ]
        for name, median, runs in rows:
            spread = f"{min(runs):.2f}-{max(runs):.2f}"
            print(f"  {name:34s} {median:6.2f} s  x{median / base:4.2f}  (runs {spread})")
        print(f"  import szmass.config (common.smk)  {szmass_config:6.3f} s")
        over = [name for name, median, _ in rows[1:] if median > TARGET_S]
        verdict = "MISSED by " + ", ".join(over) if over else "met"
        print(f"target: under {TARGET_S:g} s each: {verdict}")

        if over or args.cprofile:
            print("\ncProfile of one `snakemake -n --quiet`, top cumulative rows.")
            print("(b) all up to date:")
            print(profile_dry_run(wf, config_args))
            print("(a) nothing built:")
            print(profile_dry_run(smk.copy_workflow(Path(tmp) / "wf_a"), config_args))


if __name__ == "__main__":
    main()
