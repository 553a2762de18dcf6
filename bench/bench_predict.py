"""Speed and memory of ``szmass predict`` (issue 15): 10^3 and 10^4 positions on one
survey-like map, cutouts + network + matched filter, each size in its own process so that its
peak memory is its own.

    python bench/bench_predict.py [--sizes 1000 10000] [--threads 2] [--model results/cpu/model]
        [--spectra results/spectra/spectra.ecsv]

Prints per size the wall time of each stage, clusters per second, and peak memory (RSS), with
the ratios of the largest size to the smallest: memory flat in the number of positions means a
ratio near 1 (the map and the model are the same for both). The map is 6 x 6 deg of the
paper's sky at 0.25' (1440^2 pixels) with 36 clusters; the positions are drawn uniformly
over it (their content does not change the cost).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import numpy as np
    import pandas as pd

    from szmass.survey.predict import predict_catalogue

    rng = np.random.default_rng(args.size)
    half = 2.9  # deg: inside the 6 deg map
    ra = np.mod(rng.uniform(-half, half, args.size), 360.0)
    dec = rng.uniform(-half, half, args.size)
    cat = Path(args.workdir) / f"cat{args.size}.csv"
    pd.DataFrame({"name": [f"P{i}" for i in range(args.size)], "ra": ra, "dec": dec}).to_csv(
        cat, index=False
    )
    t0 = time.perf_counter()
    result = predict_catalogue(
        map_path=Path(args.workdir) / "map.fits",
        catalogue_path=cat,
        out_path=Path(args.workdir) / f"out{args.size}.csv",
        model_dir=args.model,
        threads=args.threads,
    )
    total = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"size": args.size, "total_s": total, "rss_mb": rss_mb, **result.attrs["timings"]}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=str(ROOT / "results" / "cpu" / "model"))
    parser.add_argument("--spectra", default=str(ROOT / "results" / "spectra" / "spectra.ecsv"))
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size is not None:
        worker(args)
        return
    import yaml

    from szmass.survey.testmap import make_survey_map

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as workdir:
        t0 = time.perf_counter()
        make_survey_map(
            spectra_path=args.spectra,
            sky=config["sky"],
            cosmo=None,
            cluster=config["cluster"],
            out_map=Path(workdir) / "map.fits",
            out_catalogue=Path(workdir) / "truth.csv",
            size_deg=6.0,
        )
        print(f"survey-like map: 6 x 6 deg, 1440^2 px, made in {time.perf_counter() - t0:.1f} s")
        rows = []
        for size in args.sizes:
            cmd = [sys.executable, __file__, "--size", str(size), "--workdir", workdir]
            cmd += ["--threads", str(args.threads), "--model", args.model]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    stages = ("read_inputs", "high_pass", "load_model", "cutouts", "network", "matched_filter")
    header = f"{'positions':>9} {'total s':>8} " + " ".join(f"{s:>14}" for s in stages)
    print(header + f" {'clusters/s':>10} {'peak RSS MB':>11}")
    for r in rows:
        cells = " ".join(f"{r[s]:14.2f}" for s in stages)
        print(
            f"{r['size']:9d} {r['total_s']:8.1f} {cells} {r['size'] / r['total_s']:10.0f} "
            f"{r['rss_mb']:11.0f}"
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        print(
            f"ratios {b['size']} / {a['size']} positions: time {b['total_s'] / a['total_s']:.2f}, "
            f"cutouts {b['cutouts'] / a['cutouts']:.2f}, "
            f"network {b['network'] / a['network']:.2f}, "
            f"peak memory {b['rss_mb'] / a['rss_mb']:.2f}"
        )


if __name__ == "__main__":
    main()
