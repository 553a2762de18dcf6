"""Training throughput of the mResUNet against its own convolutions alone, and the input cost.

For each base width (16, 32, 64 at 40x40 maps, batch 4 as in the paper) and each precision
(float32, and Keras' "mixed_bfloat16" policy) it prints the training rate in images/s and the
convolution FLOP/s that rate means, beside the FLOP/s that the same Conv2D layers reach when
each one's forward pass and gradients run alone on random tensors in the same run: the ratio
says how close training gets to what this machine does with these convolutions, and so how
much the rest (batch norm, SELU, adds, concatenations, the optimizer, Python) costs. A large
matmul's FLOP/s is printed as the machine's reference ceiling.

Then the input pipeline's cost: the step time of width 16 fed by the real pipeline (a
prepared Zarr set read with ``szmass.train.load_set`` and streamed by
``szmass.train.epoch_batches``) divided by the step time on batches already in memory
(target: within 5%).

FLOPs are counted from the model: each Conv2D does 2 * H_out * W_out * k * k * C_in * C_out
per image forward (dilation does not change it); a training step does that three times (the
forward pass and the gradients with respect to the input and the kernel), less the input
gradient of the convolutions that read the input map itself, which nothing needs. Other
layers are not counted.

    python bench/bench_train.py [--widths 16 32 64] [--dtypes float32 bfloat16] [--steps 60]
                                [--threads 2] [--quick] [--no-pipeline]
                                [--batch 4] [--no-determinism]

On 2 cores the default run takes about 9 minutes and --quick about 6 (most of it the ~20-30 s
that Keras spends tracing each of the six models, and the slow bfloat16 convolutions); each
line says how much of the CPUs other processes took meanwhile, which lowers every number.
"""

import argparse
import dataclasses
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from szmass.io import write_zarr_atomic  # noqa: E402
from szmass.network.train import configure_tensorflow, epoch_batches, load_set  # noqa: E402

INPUT_SIZE = 40
BATCH = 4
DTYPES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One Conv2D layer of the model: its shapes and the FLOPs of one image through it."""

    name: str
    in_shape: tuple[int, int, int]  # H, W, C_in
    filters: int
    kernel: int
    stride: int
    dilation: int
    padding: str  # "same" or "valid"
    dtype: str  # compute dtype of the layer under the policy it was built with
    reads_input: bool  # reads the model's input map: no input gradient in training

    @property
    def out_hw(self) -> tuple[int, int]:
        span = self.dilation * (self.kernel - 1) if self.padding == "valid" else 0
        return tuple((n - span - 1) // self.stride + 1 for n in self.in_shape[:2])

    @property
    def fwd_flops(self) -> int:
        h_out, w_out = self.out_hw
        return 2 * h_out * w_out * self.kernel**2 * self.in_shape[2] * self.filters

    @property
    def train_flops(self) -> int:
        return self.fwd_flops * (2 if self.reads_input else 3)


def conv_specs(model) -> list[ConvSpec]:
    import keras

    specs = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        if layer.data_format != "channels_last" or layer.groups != 1:
            raise ValueError(f"{layer.name}: only ungrouped channels_last convs are counted")
        _, h, w, c_in = layer.input.shape
        specs.append(
            ConvSpec(
                name=layer.name,
                in_shape=(h, w, c_in),
                filters=layer.filters,
                kernel=layer.kernel_size[0],
                stride=layer.strides[0],
                dilation=layer.dilation_rate[0],
                padding=layer.padding,
                dtype=layer.compute_dtype,
                reads_input=layer.input is model.inputs[0],
            )
        )
    return specs


class CpuShare:
    """The share of this machine's CPU time that other processes (and the hypervisor) took
    since it was made: /proc/stat's busy time less this process's own CPU time."""

    def __init__(self):
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy() -> float:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except OSError:
            return math.nan
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system

    def others(self) -> float:
        wall = time.perf_counter() - self.t0
        other = (self._busy() - self.busy0) - (self._own() - self.own0)
        return max(0.0, other) / (wall * (os.cpu_count() or 1))


class StepClock:
    """A Keras callback: the time from the end of the first batch to the end of the last, so
    that the start of ``fit`` and of its data iterator are left out; it ends the fit early
    once ``budget_s`` have passed and at least ``min_steps`` steps are timed."""

    def __init__(self, *, budget_s: float = math.inf, min_steps: int = 2):
        import keras

        clock = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                clock.stamps.append(time.perf_counter())
                timed = len(clock.stamps) - 1
                if timed >= min_steps and clock.stamps[-1] - clock.stamps[0] > budget_s:
                    self.model.stop_training = True

        self.callback = _Callback()
        self.stamps: list[float] = []

    @property
    def steps(self) -> int:
        return len(self.stamps) - 1

    def seconds_per_step(self) -> float:
        return (self.stamps[-1] - self.stamps[0]) / self.steps


def time_fit(model, data, steps: int, *, budget_s: float = math.inf) -> tuple[float, int]:
    """(seconds per training step, steps timed) of ``model.fit`` on ``data``: ``steps`` steps
    after the first, or fewer (at least 2) once ``budget_s`` have passed."""
    clock = StepClock(budget_s=budget_s)
    model.fit(
        data,
        steps_per_epoch=steps + 1,
        epochs=1,
        callbacks=[clock.callback],
        shuffle=False,
        verbose=0,
    )
    return clock.seconds_per_step(), clock.steps


def profiled_conv_flops(model) -> float:
    """Forward FLOPs per image of the Conv2D ops TensorFlow runs, by its profiler: a check of
    the count from the layer shapes (dilated convolutions run as space-to-batch + conv on
    maps padded to a multiple of the dilation, so they count more)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec((1, *model.input_shape[1:]), model.input.dtype)
    graph = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    ).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts.update(output="none", account_type_regexes=["Conv2D"])
    return tf.compat.v1.profiler.profile(graph=graph, options=opts, cmd="op").total_float_ops


def build(width: int, dtype: str):
    """The compiled mResUNet of base width ``width`` under precision ``dtype``."""
    import keras

    from szmass.network.model import build_mresunet

    keras.mixed_precision.set_global_policy(DTYPES[dtype])
    try:
        model = build_mresunet(input_size=INPUT_SIZE, base_filters=width)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    return model


def in_memory_batches(x: np.ndarray, y: np.ndarray):
    """Batches of (x, y) already made and held in memory, repeated forever."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).cache().repeat()
    return data.prefetch(tf.data.AUTOTUNE)


def random_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, INPUT_SIZE, INPUT_SIZE, 1), dtype=np.float32)
    y = rng.standard_normal((n, INPUT_SIZE, INPUT_SIZE, 2), dtype=np.float32)
    return x, y


def _timed_loop(fn, args, *, target_s: float, rounds: int) -> float:
    """Seconds per iteration of ``fn(*args, reps)``, a tf.function running its body ``reps``
    times in a graph loop (so the Python call overhead is amortised); best of ``rounds``
    calls of about ``target_s`` each, or a single iteration where one takes longer."""
    import tensorflow as tf

    fn(*args, tf.constant(0))  # trace, running no iteration
    t0 = time.perf_counter()
    fn(*args, tf.constant(1))
    best = once = time.perf_counter() - t0
    reps = max(1, round(target_s / max(once, 1e-6)))
    for _ in range(rounds if reps > 1 else 0):
        t0 = time.perf_counter()
        fn(*args, tf.constant(reps))
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def isolated_conv_seconds(spec: ConvSpec, *, target_s: float, rounds: int, seed: int) -> float:
    """Seconds for the forward pass and the gradients of one conv layer alone, batch 4.

    The convolution is the op the Keras layer runs (``keras.ops.conv``), on random tensors
    in the layer's compute dtype; the gradient is taken with respect to the kernel, and the
    input too unless the layer reads the model's input map. Bias, activation and the cast of
    the float32 kernel to bfloat16 are left out: they belong to "the rest".
    """
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    h, w, c_in = spec.in_shape
    h_out, w_out = spec.out_hw
    x = tf.constant(rng.standard_normal((BATCH, h, w, c_in)), dtype=spec.dtype)
    k = tf.constant(
        rng.standard_normal((spec.kernel, spec.kernel, c_in, spec.filters)) * 0.1,
        dtype=spec.dtype,
    )
    dy = tf.constant(rng.standard_normal((BATCH, h_out, w_out, spec.filters)), dtype=spec.dtype)

    @tf.function
    def run(x, k, dy, reps):
        def body(i, x):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = keras.ops.conv(
                    x, k, strides=spec.stride, padding=spec.padding, dilation_rate=spec.dilation
                )
            sources = [k] if spec.reads_input else [k, x]
            grads = tape.gradient(y, sources, output_gradients=dy)
            # the next iteration depends on every gradient: none is pruned as unused
            return i + 1, x + tf.add_n([g[0, 0, 0, 0] for g in grads]) * 0

        return tf.while_loop(lambda i, _: i < reps, body, [tf.constant(0), x])[1]

    return _timed_loop(run, (x, k, dy), target_s=target_s, rounds=rounds)


def matmul_gflops(dtype: str, *, n: int = 1024, target_s: float = 0.5) -> float:
    """The machine's reference: GFLOP/s of an n x n matmul in ``dtype``."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=dtype)
    b = tf.random.normal((n, n), dtype=dtype)

    @tf.function
    def run(a, b, reps):
        def body(i, a):
            c = tf.linalg.matmul(a, b)
            return i + 1, a + c[0, 0] * 0

        return tf.while_loop(lambda i, _: i < reps, body, [tf.constant(0), a])[1]

    return 2 * n**3 / _timed_loop(run, (a, b), target_s=target_s, rounds=3) / 1e9


def pipeline_ratio(
    model, *, n_maps: int, steps: int, rounds: int, seed: int
) -> tuple[list[float], list[float], float]:
    """Step seconds of ``model`` fed by the Zarr pipeline and by batches in memory, one each
    per round, and the seconds of ``load_set``, on a prepared set of ``n_maps`` maps."""
    x, y = random_set(n_maps, seed)
    ds = xr.Dataset(
        {
            "inputs": (("sample", "y", "x", "channel"), x),
            "labels": (("sample", "y", "x", "label"), y),
        },
        coords={"label": ["sz", "mass"]},
    )
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        path = Path(tmp) / "train.zarr"
        with warnings.catch_warnings():  # zarr 3 on the string label coordinate, as in szmass
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
            write_zarr_atomic(ds, path)
        t0 = time.perf_counter()
        xz, yz = load_set(path, input_size=INPUT_SIZE)
        t_load = time.perf_counter() - t0
    epochs = 1 + (steps + 1) * BATCH // n_maps + 1  # each fit starts the stream afresh
    zarr_stream = epoch_batches(
        xz, yz, batch_size=BATCH, seed=seed, first_epoch=0, last_epoch=epochs
    )
    memory = in_memory_batches(xz, yz)
    for data in (zarr_stream, memory):  # warm-up: a trace for each input signature
        model.fit(data, steps_per_epoch=2, epochs=1, shuffle=False, verbose=0)
    t_zarr, t_mem = [], []
    for r in range(rounds):  # interleaved, in turn first, so drifts hit both alike
        for data, times in ((zarr_stream, t_zarr), (memory, t_mem))[:: 1 if r % 2 else -1]:
            times.append(time_fit(model, data, steps)[0])
    return t_zarr, t_mem, t_load


def main() -> None:
    global BATCH  # set from --batch: every timing below uses it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument(
        "--steps", type=int, default=None, help="timed training steps (60; 20 with --quick)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which a timed fit stops early, with at least 2 steps timed "
        "(15; 5 with --quick): the wide and the bfloat16 models take seconds per step",
    )
    parser.add_argument("--rounds", type=int, default=None, help="best of (2; 1 with --quick)")
    parser.add_argument("--warmup", type=int, default=1, help="steps in the first (traced) fit")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    parser.add_argument(
        "--conv-seconds", type=float, default=None, help="per conv and round (0.2; 0.05)"
    )
    parser.add_argument("--pipeline-maps", type=int, default=None, help="(3200; 800)")
    parser.add_argument("--pipeline-steps", type=int, default=None, help="per round (40; 25)")
    parser.add_argument("--pipeline-rounds", type=int, default=None, help="best of (8; 4)")
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=BATCH, help="maps per step (4, the paper)")
    parser.add_argument(
        "--no-determinism", action="store_true", help="TensorFlow op determinism off"
    )
    args = parser.parse_args()
    BATCH = args.batch  # the batch every timing below uses
    quick = args.quick
    steps = args.steps or (20 if quick else 60)
    budget = args.budget or (5.0 if quick else 15.0)
    rounds = args.rounds or (1 if quick else 2)
    conv_s = args.conv_seconds or (0.05 if quick else 0.2)
    pipe_maps = args.pipeline_maps or (800 if quick else 3200)
    pipe_steps = args.pipeline_steps or (25 if quick else 40)
    pipe_rounds = args.pipeline_rounds or (4 if quick else 8)

    t_start = time.perf_counter()
    whole_run = CpuShare()
    configure_tensorflow(
        threads=args.threads,
        seed=args.seed,
        mixed_precision=False,
        deterministic=not args.no_determinism,
    )
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the retracing warnings of the per-conv tf.functions
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} intra-op threads, op determinism "
        f"{'off' if args.no_determinism else 'on'}, oneDNN "
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}, jit_compile=False, batch {BATCH}"
    )
    share = CpuShare()
    ref = {dt: matmul_gflops(dt) for dt in args.dtypes}
    print(
        "reference: a 1024x1024 matmul reaches "
        + ", ".join(f"{g:.1f} GFLOP/s in {dt}" for dt, g in ref.items())
        + f" (other processes took {share.others():.0%} of the CPUs meanwhile)"
    )

    rows, keep, executed, conv_cache = [], None, {}, {}
    for width in args.widths:
        for dtype in args.dtypes:
            share = CpuShare()
            model = build(width, dtype)
            specs = conv_specs(model)
            fwd = sum(s.fwd_flops for s in specs)
            if dtype == args.dtypes[0]:
                executed[width] = profiled_conv_flops(model) / fwd
            train = sum(s.train_flops for s in specs)
            x, y = random_set(BATCH * 8, args.seed)
            data = in_memory_batches(x, y)
            t0 = time.perf_counter()
            model.fit(data, steps_per_epoch=args.warmup, epochs=1, shuffle=False, verbose=0)
            t_first = time.perf_counter() - t0
            t0, fits = time.perf_counter(), []
            while len(fits) < rounds and (not fits or time.perf_counter() - t0 < budget):
                fits.append(time_fit(model, data, steps, budget_s=budget))
            step_s, n_steps = min(fits)
            conv_s_each = {}
            for s in specs:  # layers of the same shapes (encoder and decoder) are timed once
                key = dataclasses.replace(s, name="")
                if key not in conv_cache:
                    conv_cache[key] = isolated_conv_seconds(
                        s, target_s=conv_s, rounds=rounds, seed=args.seed
                    )
                conv_s_each[s.name] = conv_cache[key]
            conv_step_s = sum(conv_s_each.values())
            slowest = sorted(specs, key=lambda s: -conv_s_each[s.name])[:3]
            rate = BATCH / step_s
            rows.append(
                dict(
                    width=width,
                    dtype=dtype,
                    params=model.count_params(),
                    fwd_gflop=fwd / 1e9,
                    images_s=rate,
                    train_gflops=train * rate / 1e9,
                    conv_gflops=train * BATCH / conv_step_s / 1e9,
                )
            )
            print(
                f"  width {width:2d} {dtype:8s}: step {step_s * 1e3:7.1f} ms (best of "
                f"{len(fits)} x {n_steps} steps; first fit with tracing {t_first:4.1f} s), its "
                f"{len(specs)} convs alone {conv_step_s * 1e3:7.1f} ms; other processes took "
                f"{share.others():.0%} of the CPUs\n    slowest convs alone: "
                + ", ".join(
                    f"{s.name} {conv_s_each[s.name] / conv_step_s:.0%} of the time at "
                    f"{s.train_flops * BATCH / conv_s_each[s.name] / 1e9:.1f} GFLOP/s"
                    for s in slowest
                ),
                flush=True,
            )
            if width == 16 and dtype == "float32":
                keep = model
            del model

    print()
    print(
        "train GFLOP/s: the conv FLOPs of a training step (3x forward, less the input gradient "
        "of the 2 convs on the input map) x steps/s. isolated: the same convs' forward + "
        "gradients, each alone at batch 4. ratio = train / isolated"
    )
    print(
        f"{'width':>5s} {'dtype':>8s} {'params':>10s} {'fwd GFLOP/img':>13s} "
        f"{'train img/s':>11s} {'train GFLOP/s':>13s} {'isolated GFLOP/s':>16s} {'ratio':>6s}"
    )
    for r in rows:
        print(
            f"{r['width']:5d} {r['dtype']:>8s} {r['params']:10,d} {r['fwd_gflop']:13.4f} "
            f"{r['images_s']:11.1f} {r['train_gflops']:13.1f} {r['conv_gflops']:16.1f} "
            f"{r['train_gflops'] / r['conv_gflops']:6.2f}"
        )
    print(
        "FLOP check: TF's profiler counts "
        + ", ".join(f"{v:.3f}x (width {w})" for w, v in executed.items())
        + " these forward FLOPs in the Conv2D ops it runs: the dilated convs run as "
        "space-to-batch + conv on padded maps (the GFLOP/s above are of the nominal count)"
    )

    if not args.no_pipeline:
        share = CpuShare()
        if keep is None:
            keep = build(16, "float32")
        t_zarr, t_mem, t_load = pipeline_ratio(
            keep, n_maps=pipe_maps, steps=pipe_steps, rounds=pipe_rounds, seed=args.seed
        )
        ratio = min(t_zarr) / min(t_mem)
        paired = sorted(z / m for z, m in zip(t_zarr, t_mem, strict=True))
        print()
        print(
            f"input pipeline (width 16 float32, a {pipe_maps}-map Zarr set, best of "
            f"{pipe_rounds} x {pipe_steps} steps each, interleaved): step "
            f"{min(t_zarr) * 1e3:.1f} ms with load_set + epoch_batches / {min(t_mem) * 1e3:.1f} "
            f"ms on batches in memory = {ratio:.3f} "
            f"({'within' if ratio <= 1.05 else 'NOT within'} the 5% target)"
        )
        print(
            f"  round by round {paired[0]:.3f} to {paired[-1]:.3f}, median "
            f"{float(np.median(paired)):.3f} (the noise of this machine); load_set, once per "
            f"run: {t_load:.2f} s (= {t_load / (pipe_maps / BATCH * min(t_mem)):.1%} of an "
            f"epoch); other processes took {share.others():.0%} of the CPUs"
        )
    others = whole_run.others()
    warn = ": the numbers are low, rerun on an idle machine" if others > 0.1 else ""
    print(
        f"total {time.perf_counter() - t_start:.0f} s; other processes took {others:.0%} of the "
        f"CPUs over the run{warn}"
    )


if __name__ == "__main__":
    main()
