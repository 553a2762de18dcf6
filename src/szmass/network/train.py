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
validation (``bn_recalibration``), a linear learning-rate warm-up, a learning-rate floor that
stops training when a plateau cut would go below it (``min_learning_rate``), a cosine decay
instead of the plateau cuts (``schedule: cosine``), an exponential moving average of the
weights that validation, the best weights and the model use (``ema_momentum``), op
determinism as an option (it costs ~20% on 2 CPU cores), and a fine-tune phase after early
stopping (``finetune_epochs``): the best weights copied into the same network without dropout,
its batch-norm statistics recomputed, then ``finetune_epochs`` more epochs at their own learning
rate (a cosine decay to ``FINETUNE_FLOOR`` of it), batch size and readout weight, on skies of
their own, the best of them by the validation width. The two phases checkpoint separately, and
the finished first phase's checkpoint is kept beside the outputs: a changed fine-tune setting
reruns only the fine-tune.
"""

import csv
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .callback import make_callback, rng_state_variables
from .dataset import input_channels, read_normalization, takes_z
from .stream import StreamedSet, load_set, streamed_epoch_batches

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
    "min_learning_rate": 0.0,
    "fresh_skies": False,
    "readout_weight": 0.0,
    "readout_loss": "squared",
    "sz_weight": 1.0,
    "select_by": "val_loss",
    "val_width_range": [],
    "bn_recalibration": False,
    "schedule": "plateau",
    "ema_momentum": 0.0,
    "streaming": False,
    "finetune_epochs": 0,
    "finetune_learning_rate": 2.0e-4,
    "finetune_batch_size": 32,
    "finetune_readout_weight": 10.0,
    "finetune_readout_loss": "squared",
    "finetune_sz_weight": 1.0,
    "finetune_stop_patience": 0,
    "finetune_schedule": "cosine",
    "finetune_lr_patience": 0,
    "finetune_ema_momentum": 0.0,
}
#: The fine-tune's cosine decay ends at this fraction of its learning rate.
FINETUNE_FLOOR = 0.05
#: What picks the best epoch: the map-wide loss, the estimate's robust width, or that width plus
#: the absolute mean ln ratio (a narrow epoch that reads high or low loses to an unbiased one).
SELECT_BY = ("val_loss", "val_width", "val_width_bias")
SCHEDULES = ("plateau", "cosine")
#: The fewest validation maps ``val_width_range`` may leave to score an epoch on.
MIN_VAL_IN_RANGE = 50
#: Training inputs the batch-norm statistics are recomputed on (every k-th map: all masses).
BN_RECALIBRATION_MAPS = 1024


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


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of everything that defines a run; a checkpoint resumes only a same run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _code_and_data_digest(*arrays: np.ndarray, streamed: StreamedSet | None = None) -> str:
    """sha256 of the training arrays (a ``streamed`` training set first: the same bytes as
    its arrays in memory) and of the model and training code."""
    digest = hashlib.sha256()
    if streamed is not None:
        streamed.update_digest(digest)
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).tobytes())
    for module in (
        "model.py",
        "train.py",
        "callback.py",
        "readout.py",
        "fresh_skies.py",
        "stream.py",
    ):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()


def training_recipe(training: dict[str, Any]) -> dict[str, Any]:
    """The training settings with the paper's values for the keys beyond the paper; checked."""
    recipe = {**RECIPE_DEFAULTS, **training}
    if recipe["select_by"] not in SELECT_BY:
        raise ValueError(
            f"training.select_by is {recipe['select_by']!r}; expected one of {SELECT_BY}"
        )
    from .readout import READOUT_LOSSES  # keras: imported where training runs

    for key in ("readout_loss", "finetune_readout_loss"):
        if recipe[key] not in READOUT_LOSSES:
            raise ValueError(f"training.{key} is {recipe[key]!r}; expected one of {READOUT_LOSSES}")
    for key, off in (("finetune_stop_patience", "off"), ("finetune_lr_patience", "lr_patience")):
        if recipe[key] < 0:
            raise ValueError(
                f"training.{key} is {recipe[key]!r}; expected 0 ({off}) or a number of epochs"
            )
    band = recipe["val_width_range"]
    if len(band) not in (0, 2) or (len(band) == 2 and not 0 < band[0] < band[1]):
        raise ValueError(
            f"training.val_width_range is {band!r}; expected [] (every validation map) or "
            "[low, high] in 1e14 Msun with 0 < low < high"
        )
    for key in ("schedule", "finetune_schedule"):
        if recipe[key] not in SCHEDULES:
            raise ValueError(f"training.{key} is {recipe[key]!r}; expected one of {SCHEDULES}")
    for key in ("sz_weight", "finetune_sz_weight"):
        if not recipe[key] > 0:
            raise ValueError(f"training.{key} is {recipe[key]!r}; expected a weight > 0")
    for key in ("ema_momentum", "finetune_ema_momentum"):
        if not 0.0 <= recipe[key] < 1.0:
            raise ValueError(f"training.{key} is {recipe[key]!r}; expected 0 (off) <= m < 1")
    return recipe


def _check_val_width_range(band, y_val: np.ndarray, m_norm: float) -> None:
    """Refuse a ``val_width_range`` that holds fewer than ``MIN_VAL_IN_RANGE`` validation maps."""
    if not band:
        return
    c = y_val.shape[1] // 2
    m14 = y_val[:, c, c, 1] * m_norm / 1e14
    inside = int(((m14 >= band[0]) & (m14 <= band[1])).sum())
    if inside < MIN_VAL_IN_RANGE:
        raise ValueError(
            f"training.val_width_range {list(band)} holds {inside} of the {len(m14)} validation "
            f"maps (M200c {m14.min():.3g}-{m14.max():.3g}e14 Msun); at least "
            f"{MIN_VAL_IN_RANGE} are needed"
        )


def _compile(net, recipe: dict[str, Any]) -> None:
    import keras

    from .readout import ReadoutMSE

    weight, ema, sz = recipe["readout_weight"], recipe["ema_momentum"], recipe["sz_weight"]
    net.compile(
        optimizer=keras.optimizers.Adam(
            recipe["learning_rate"], use_ema=ema > 0, ema_momentum=ema or 0.99
        ),
        loss=(
            ReadoutMSE(readout_weight=weight, readout_loss=recipe["readout_loss"], sz_weight=sz)
            if weight > 0 or sz != 1.0
            else "mse"
        ),
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
    channels = input_channels(norm)
    x_val, y_val = load_set(val_path, input_size=npix, channels=channels)
    _check_val_width_range(recipe["val_width_range"], y_val, norm["m_norm_msun"])
    if recipe["streaming"]:
        streamed = StreamedSet(train_path, input_size=npix, channels=channels)
        n_train, train_arrays = streamed.n, ()
        x_recal = streamed.every(streamed.n // BN_RECALIBRATION_MAPS)
    else:
        streamed = None
        x_train, y_train = load_set(train_path, input_size=npix, channels=channels)
        n_train, train_arrays = len(x_train), (x_train, y_train)
        x_recal = x_train[:: max(1, n_train // BN_RECALIBRATION_MAPS)]
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
        "training": {k: v for k, v in training.items() if not k.startswith("finetune_")},
        "seed": seed,
        "norm": norm,
        "n_train": n_train,
        "n_val": len(x_val),
        "digest": _code_and_data_digest(*train_arrays, x_val, y_val, streamed=streamed),
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
        from .readout import ReadoutMSE  # the loss of readout_weight > 0, named explicitly:
        # the decorator's registration happens only where readout was imported before

        net = keras.saving.load_model(
            ckpt_dir / state["last_file"],
            custom_objects={keras.saving.get_registered_name(ReadoutMSE): ReadoutMSE},
        )
        for var, value in zip(rng_state_variables(net), state["rng_states"], strict=True):
            var.assign(np.asarray(value, dtype=var.dtype))
        log.info("resuming from the checkpoint after epoch %d", state["epochs_done"])
    else:
        if ckpt_dir.exists():
            log.info(
                "discarding a checkpoint of other settings (or unfinished) in %s (this run's "
                "fingerprint: %s)",
                ckpt_dir,
                fp,
            )
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
        net = build_mresunet(input_size=npix, input_channels=channels, **model)
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
    fresh = ln_scatter = None
    if recipe["fresh_skies"]:
        if spectra_path is None or sky is None or sigma_int is None:
            raise ValueError("training.fresh_skies needs spectra_path, sky and sigma_int")
        from .fresh_skies import FreshSkies, fresh_epoch_batches, scatter_free_sz

        ln_scatter = xr.open_zarr(train_path, consolidated=True)["ln_scatter"].values
        in_memory = streamed is None
        fresh = FreshSkies(
            sz_uk=scatter_free_sz(y_train[..., 0], ln_scatter, norm["sz_scale"])
            if in_memory
            else None,
            spectra_path=spectra_path,
            sky=sky,
            sigma_int=sigma_int,
            seed=seed,
            sky_scale=norm["sky_scale"],
            sz_scale=norm["sz_scale"],
            threads=threads,
            z_channel=x_train[:, 0, 0, 1] if takes_z(norm) and in_memory else None,
        )

    def make_stream(first_epoch: int, last_epoch: int, batch_size: int):
        if streamed is not None:
            return streamed_epoch_batches(
                streamed,
                batch_size=batch_size,
                seed=seed,
                first_epoch=first_epoch,
                last_epoch=last_epoch,
                fresh=fresh,
                ln_scatter=ln_scatter,
                sz_scale=norm["sz_scale"],
                draw_seconds=draw_seconds,
            )
        if recipe["fresh_skies"]:
            return fresh_epoch_batches(
                fresh,
                y_train[..., 1],
                batch_size=batch_size,
                seed=seed,
                first_epoch=first_epoch,
                last_epoch=last_epoch,
                draw_seconds=draw_seconds,
            )
        return epoch_batches(
            x_train,
            y_train,
            batch_size=batch_size,
            seed=seed,
            first_epoch=first_epoch,
            last_epoch=last_epoch,
        )

    from .readout import validate_readout

    def validate(net):
        return validate_readout(
            net,
            x_val,
            y_val,
            m_norm=norm["m_norm_msun"],
            recipe=recipe,
            x_recal=x_recal,
        )

    if first < last and not state["stopped_early"]:
        net.fit(
            make_stream(first, last, batch),
            steps_per_epoch=-(-n_train // batch),
            initial_epoch=first,
            epochs=last,
            callbacks=[
                make_callback(
                    ckpt_dir=ckpt_dir,
                    state=state,
                    training=recipe,
                    n_train=n_train,
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
    history, final = state["history"], {}
    ft_dir = out_model.parent / f".{out_model.stem}.finetune.checkpoint"
    if recipe["finetune_epochs"] > 0:
        budget = (
            None
            if max_epochs_this_call is None
            else max_epochs_this_call - (state["epochs_done"] - first)
        )
        net, ft_state = _finetune(
            net,
            recipe=recipe,
            model=model,
            ckpt_dir=ft_dir,
            fp=fingerprint(
                {
                    "pretrain": fp,
                    "epochs": state["epochs_done"],
                    **{k: v for k, v in training.items() if k.startswith("finetune_")},
                }
            ),
            first_epoch=state["epochs_done"],
            budget=budget,
            make_stream=make_stream,
            validate=validate,
            x_recal=x_recal,
            n_train=n_train,
            draw_seconds=draw_seconds,
        )
        if not ft_state["finished"]:
            return state
        history = history + ft_state["history"]
        final.update(
            pretrain_best_epoch=state["best_epoch"],
            best_epoch=ft_state["best_epoch"],
            best_val_loss=ft_state["best_val_loss"],
            finetune_epochs=ft_state["epochs_done"] - state["epochs_done"],  # as run
            finetune_stopped_early=ft_state["stopped_early"],
        )
    _write_outputs(
        net,
        {**state, **final, "history": history},
        norm,
        out_model=out_model,
        out_history=Path(out_history),
        out_normalization=Path(out_normalization),
    )
    shutil.rmtree(ft_dir, ignore_errors=True)
    if recipe["finetune_epochs"] == 0:
        shutil.rmtree(ckpt_dir)
    else:  # the finished first phase stays: a changed fine-tune setting reruns only the fine-tune
        log.info("the first phase's checkpoint is kept in %s", ckpt_dir)
    return {**state, **final}


def finetune_recipe(recipe: dict[str, Any], first_epoch: int) -> dict[str, Any]:
    """The fine-tune phase's recipe: epochs ``first_epoch`` .. ``first_epoch +
    finetune_epochs`` (numbered on from the first phase, so their fresh skies are their own),
    from ``finetune_learning_rate`` down to ``FINETUNE_FLOOR`` of it by a cosine decay over
    those epochs (``finetune_schedule: cosine``) or by the first phase's plateau cuts
    (``plateau``: ``lr_factor`` after ``finetune_lr_patience`` epochs without a narrower
    estimate, 0 meaning the first phase's ``lr_patience``, stopped where a cut would go below
    the floor), the best epoch by the validation width,
    stopped after ``finetune_stop_patience`` epochs without a narrower one (0: never;
    ``finetune_epochs`` is the phase's cap), with a moving average of the weights of its own
    (``finetune_ema_momentum``; 0: none)."""
    n, lr = recipe["finetune_epochs"], recipe["finetune_learning_rate"]
    patience = recipe["finetune_stop_patience"] or n + 1
    plateau = recipe["finetune_schedule"] == "plateau"
    return {
        **recipe,
        "learning_rate": lr,
        "min_learning_rate": FINETUNE_FLOOR * lr,
        "batch_size": recipe["finetune_batch_size"],
        "readout_weight": recipe["finetune_readout_weight"],
        "readout_loss": recipe["finetune_readout_loss"],
        "sz_weight": recipe["finetune_sz_weight"],
        "ema_momentum": recipe["finetune_ema_momentum"],
        "schedule": recipe["finetune_schedule"],
        "warmup_epochs": first_epoch,  # the cosine starts at the fine-tune's first epoch
        "max_epochs": first_epoch + n,
        "select_by": "val_width",
        "lr_patience": (recipe["finetune_lr_patience"] or recipe["lr_patience"])
        if plateau
        else n + 1,
        "stop_patience": patience,
    }


def _finetune(
    pretrained,
    *,
    recipe,
    model,
    ckpt_dir: Path,
    fp: str,
    first_epoch: int,
    budget: int | None,
    make_stream,
    validate,
    x_recal,
    n_train: int,
    draw_seconds,
):
    """The fine-tune phase (see the module's docstring); returns the network with its best
    weights and the phase's state (``finished`` False when ``budget`` epochs ran out first)."""
    import keras

    from .model import build_mresunet
    from .readout import ReadoutMSE, recalibrate_batch_norm

    ft = finetune_recipe(recipe, first_epoch)
    state: dict[str, Any] = {
        "fingerprint": fp,
        "epochs_done": first_epoch,
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
        net = keras.saving.load_model(
            ckpt_dir / state["last_file"],
            custom_objects={keras.saving.get_registered_name(ReadoutMSE): ReadoutMSE},
        )
        log.info("resuming the fine-tune from its checkpoint after epoch %d", state["epochs_done"])
    else:
        if ckpt_dir.exists():
            shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
        net = build_mresunet(
            input_size=pretrained.input_shape[1],
            input_channels=pretrained.input_shape[-1],
            **{**model, "dropout": 0.0},
        )
        for layer in net.layers:  # the same layers by name, less the dropout ones
            if layer.weights:
                layer.set_weights(pretrained.get_layer(layer.name).get_weights())
        recalibrate_batch_norm(net, x_recal)
        _compile(net, ft)
        log.info(
            "fine-tune: at most %d epochs without dropout, learning rate %.3g (%s), batch "
            "%d, readout weight %g (%s)%s%s",
            recipe["finetune_epochs"],
            ft["learning_rate"],
            ft["schedule"],
            ft["batch_size"],
            ft["readout_weight"],
            ft["readout_loss"],
            f", stopped after {ft['stop_patience']} epochs without a narrower estimate"
            if recipe["finetune_stop_patience"]
            else "",
            f", weights averaged (momentum {ft['ema_momentum']:g})" if ft["ema_momentum"] else "",
        )
    last = (
        ft["max_epochs"] if budget is None else min(ft["max_epochs"], state["epochs_done"] + budget)
    )
    if state["epochs_done"] < last and not state["stopped_early"]:
        net.fit(
            make_stream(state["epochs_done"], last, ft["batch_size"]),
            steps_per_epoch=-(-n_train // ft["batch_size"]),
            initial_epoch=state["epochs_done"],
            epochs=last,
            callbacks=[
                make_callback(
                    ckpt_dir=ckpt_dir,
                    state=state,
                    training=ft,
                    n_train=n_train,
                    validate=validate,
                    draw_seconds=draw_seconds,
                )
            ],
            shuffle=False,
            verbose=0,
        )
    state["finished"] = state["stopped_early"] or state["epochs_done"] >= ft["max_epochs"]
    if state["finished"]:
        net.load_weights(ckpt_dir / state["best_file"])
    return net, state


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
        # with a fine-tune phase: the first phase's best epoch, the fine-tune's length as run
        # and whether its own early stopping ended it
        **{
            k: state[k]
            for k in ("pretrain_best_epoch", "finetune_epochs", "finetune_stopped_early")
            if k in state
        },
    }
    tmp = out_normalization.with_name(f".{out_normalization.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out_normalization)
    tmp = out_model.with_name(f".{out_model.stem}.tmp.keras")
    net.save(tmp)
    os.replace(tmp, out_model)
