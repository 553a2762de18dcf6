"""Diagnostics of a trained model's mass readout (issue 12): the batch-norm shift and the gain.

(a) Centre and ring: per true mass, the mean predicted mass map over the mean true one at the
    central pixel and averaged over the 1-3 pixel ring around it (a readout-only deficit shows
    as a centre ratio below the ring ratio).
(b) Batch-norm statistics: the mean ln(M_est/M_true) per mass with the model's own statistics
    (``recalibrate_batch_norm``: gathered with dropout off), and with them re-gathered on the
    same training inputs with dropout ON, which is what the moving averages of a training with
    dropout see. If (b)'s two columns differ, a model that kept its training-time statistics
    would carry that difference as a bias: the fault this project's training now removes.

(c) The SZ channel: max |mean predicted SZ map - mean true one| over max |mean true one|, per
    mass (the summary's SZ residual, on the same test maps).

    python bench/bench_readout.py [--run results] [--masses 2 4 6] [--maps 1024]
        [--model PATH [--weights PATH]]

Reads ``<run>/model/mresunet.keras`` (or ``--model``: e.g. the kept first phase's checkpoint,
``<run>/model/.mresunet.checkpoint/last-*.keras``, with ``--weights`` its ``best-*.weights.h5``,
to see the first phase, dropout included, before the fine-tune) and its ``normalization.json``,
the grid shards ``<run>/sims/grid/M<mass>.zarr`` (test realizations 600-799) and
``<run>/datasets/train.zarr``.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from szmass.io import open_shard  # noqa: E402
from szmass.network.dataset import prepare, read_normalization  # noqa: E402
from szmass.network.readout import ln_ratio, recalibrate_batch_norm  # noqa: E402
from szmass.network.train import configure_tensorflow, load_set  # noqa: E402

TEST = slice(600, 800)


def readout(net, sets, norm) -> dict[float, dict[str, float]]:
    c = norm["npix"] // 2
    yy, xx = np.mgrid[: norm["npix"], : norm["npix"]]
    r = np.hypot(yy - c, xx - c)
    ring = (r >= 1) & (r <= 3)
    out = {}
    for mass, p in sets.items():
        out_maps = net.predict(p["inputs"], batch_size=64, verbose=0)
        pred = out_maps[..., 1]
        true = p["labels"][..., 1]
        est = pred[:, c, c] * norm["m_norm_msun"]
        mean_pred, mean_true = pred.mean(0), true.mean(0)
        sz_pred, sz_true = (a[..., 0].mean(0) for a in (out_maps, p["labels"]))
        out[mass] = {
            "centre": float(mean_pred[c, c] / mean_true[c, c]),
            "ring": float(mean_pred[ring].mean() / mean_true[ring].mean()),
            "mean_ln": float(ln_ratio(est, p["m200c"]).mean()),
            "sz_residual": float(np.abs(sz_pred - sz_true).max() / np.abs(sz_true).max()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="results", help="the run's results folder")
    parser.add_argument("--masses", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--maps", type=int, default=1024, help="training inputs for (b)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", help="a .keras model (default <run>/model/mresunet.keras)")
    parser.add_argument("--weights", help="weights (.weights.h5) to load into --model")
    args = parser.parse_args()
    run = Path(args.run)
    configure_tensorflow(threads=args.threads, seed=0, mixed_precision=False)
    import keras

    t0 = time.perf_counter()
    norm = read_normalization(run / "model" / "normalization.json")
    model_path = Path(args.model) if args.model else run / "model" / "mresunet.keras"
    net = keras.saving.load_model(model_path, compile=False)
    if args.weights:
        net.load_weights(args.weights)
    sets = {}
    for mass in args.masses:
        path = run / "sims" / "grid" / f"M{mass:g}.zarr"
        sets[mass] = prepare(open_shard(path), norm, realizations=TEST, where=str(path))
    x_train, _ = load_set(run / "datasets" / "train.zarr", input_size=norm["npix"])
    x_recal = x_train[:: max(1, len(x_train) // args.maps)]
    own = readout(net, sets, norm)
    recalibrate_batch_norm(net, x_recal, dropout_off=False)
    with_dropout = readout(net, sets, norm)
    recalibrate_batch_norm(net, x_recal)  # back to the model's own (dropout-off) statistics
    again = readout(net, sets, norm)
    weights = f" with weights {args.weights}" if args.weights else ""
    print(f"model {model_path}{weights}, test realizations 600-799")
    print(
        "| M200c [1e14] | centre ratio | ring ratio | mean ln, own stats | mean ln, "
        "dropout-on stats | mean ln, recomputed again | SZ residual |"
    )
    print("|---|---|---|---|---|---|---|")
    for mass in args.masses:
        a, b, c = own[mass], with_dropout[mass], again[mass]
        print(
            f"| {mass:g} | {a['centre']:.3f} | {a['ring']:.3f} | {a['mean_ln']:+.3f} | "
            f"{b['mean_ln']:+.3f} | {c['mean_ln']:+.3f} | {a['sz_residual']:.3f} |"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
