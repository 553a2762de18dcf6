"""Training of the mResUNet (SPEC §3; Gupta & Reichardt 2020, arXiv:2003.06135, §3).

MSE loss, Adam, batch 4, the learning rate halved after ``lr_patience`` epochs without a
better validation loss, stopped after ``stop_patience`` with the best weights restored, at most
``max_epochs``. A killed job resumes from its last finished epoch: after every epoch the model,
the optimizer and the bookkeeping (best loss, patience counters, learning rate, history) are
written to a checkpoint directory beside the outputs, and a rerun with the same settings picks
them up. The data order of epoch e is a stateless shuffle keyed on (seed, e), so a resumed run
sees the same batches as an uninterrupted one.

Beyond the paper (issue 12; the CPU config uses them, the paper config does not): fresh skies
every epoch (``fresh_skies``, see ``fresh_skies.py``), a loss that weighs the mass readout
(``readout_weight``), the best epoch chosen by the validation readout's width
(``select_by: val_width``), batch-norm statistics recomputed with dropout off before every
validation (``bn_recalibration``), a linear learning-rate warm-up, and op determinism as an
option (it costs ~20% on 2 CPU cores).
"""

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .dataset import read_normalization

log = logging.getLogger("szmass.train")

HISTORY_FIELDS = (
    "epoch",
    "loss",
    "val_loss",
    "val_mean_ln",
    "val_width",
    "learning_rate",
    "seconds",
    "images_per_s",
)
#: The recipe's keys beyond the paper's, with the paper's values (a training dict without them
#: trains as the paper does).
RECIPE_DEFAULTS = {
    "deterministic": True,
    "warmup_epochs": 0,
    "fresh_skies": False,
    "readout_weight": 0.0,
    "select_by": "val_loss",
    "bn_recalibration": False,
}
SELECT_BY = ("val_loss", "val_width")
BN_RECALIBRATION_MAPS = 1024  # training inputs the batch-norm statistics are recomputed on


def load_set(
    path: str | os.PathLike, *, input_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, H, W, 1) and labels (n, H, W, 2) of a prepared set, in memory, checked.

    Raises ValueError naming the file if it is missing, holds NaNs, or its maps are not
    ``input_size`` on a side.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data set {path} does not exist (run split_dataset)")
    try:
        ds = xr.open_zarr(path, consolidated=True)
        x, y = ds["inputs"].values, ds["labels"].values
    except Exception as err:
        raise ValueError(f"data set {path} cannot be read: {err}") from err
    if x.ndim != 4 or y.shape[:3] != x.shape[:3]:
        raise ValueError(f"data set {path}: inputs {x.shape} and labels {y.shape} do not match")
    if input_size is not None and x.shape[1:3] != (input_size, input_size):
        raise ValueError(
            f"data set {path}: maps are {x.shape[1]}x{x.shape[2]}, the model "
            f"expects {input_size}x{input_size}"
        )
    for name, arr in (("inputs", x), ("labels", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"data set {path}: {name} hold NaN or inf values")
    return x, y


def configure_tensorflow(
    *, threads: int, seed: int, mixed_precision: bool, deterministic: bool = True
) -> None:
    """Threads, seeds, determinism and precision; call before building the model."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError as err:  # TensorFlow already ran an op in this process
        log.warning("keeping TensorFlow's thread pools as they are: %s", err)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed_precision else "float32")
    gpus = tf.config.list_physical_devices("GPU")
    log.info("TensorFlow %s on %s", tf.__version__, f"{len(gpus)} GPU(s)" if gpus else "CPU")


def epoch_batches(
    x: np.ndarray, y: np.ndarray, *, batch_size: int, seed: int, first_epoch: int, last_epoch: int
):
    """A tf.data stream of the batches of epochs first..last-1, each epoch a stateless shuffle
    keyed on (seed, epoch); prefetched, so the model never waits for input."""
    import tensorflow as tf

    n = len(x)
    xt, yt = tf.constant(x), tf.constant(y)

    def one_epoch(epoch):
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.data.Dataset.range(n).map(
            lambda i: tf.random.experimental.index_shuffle(i, key, n - 1)
        )
        return order.batch(batch_size)

    stream = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(one_epoch)
    stream = stream.map(
        lambda idx: (tf.gather(xt, idx), tf.gather(yt, idx)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return stream.prefetch(tf.data.AUTOTUNE)


def fresh_epoch_batches(
    fresh,
    mass_maps: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    last_epoch: int,
    draw_seconds: dict[int, float],
):
    """A tf.data stream of the batches of epochs first..last-1, each epoch on its own fresh
    skies (``FreshSkies.epoch``) in a shuffle keyed on (seed, epoch); the next epoch's skies
    are drawn in a thread while this one trains. ``draw_seconds[epoch]`` records each draw."""
    import tensorflow as tf

    n, (h, w) = len(mass_maps), mass_maps.shape[1:]

    def draw(epoch):
        t0 = time.perf_counter()
        x, sz = fresh.epoch(epoch)
        y = np.stack([sz, mass_maps], axis=-1).astype(np.float32)
        draw_seconds[epoch] = time.perf_counter() - t0
        return x, y

    def generate():
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(draw, first_epoch)
            for epoch in range(first_epoch, last_epoch):
                x, y = pending.result()
                if epoch + 1 < last_epoch:
                    pending = pool.submit(draw, epoch + 1)
                order = np.random.default_rng([seed, epoch]).permutation(n)
                for start in range(0, n, batch_size):
                    idx = np.sort(order[start : start + batch_size])
                    yield x[idx], y[idx]

    signature = (
        tf.TensorSpec((None, h, w, 1), tf.float32),
        tf.TensorSpec((None, h, w, 2), tf.float32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of everything that defines a run; a checkpoint resumes only a same run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _rng_state_variables(net) -> list:
    """The dropout layers' random-generator states, in model order (Keras saves weights, not
    these, in a .keras file; without them a resumed run would replay epoch 1's masks)."""
    return [v for v in net.variables if v.path.endswith("seed_generator_state")]


def _code_and_data_digest(*arrays: np.ndarray) -> str:
    """sha256 of the training arrays and of the model and training code."""
    digest = hashlib.sha256()
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    for module in ("model.py", "train.py", "readout.py", "fresh_skies.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


def _validate(net, x_val, y_val, *, m_norm: float, recipe: dict, x_recal) -> dict[str, float]:
    """The validation loss and readout statistics of the model as it stands; with
    ``bn_recalibration``, its batch-norm statistics are first recomputed without dropout."""
    from .readout import loss_value, readout_scores, recalibrate_batch_norm

    if recipe["bn_recalibration"]:
        recalibrate_batch_norm(net, x_recal)
    pred = np.concatenate(
        [net.predict_on_batch(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]
    )
    c = x_val.shape[1] // 2
    scores = readout_scores(pred[:, c, c, 1] * m_norm, y_val[:, c, c, 1] * m_norm)
    return {
        "val_loss": loss_value(y_val, pred, readout_weight=recipe["readout_weight"]),
        "val_mean_ln": scores["mean_ln"],
        "val_width": scores["width"],
    }


def _make_callback(
    *,
    ckpt_dir: Path,
    state: dict[str, Any],
    training: dict[str, Any],
    n_train: int,
    validate,
    draw_seconds: dict[int, float],
):
    import keras

    max_epochs, warmup = training["max_epochs"], training["warmup_epochs"]
    base_lr, select_by = training["learning_rate"], training["select_by"]

    class ResumableTraining(keras.callbacks.Callback):
        """Warm-up, plateau LR cuts, early stopping, best weights, a checkpoint every epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch < warmup:
                self.model.optimizer.learning_rate.assign(base_lr * (epoch + 1) / warmup)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:  # steady-state rate from here: the first steps include tracing
                self.t1 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.t0
            steps = -(-n_train // training["batch_size"])
            steady = (time.perf_counter() - self.t1) / max(steps - 2, 1) * steps
            val = validate(self.model)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            state["history"].append(
                {
                    "epoch": epoch + 1,
                    "loss": float(logs["loss"]),
                    **val,
                    "learning_rate": lr,
                    "seconds": seconds,
                    "images_per_s": n_train / steady,
                }
            )
            score = val[select_by]
            if score < state["best_score"]:
                state.update(
                    best_score=score,
                    best_val_loss=val["val_loss"],
                    best_epoch=epoch + 1,
                    wait_lr=0,
                    wait_stop=0,
                )
                state["best_file"] = f"best-{epoch + 1:04d}.weights.h5"
                self.model.save_weights(ckpt_dir / state["best_file"])
            elif epoch + 1 > warmup:
                state["wait_lr"] += 1
                state["wait_stop"] += 1
                if state["wait_lr"] >= training["lr_patience"]:
                    new_lr = lr * training["lr_factor"]
                    self.model.optimizer.learning_rate.assign(new_lr)
                    state["wait_lr"] = 0
                    log.info(
                        "no better %s for %d epochs: learning rate -> %.3g",
                        select_by,
                        training["lr_patience"],
                        new_lr,
                    )
                if state["wait_stop"] >= training["stop_patience"]:
                    state["stopped_early"] = True
                    self.model.stop_training = True
            state["epochs_done"] = epoch + 1
            draw = draw_seconds.pop(epoch, None)
            log.info(
                "epoch %d/%d: loss %.4g, val_loss %.4g, val mean ln %+.3f, width %.3f "
                "(best %s %.4g @ %d), lr %.3g, %.0f images/s%s, ETA <= %.0f s",
                epoch + 1,
                max_epochs,
                logs["loss"],
                val["val_loss"],
                val["val_mean_ln"],
                val["val_width"],
                select_by,
                state["best_score"],
                state["best_epoch"],
                lr,
                n_train / steady,
                "" if draw is None else f" (fresh skies drawn in {draw:.1f} s, in a thread)",
                seconds * (max_epochs - epoch - 1),
            )
            # Checkpoint: epoch-numbered model (+ optimizer) and best weights, then the state
            # that names them, replaced in one rename; files it does not name are dropped. A
            # kill at any point leaves a state and the files it names.
            state["last_file"] = f"last-{epoch + 1:04d}.keras"
            self.model.save(ckpt_dir / state["last_file"])
            state["rng_states"] = [
                keras.ops.convert_to_numpy(v).tolist() for v in _rng_state_variables(self.model)
            ]
            (ckpt_dir / "state.json.tmp").write_text(json.dumps(state, indent=1))
            os.replace(ckpt_dir / "state.json.tmp", ckpt_dir / "state.json")
            for path in ckpt_dir.iterdir():
                if path.name not in ("state.json", state["last_file"], state["best_file"]):
                    path.unlink()

    return ResumableTraining()


def training_recipe(training: dict[str, Any]) -> dict[str, Any]:
    """The training settings with the paper's values for the keys beyond the paper; checked."""
    recipe = {**RECIPE_DEFAULTS, **training}
    if recipe["select_by"] not in SELECT_BY:
        raise ValueError(
            f"training.select_by is {recipe['select_by']!r}; expected one of {SELECT_BY}"
        )
    return recipe


def _compile(net, recipe: dict[str, Any]) -> None:
    import keras

    from .readout import ReadoutMSE

    weight = recipe["readout_weight"]
    net.compile(
        optimizer=keras.optimizers.Adam(recipe["learning_rate"]),
        loss=ReadoutMSE(readout_weight=weight) if weight > 0 else "mse",
        jit_compile=False,
    )


def train_model(
    *,
    train_path: str,
    val_path: str,
    normalization_path: str,
    out_model: str,
    out_history: str,
    out_normalization: str,
    model: dict[str, Any],
    training: dict[str, Any],
    seed: int,
    threads: int = 1,
    max_epochs_this_call: int | None = None,
    spectra_path: str | None = None,
    sky: dict[str, Any] | None = None,
    sigma_int: float | None = None,
) -> dict[str, Any]:
    """Train the mResUNet and write the model, its history and its normalization.

    Args:
        model: keyword arguments of ``build_mresunet`` (base_filters, depth, dropout, ...).
        training: ``learning_rate``, ``batch_size``, ``lr_patience``, ``lr_factor``,
            ``stop_patience``, ``max_epochs``, ``mixed_precision``, and optionally the keys of
            ``RECIPE_DEFAULTS``.
        max_epochs_this_call: stop after this many epochs of this call without writing the
            final outputs (for tests of the resume; None in the workflow).
        spectra_path, sky, sigma_int: the spectra table, the ``sky`` config and the training
            maps' intrinsic scatter, which ``fresh_skies`` draws new skies with.
    Returns:
        the final training state (best epoch and loss, whether early stopping ended it).
    """
    recipe = training_recipe(training)
    norm = read_normalization(normalization_path)
    npix = int(norm["npix"])
    x_train, y_train = load_set(train_path, input_size=npix)
    x_val, y_val = load_set(val_path, input_size=npix)
    configure_tensorflow(
        threads=threads,
        seed=seed,
        mixed_precision=recipe["mixed_precision"],
        deterministic=recipe["deterministic"],
    )
    import keras

    from .model import build_mresunet

    out_model = Path(out_model)
    ckpt_dir = out_model.parent / f".{out_model.stem}.checkpoint"
    settings = {
        "model": model,
        "training": training,
        "seed": seed,
        "norm": norm,
        "n_train": len(x_train),
        "n_val": len(x_val),
        "digest": _code_and_data_digest(x_train, y_train, x_val, y_val),
    }
    if recipe["fresh_skies"]:
        settings["fresh_skies"] = {"sky": sky, "sigma_int": sigma_int}
    fp = fingerprint(settings)
    state: dict[str, Any] = {
        "fingerprint": fp,
        "epochs_done": 0,
        "best_score": float("inf"),
        "best_val_loss": float("inf"),
        "best_epoch": 0,
        "wait_lr": 0,
        "wait_stop": 0,
        "stopped_early": False,
        "history": [],
    }
    saved = ckpt_dir / "state.json"
    if saved.exists() and json.loads(saved.read_text()).get("fingerprint") == fp:
        state = json.loads(saved.read_text())
        net = keras.saving.load_model(ckpt_dir / state["last_file"])
        for var, value in zip(_rng_state_variables(net), state["rng_states"], strict=True):
            var.assign(np.asarray(value, dtype=var.dtype))
        log.info("resuming from the checkpoint after epoch %d", state["epochs_done"])
    else:
        if ckpt_dir.exists():
            log.info("discarding a checkpoint of other settings (or unfinished) in %s", ckpt_dir)
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
        net = build_mresunet(input_size=npix, **model)
        _compile(net, recipe)
        log.info("mResUNet: %d parameters", net.count_params())

    max_epochs = recipe["max_epochs"]
    first = state["epochs_done"]
    last = (
        max_epochs
        if max_epochs_this_call is None
        else min(max_epochs, first + max_epochs_this_call)
    )
    batch = recipe["batch_size"]
    draw_seconds: dict[int, float] = {}
    if recipe["fresh_skies"]:
        if spectra_path is None or sky is None or sigma_int is None:
            raise ValueError("training.fresh_skies needs spectra_path, sky and sigma_int")
        from .fresh_skies import FreshSkies, scatter_free_sz

        ln_scatter = xr.open_zarr(train_path, consolidated=True)["ln_scatter"].values
        fresh = FreshSkies(
            sz_uk=scatter_free_sz(y_train[..., 0], ln_scatter, norm["sz_scale"]),
            spectra_path=spectra_path,
            sky=sky,
            sigma_int=sigma_int,
            seed=seed,
            sky_scale=norm["sky_scale"],
            sz_scale=norm["sz_scale"],
            threads=threads,
        )
        stream = fresh_epoch_batches(
            fresh,
            y_train[..., 1],
            batch_size=batch,
            seed=seed,
            first_epoch=first,
            last_epoch=last,
            draw_seconds=draw_seconds,
        )
    else:
        stream = epoch_batches(
            x_train, y_train, batch_size=batch, seed=seed, first_epoch=first, last_epoch=last
        )

    def validate(net):
        return _validate(
            net,
            x_val,
            y_val,
            m_norm=norm["m_norm_msun"],
            recipe=recipe,
            x_recal=x_train[:BN_RECALIBRATION_MAPS],
        )

    if first < last and not state["stopped_early"]:
        net.fit(
            stream,
            steps_per_epoch=-(-len(x_train) // batch),
            initial_epoch=first,
            epochs=last,
            callbacks=[
                _make_callback(
                    ckpt_dir=ckpt_dir,
                    state=state,
                    training=recipe,
                    n_train=len(x_train),
                    validate=validate,
                    draw_seconds=draw_seconds,
                )
            ],
            shuffle=False,
            verbose=0,
        )
    finished = state["stopped_early"] or state["epochs_done"] >= max_epochs
    if not finished:
        return state
    if not state["stopped_early"]:
        log.warning("training ended on the epoch cap (%d), not on early stopping", max_epochs)
    net.load_weights(ckpt_dir / state["best_file"])
    _write_outputs(
        net,
        state,
        norm,
        out_model=out_model,
        out_history=Path(out_history),
        out_normalization=Path(out_normalization),
    )
    shutil.rmtree(ckpt_dir)
    return state


def _write_outputs(
    net, state, norm, *, out_model: Path, out_history: Path, out_normalization: Path
) -> None:
    """History, normalization, then the model last, each written beside and renamed."""
    out_model.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_history.with_name(f".{out_history.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(state["history"])
    os.replace(tmp, out_history)
    summary = {
        **norm,
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val_loss"],
        "stopped_early": state["stopped_early"],
    }
    tmp = out_normalization.with_name(f".{out_normalization.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out_normalization)
    tmp = out_model.with_name(f".{out_model.stem}.tmp.keras")
    net.save(tmp)
    os.replace(tmp, out_model)
