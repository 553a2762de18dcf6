"""Copy the small summaries of a finished run into a folder that can be committed
(``results/<run>/``): the summary and claims, the per-mass tables, the figures (PNG), the
training history, the filter's calibration and the per-stage wall times from the rules'
benchmark files. Never shards; the trained model only with ``--model``: re-saved without the
optimizer's state (a width-16 model is then ~4 MB instead of ~13 MB) under ``<run>/model/``
with its normalization, calibration, model card and matched filter, so that it can be
evaluated, or measure a user's map (``szmass predict``), without training first.

    python -m szmass.report.export results/cpu [--model]
"""

import argparse
import os
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


#: What travels with the exported model, from ``results/model/``.
MODEL_FILES = ("normalization.json", "calibration.json", "model_card.json", "matched_filter.npz")


def export_model(out_dir: str | Path, *, root: str | Path = ".") -> list[Path]:
    """The trained model without its optimizer's state, with the files of ``MODEL_FILES``,
    into ``out_dir``/model/; returns what was written."""
    import keras

    src, dest = Path(root) / "results" / "model", Path(out_dir) / "model"
    missing = [f for f in ("mresunet.keras", *MODEL_FILES) if not (src / f).is_file()]
    if missing:
        raise FileNotFoundError(f"the run has no finished model: missing {missing} in {src}")
    dest.mkdir(parents=True, exist_ok=True)
    net = keras.saving.load_model(src / "mresunet.keras", compile=False)
    tmp = dest / ".mresunet.tmp.keras"
    net.save(tmp)
    os.replace(tmp, dest / "mresunet.keras")
    for name in MODEL_FILES:
        shutil.copy2(src / name, dest / name)
    return [dest / "mresunet.keras", *(dest / name for name in MODEL_FILES)]


def export_run(out_dir: str | Path, *, root: str | Path = ".", model: bool = False) -> list[Path]:
    """Copy the run's small outputs under ``root`` into ``out_dir`` (and, with ``model``, the
    trained model: ``export_model``); returns what was written."""
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
    if model:
        written += export_model(out, root=root)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="where to copy the summaries, e.g. results/cpu")
    parser.add_argument("--root", default=".", help="the workflow directory of the run")
    parser.add_argument(
        "--model", action="store_true", help="also the trained model, without optimizer state"
    )
    args = parser.parse_args()
    for path in export_run(args.out_dir, root=args.root, model=args.model):
        print(path)


if __name__ == "__main__":
    main()
