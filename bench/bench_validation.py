"""What a validation costs beside a training epoch (config/cpu.yaml's shape: width 16, 40x40
maps, 3200 training maps at batch 8, 1600 validation maps, batch-norm statistics recomputed on
1067 training maps before each validation).

Prints, per epoch: the training epoch (timed steps at the config's batch, scaled to 400
steps), the batch-norm recalibration as ``szmass.network.readout.recalibrate_batch_norm``
does it (one traced training-mode pass per batch) and as it did before 2026-12-08 (eager
calls with the momenta set per batch: the baseline, written out here), and the validation
predictions; each as seconds and as a fraction of the epoch, the recalibration also as the
baseline's time over the library's. Both recalibrations' statistics are compared (they must
agree to float32 rounding).

    python bench/bench_validation.py [--threads 2] [--rounds 3]

About a minute on 2 cores; run it on an idle machine (other processes lower every rate).
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from szmass.network.train import configure_tensorflow  # noqa: E402

INPUT_SIZE, WIDTH = 40, 16
N_TRAIN, N_VAL, N_RECAL, BATCH, VAL_BATCH = 3200, 1600, 1067, 8, 64


def eager_recalibration(net, inputs, batch_size: int = 64) -> None:
    """The baseline: running averages of the batch statistics by eager calls, each batch's
    momentum set to k / (k + 1) (``recalibrate_batch_norm`` before 2026-12-08)."""
    import keras

    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    momenta, rates = [b.momentum for b in bns], [d.rate for d in drops]
    try:
        for d in drops:
            d.rate = 0.0
        for k in range(max(1, len(inputs) // batch_size)):
            for b in bns:
                b.momentum = k / (k + 1)
            net(inputs[k * batch_size : (k + 1) * batch_size], training=True)
    finally:
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m
        for d, r in zip(drops, rates, strict=True):
            d.rate = r


def best_of(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def moving_stats(net) -> list[np.ndarray]:
    import keras

    return [
        np.asarray(v)
        for layer in net.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    parser.add_argument("--rounds", type=int, default=3, help="best of")
    parser.add_argument("--steps", type=int, default=60, help="timed training steps")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    configure_tensorflow(threads=args.threads, seed=0, mixed_precision=False)
    import keras

    from szmass.network.model import build_mresunet
    from szmass.network.readout import recalibrate_batch_norm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_TRAIN, INPUT_SIZE, INPUT_SIZE, 1)).astype("float32")
    y = rng.normal(size=(N_TRAIN, INPUT_SIZE, INPUT_SIZE, 2)).astype("float32")
    x_val = rng.normal(size=(N_VAL, INPUT_SIZE, INPUT_SIZE, 1)).astype("float32")
    x_recal = x[:: N_TRAIN // 1024]
    assert len(x_recal) == N_RECAL
    net = build_mresunet(input_size=INPUT_SIZE, base_filters=WIDTH)
    net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)

    steps = args.steps
    net.fit(x[: 2 * BATCH], y[: 2 * BATCH], batch_size=BATCH, epochs=1, verbose=0)  # traced
    train_s = best_of(
        lambda: net.fit(
            x[: steps * BATCH], y[: steps * BATCH], batch_size=BATCH, epochs=1, verbose=0
        ),
        args.rounds,
    )
    epoch_s = train_s / steps * (N_TRAIN // BATCH)

    recalibrate_batch_norm(net, x_recal)  # its trace, kept per model, is not timed
    traced_s = best_of(lambda: recalibrate_batch_norm(net, x_recal), args.rounds)
    traced_stats = moving_stats(net)
    eager_s = best_of(lambda: eager_recalibration(net, x_recal), args.rounds)
    eager_stats = moving_stats(net)
    worst = max(
        float(np.max(np.abs(a - b) / (np.abs(b) + 1e-6)))
        for a, b in zip(traced_stats, eager_stats, strict=True)
    )

    def predict():
        for i in range(0, N_VAL, VAL_BATCH):
            net.predict_on_batch(x_val[i : i + VAL_BATCH])

    predict()
    predict_s = best_of(predict, args.rounds)

    print(
        f"width {WIDTH}, {N_TRAIN} training maps at batch {BATCH}, {N_VAL} validation maps, "
        f"{N_RECAL} recalibration maps; {args.threads} threads, best of {args.rounds}\n"
    )
    print("| per epoch | seconds | / training epoch |")
    print("|---|---|---|")
    rows = [
        (f"training epoch ({N_TRAIN // BATCH} steps)", epoch_s),
        ("recalibration, traced (the library)", traced_s),
        ("recalibration, eager (before 2026-12-08)", eager_s),
        ("validation predictions", predict_s),
    ]
    for name, s in rows:
        print(f"| {name} | {s:.2f} | {s / epoch_s:.3f} |")
    print(
        f"\neager / traced recalibration: {eager_s / traced_s:.2f}x; validation (traced) "
        f"{(traced_s + predict_s) / epoch_s:.1%} of an epoch (eager: "
        f"{(eager_s + predict_s) / epoch_s:.1%}); the two recalibrations' statistics differ by "
        f"at most {worst:.1e} (relative)"
    )


if __name__ == "__main__":
    main()
