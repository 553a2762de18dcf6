"""Copy the small summaries of a finished run into a folder that can be committed
(``results/<run>/``): the summary and claims, the per-mass tables, the figures (PNG), the
training history, the filter's calibration and the per-stage wall times from the rules'
benchmark files. Never shards or models.

    python -m szmass.report.export results/cpu
"""

import argparse
import shutil
from pathlib import Path

import pandas as pd

SMALL_FILES = (
    "results/summary.json",
    "results/summary.md",
    "results/claims.csv",
    "results/eval/per_mass.csv",
    "results/model/history.csv",
    "results/model/normalization.json",
    "results/baseline/calibration.json",
)


def stage_times(benchmarks: str | Path = "benchmarks") -> pd.DataFrame:
    """Wall time, CPU time and peak memory of every job, from ``benchmarks/**/*.tsv``, one row
    per job (``rule`` and, for wildcard rules, the job's name), plus a total per rule."""
    root = Path(benchmarks)
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        last = pd.read_csv(path, sep="\t").iloc[-1]
        rel = path.relative_to(root).with_suffix("")
        rows.append(
            {
                "rule": rel.parts[0],
                "job": "/".join(rel.parts[1:]) or rel.parts[0],
                "wall_s": float(last["s"]),
                "cpu_s": float(last["cpu_time"]),
                "max_rss_mb": float(last["max_rss"]),
            }
        )
    if not rows:
        raise FileNotFoundError(f"no benchmark files under {root}")
    return pd.DataFrame(rows)


def export_run(out_dir: str | Path, *, root: str | Path = ".") -> list[Path]:
    """Copy the run's small outputs under ``root`` into ``out_dir``; returns what was written."""
    root, out = Path(root), Path(out_dir)
    missing = [f for f in SMALL_FILES if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"the run is not finished: missing {missing}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SMALL_FILES:
        dest = out / Path(name).name
        if name.startswith("results/model/"):
            dest = out / f"model_{Path(name).name}"
        shutil.copy2(root / name, dest)
        written.append(dest)
    (out / "figures").mkdir(exist_ok=True)
    for png in sorted((root / "results" / "figures").glob("*.png")):
        shutil.copy2(png, out / "figures" / png.name)
        written.append(out / "figures" / png.name)
    times = stage_times(root / "benchmarks")
    times.to_csv(out / "stage_times.csv", index=False)
    per_rule = times.groupby("rule", sort=False).agg(
        jobs=("job", "size"), wall_s=("wall_s", "sum"), max_wall_s=("wall_s", "max")
    )
    per_rule.to_csv(out / "stage_times_per_rule.csv")
    written += [out / "stage_times.csv", out / "stage_times_per_rule.csv"]
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="where to copy the summaries, e.g. results/cpu")
    parser.add_argument("--root", default=".", help="the workflow directory of the run")
    args = parser.parse_args()
    for path in export_run(args.out_dir, root=args.root):
        print(path)


if __name__ == "__main__":
    main()
