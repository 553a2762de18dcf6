"""Training of the mResUNet (SPEC §3; Gupta & Reichardt 2020, arXiv:2003.06135, §3).

MSE loss, Adam, batch 4, the learning rate halved after ``lr_patience`` epochs without a
better validation loss, stopped after ``stop_patience`` with the best weights restored, at most
``max_epochs``. A killed job resumes from its last finished epoch: after every epoch the model,
the optimizer and the bookkeeping (best loss, patience counters, learning rate, history) are
written to a checkpoint directory beside the outputs, and a rerun with the same settings picks
them up. The data order of epoch e is a stateless shuffle keyed on (seed, e), so a resumed run
sees the same batches as an uninterrupted one.
"""

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .dataset import read_normalization

log = logging.getLogger("szmass.train")

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "learning_rate", "seconds", "images_per_s")


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


def configure_tensorflow(*, threads: int, seed: int, mixed_precision: bool) -> None:
    """Threads, seeds, determinism and precision; call before building the model."""
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError as err:  # TensorFlow already ran an op in this process
        log.warning("keeping TensorFlow's thread pools as they are: %s", err)
    keras.utils.set_random_seed(seed)
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
    for module in ("model.py", "train.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


def _make_callback(
    *,
    ckpt_dir: Path,
    state: dict[str, Any],
    lr_patience: int,
    lr_factor: float,
    stop_patience: int,
    n_train: int,
    max_epochs: int,
):
    import keras

    class ResumableTraining(keras.callbacks.Callback):
        """Plateau LR halving, early stopping, best weights and a checkpoint every epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = time.perf_counter() - self.t0
            val = float(logs["val_loss"])
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            state["history"].append(
                {
                    "epoch": epoch + 1,
                    "loss": float(logs["loss"]),
                    "val_loss": val,
                    "learning_rate": lr,
                    "seconds": seconds,
                    "images_per_s": n_train / seconds,
                }
            )
            if val < state["best_val_loss"]:
                state.update(best_val_loss=val, best_epoch=epoch + 1, wait_lr=0, wait_stop=0)
                state["best_file"] = f"best-{epoch + 1:04d}.weights.h5"
                self.model.save_weights(ckpt_dir / state["best_file"])
            else:
                state["wait_lr"] += 1
                state["wait_stop"] += 1
                if state["wait_lr"] >= lr_patience:
                    self.model.optimizer.learning_rate.assign(lr * lr_factor)
                    state["wait_lr"] = 0
                    log.info(
                        "no improvement for %d epochs: learning rate -> %.3g",
                        lr_patience,
                        lr * lr_factor,
                    )
                if state["wait_stop"] >= stop_patience:
                    state["stopped_early"] = True
                    self.model.stop_training = True
            state["epochs_done"] = epoch + 1
            eta = seconds * (max_epochs - epoch - 1)
            log.info(
                "epoch %d/%d: loss %.4g, val_loss %.4g (best %.4g @ %d), lr %.3g, "
                "%.0f images/s, ETA <= %.0f s",
                epoch + 1,
                max_epochs,
                logs["loss"],
                val,
                state["best_val_loss"],
                state["best_epoch"],
                lr,
                n_train / seconds,
                eta,
            )
            # checkpoint: model + optimizer, then the state that points at it
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
) -> dict[str, Any]:
    """Train the mResUNet and write the model, its history and its normalization.

    Args:
        model: keyword arguments of ``build_mresunet`` (base_filters, depth, dropout, ...).
        training: ``learning_rate``, ``batch_size``, ``lr_patience``, ``lr_factor``,
            ``stop_patience``, ``max_epochs``, ``mixed_precision``.
        max_epochs_this_call: stop after this many epochs of this call without writing the
            final outputs (for tests of the resume; None in the workflow).
    Returns:
        the final training state (best epoch and loss, whether early stopping ended it).
    """
    norm = read_normalization(normalization_path)
    npix = int(norm["npix"])
    x_train, y_train = load_set(train_path, input_size=npix)
    x_val, y_val = load_set(val_path, input_size=npix)
    configure_tensorflow(threads=threads, seed=seed, mixed_precision=training["mixed_precision"])
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
    fp = fingerprint(settings)
    state: dict[str, Any] = {
        "fingerprint": fp,
        "epochs_done": 0,
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
        net.compile(
            optimizer=keras.optimizers.Adam(training["learning_rate"]),
            loss="mse",
            jit_compile=False,
        )
        log.info("mResUNet: %d parameters", net.count_params())

    max_epochs = training["max_epochs"]
    first = state["epochs_done"]
    last = (
        max_epochs
        if max_epochs_this_call is None
        else min(max_epochs, first + max_epochs_this_call)
    )
    batch = training["batch_size"]
    if first < last and not state["stopped_early"]:
        net.fit(
            epoch_batches(
                x_train, y_train, batch_size=batch, seed=seed, first_epoch=first, last_epoch=last
            ),
            steps_per_epoch=-(-len(x_train) // batch),
            validation_data=(x_val, y_val),
            validation_batch_size=batch,
            initial_epoch=first,
            epochs=last,
            callbacks=[
                _make_callback(
                    ckpt_dir=ckpt_dir,
                    state=state,
                    lr_patience=training["lr_patience"],
                    lr_factor=training["lr_factor"],
                    stop_patience=training["stop_patience"],
                    n_train=len(x_train),
                    max_epochs=max_epochs,
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
