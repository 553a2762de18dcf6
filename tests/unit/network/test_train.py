"""szmass.network.train: checked inputs, the epoch order, and a training that resumes where it
stopped.

The training runs use a tiny network (base width 4, depth 1) on the prepared 8x8 set of
``conftest.prepared8``; most of each call's ~10 s is Keras tracing the train step, on one core.
So two child processes (a dropout run, a killed run) train on the other core while this one
runs the main chain (fixture ``children``, started by ``runs``).
"""

import contextlib
import csv
import json
import logging
import math
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import xarray as xr

from szmass.io import write_zarr_atomic
from szmass.network.dataset import _as_dataset
from szmass.network.train import (
    HISTORY_FIELDS,
    epoch_batches,
    finetune_recipe,
    load_set,
    train_model,
    training_recipe,
)

from ..conftest import sky, write_spectra

pytestmark = [
    # Keras 3.15 converts TF variables with np.array(copy=False), which NumPy 2 deprecates.
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

MODEL = {
    "base_filters": 4,
    "depth": 1,
    "n_substages": 4,
    "dropout": 0.0,
    "dropout_placement": "decoder",
}
TRAINING = {
    "learning_rate": 1e-3,
    "batch_size": 4,
    "lr_patience": 1,
    "lr_factor": 0.5,
    "stop_patience": 10,
    "max_epochs": 3,
    "mixed_precision": False,
}
SEED = 11
OUTPUTS = ("mresunet.keras", "history.csv", "normalization.json")
CHECKPOINT = ".mresunet.checkpoint"


@contextlib.contextmanager
def _tolerant_thread_settings():
    """configure_tensorflow sets TF's thread pools, which TF refuses once it has run an op
    (RuntimeError), as it has in this process; skip them (see test_configure_after_tf_ran)."""
    import tensorflow as tf

    def tolerant(setter):
        def set_threads(n):
            with contextlib.suppress(RuntimeError):
                setter(n)

        return set_threads

    with pytest.MonkeyPatch.context() as mp:
        for name in ("set_intra_op_parallelism_threads", "set_inter_op_parallelism_threads"):
            mp.setattr(tf.config.threading, name, tolerant(getattr(tf.config.threading, name)))
        yield


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _kwargs(data: Path, out: Path, *, model=MODEL, training=TRAINING, seed=SEED, cap=None):
    """train_model's arguments: the set in ``data``, the outputs in ``out``."""
    return {
        "train_path": str(data / "train.zarr"),
        "val_path": str(data / "val.zarr"),
        "normalization_path": str(data / "normalization.json"),
        "out_model": str(out / OUTPUTS[0]),
        "out_history": str(out / OUTPUTS[1]),
        "out_normalization": str(out / OUTPUTS[2]),
        "model": model,
        "training": training,
        "seed": seed,
        "threads": 1,
        "max_epochs_this_call": cap,
    }


def _train(data: Path, out: Path, **settings):
    """train_model in this process; returns (state, its log lines)."""
    logger = logging.getLogger("szmass.train")
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        with _tolerant_thread_settings():
            state = train_model(**_kwargs(data, out, **settings))
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return state, records.messages


#: Runs train_model calls (a JSON list of keyword arguments) in a child process.
CHILD = """
import json, sys
from szmass.logs import setup_logging
from szmass.network.train import train_model
setup_logging(None)
for kwargs in json.loads(sys.argv[1]):
    train_model(**kwargs)
print("DONE", flush=True)
"""


class _Child:
    """train_model calls in a child process, its output in files under ``workdir``."""

    def __init__(self, calls: list[dict], workdir: Path, timeout: float = 400):
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout, self.stderr = workdir / "stdout.txt", workdir / "stderr.txt"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, json.dumps(calls)], stdout=out, stderr=err
            )
        self.watchdog = threading.Timer(timeout, self.proc.kill)  # never hang the suite
        self.watchdog.daemon = True
        self.watchdog.start()

    def finish(self, timeout: float = 400) -> tuple[int, str, str]:
        """Wait for the child; (exit status, stdout, stderr)."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            self.watchdog.cancel()
        return rc, self.stdout.read_text(), self.stderr.read_text()

    def stop(self) -> None:
        self.watchdog.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _history(out: Path) -> list[dict]:
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def _losses(rows) -> list[tuple]:
    """(epoch, loss, val_loss, learning_rate) of history rows (csv or state), as floats."""
    return [
        tuple(float(r[k]) for k in ("epoch", "loss", "val_loss", "learning_rate")) for r in rows
    ]


def _snapshot(out: Path, dest: Path) -> Path:
    shutil.copytree(out / CHECKPOINT, dest)
    return dest


# --- an uninterrupted run and one stopped after every epoch ---------------------------------


@pytest.fixture(scope="module")
def runs(prepared8, tmp_path_factory, children):
    """The same training (3 epochs) run straight through, and run one epoch per call
    (snapshots of the checkpoint after epochs 1 and 2 kept)."""
    root = tmp_path_factory.mktemp("runs")
    out = {"root": root, "full": root / "full", "resumed": root / "resumed"}
    out["full_state"], out["full_log"] = _train(prepared8, out["full"])
    out["calls"] = []
    for k in (1, 2):
        state, log = _train(prepared8, out["resumed"], cap=1)
        files = sorted(p.name for p in out["resumed"].iterdir())
        out["calls"].append({"state": json.loads(json.dumps(state)), "log": log, "files": files})
        out[f"snap{k}"] = _snapshot(out["resumed"], root / f"snap{k}")
    state, log = _train(prepared8, out["resumed"])
    out["calls"].append({"state": state, "log": log})
    return out


def test_interrupted_after_one_epoch(runs):
    first = runs["calls"][0]
    assert first["state"]["epochs_done"] == 1
    assert [r["epoch"] for r in first["state"]["history"]] == [1]
    # only the checkpoint, no final output yet
    assert first["files"] == [CHECKPOINT]
    snap = runs["snap1"]
    names = ["best-0001.weights.h5", "last-0001.keras", "state.json"]
    assert sorted(p.name for p in snap.iterdir()) == names
    saved = json.loads((snap / "state.json").read_text())
    assert saved["epochs_done"] == 1 and saved["best_epoch"] == 1
    assert saved["history"] == first["state"]["history"]
    # the checkpoint holds the optimizer too: one epoch of steps (24 maps / batch 4)
    net = keras.saving.load_model(snap / saved["last_file"])
    assert int(net.optimizer.iterations) == 6


def test_resumes_at_the_next_epoch(runs):
    second, third = runs["calls"][1], runs["calls"][2]
    assert "resuming from the checkpoint after epoch 1" in second["log"]
    assert [r["epoch"] for r in second["state"]["history"]] == [1, 2]
    assert second["files"] == [CHECKPOINT]
    assert "resuming from the checkpoint after epoch 2" in third["log"]
    assert [int(r["epoch"]) for r in _history(runs["resumed"])] == [1, 2, 3]
    assert not any(m.startswith("epoch 1/") for m in second["log"] + third["log"])
    # finished: the outputs, and the checkpoint is gone
    assert sorted(p.name for p in runs["resumed"].iterdir()) == sorted(OUTPUTS)


def test_resumed_equals_uninterrupted(runs, prepared8):
    full, resumed = _history(runs["full"]), _history(runs["resumed"])
    assert _losses(resumed) == _losses(full)  # bit for bit
    x_val, _ = load_set(prepared8 / "val.zarr")
    a = keras.saving.load_model(runs["full"] / "mresunet.keras")
    b = keras.saving.load_model(runs["resumed"] / "mresunet.keras")
    np.testing.assert_array_equal(a.predict(x_val, verbose=0), b.predict(x_val, verbose=0))


def test_outputs(runs, prepared8):
    out = runs["full"]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    history = _history(out)
    assert list(history[0]) == list(HISTORY_FIELDS)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    # the normalization travels with the model, with the training's summary
    summary = json.loads((out / "normalization.json").read_text())
    norm = json.loads((prepared8 / "normalization.json").read_text())
    assert {k: summary[k] for k in norm} == norm
    val_losses = [float(r["val_loss"]) for r in history]
    assert summary["best_epoch"] == int(np.argmin(val_losses)) + 1
    assert summary["best_val_loss"] == min(val_losses)
    assert summary["stopped_early"] is False
    assert "training ended on the epoch cap (3), not on early stopping" in runs["full_log"]
    # the saved model is the best epoch's, and loads with plain Keras
    net = keras.saving.load_model(out / "mresunet.keras")
    x_val, y_val = load_set(prepared8 / "val.zarr", input_size=8)
    pred = net.predict(x_val, batch_size=4, verbose=0)
    assert pred.shape == (12, 8, 8, 2)
    # fit's val_loss is the mean of 3 equal batches' MSEs: the MSE over the set
    assert float(np.mean((pred - y_val) ** 2)) == pytest.approx(min(val_losses), rel=1e-5)


def _checkpoint_from(snapshot: Path, out: Path) -> Path:
    out.mkdir(parents=True)
    shutil.copytree(snapshot, out / CHECKPOINT)
    return out


CHANGES = {
    "training.learning_rate": {"training": {**TRAINING, "learning_rate": 2e-3}},
    "training.max_epochs": {"training": {**TRAINING, "max_epochs": 4}},
    "model.base_filters": {"model": {**MODEL, "base_filters": 8}},
    "model.dropout": {"model": {**MODEL, "dropout": 0.1}},
    "seed": {"seed": SEED + 1},
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_changed_setting_discards_the_checkpoint(runs, prepared8, tmp_path, change):
    out = _checkpoint_from(runs["snap1"], tmp_path / "out")
    state, log = _train(prepared8, out, cap=0, **CHANGES[change])
    assert any(m.startswith("discarding a checkpoint of other settings") for m in log), log
    assert state["epochs_done"] == 0 and state["history"] == []
    assert list((out / CHECKPOINT).iterdir()) == []


def test_same_settings_resume_the_checkpoint(runs, prepared8, tmp_path):
    """(the control of the test above)"""
    out = _checkpoint_from(runs["snap1"], tmp_path / "out")
    state, log = _train(prepared8, out, cap=0)
    assert "resuming from the checkpoint after epoch 1" in log
    assert state["epochs_done"] == 1
    assert not (out / OUTPUTS[0]).exists()


def test_a_readout_weighted_checkpoint_resumes_in_a_fresh_process(prepared8, tmp_path, monkeypatch):
    """The checkpoint's .keras holds the ReadoutMSE loss; a new process (the workflow's rerun)
    has not imported szmass.network.readout, so its class is not registered: resuming must
    name it. (Found when a killed CPU run would not resume.)"""
    weighted = {**TRAINING, "readout_weight": 0.1}
    _train(prepared8, tmp_path / "out", cap=1, training=weighted)
    registry = keras.saving.get_custom_objects()
    for name in [k for k in registry if k.endswith(">ReadoutMSE")]:
        monkeypatch.delitem(registry, name)  # as in a process that never imported readout
    state, log = _train(prepared8, tmp_path / "out", cap=0, training=weighted)
    assert "resuming from the checkpoint after epoch 1" in log
    assert state["epochs_done"] == 1


def test_a_streamed_run_trains_and_resumes_as_it_ran(prepared8, tmp_path):
    """``streaming: true`` reads the set a buffer at a time (stream.py): it trains, writes the
    outputs, and a run stopped after its first epoch and resumed gives the same history."""
    streamed = {**TRAINING, "max_epochs": 2, "streaming": True}
    state, _ = _train(prepared8, tmp_path / "full", training=streamed)
    assert state["epochs_done"] == 2
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == sorted(OUTPUTS)
    _train(prepared8, tmp_path / "resumed", cap=1, training=streamed)
    _, log = _train(prepared8, tmp_path / "resumed", training=streamed)
    assert "resuming from the checkpoint after epoch 1" in log
    assert _losses(_history(tmp_path / "resumed")) == _losses(_history(tmp_path / "full"))


def _copy_set(src: Path, dest: Path, edit=None) -> Path:
    """A copy of a prepared set (train.zarr, val.zarr, normalization.json), ``edit(name, ds)``
    applied to each zarr set."""
    dest.mkdir(parents=True)
    shutil.copy2(src / "normalization.json", dest / "normalization.json")
    for name in ("train", "val"):
        ds = xr.open_zarr(src / f"{name}.zarr").load()
        if edit:
            edit(name, ds)
        write_zarr_atomic(ds, dest / f"{name}.zarr")
    return dest


def test_checkpoint_of_other_data_is_not_resumed(runs, prepared8, tmp_path):
    def relabel(name, ds):  # e.g. dataset.mass_map edited: other labels, same constants
        ds["labels"].values[..., 1] *= 1.01

    data = _copy_set(prepared8, tmp_path / "data", relabel)
    out = _checkpoint_from(runs["snap1"], tmp_path / "out")
    state, log = _train(data, out, cap=0)
    assert state["epochs_done"] == 0, log


def test_kill_between_checkpoint_files_resumes_a_consistent_state(
    runs, prepared8, tmp_path, monkeypatch
):
    """A kill can land between the checkpoint's writes: the resumed model must be the one of
    the epoch the resumed state says (its optimizer has taken that many epochs of steps)."""
    out = _checkpoint_from(runs["snap1"], tmp_path / "out")
    for path in runs["snap2"].glob("*-0002*"):  # epoch 2's files, written before its state
        shutil.copy2(path, out / CHECKPOINT / path.name)
    loaded = []
    load_model = keras.saving.load_model

    def recording_load_model(*args, **kwargs):
        loaded.append(load_model(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(keras.saving, "load_model", recording_load_model)
    state, log = _train(prepared8, out, cap=0)
    assert "resuming from the checkpoint after epoch 1" in log
    (net,) = loaded
    steps = 6  # 24 maps, batch 4
    assert int(net.optimizer.iterations) == state["epochs_done"] * steps


# --- in child processes: a run with dropout, and a killed run -------------------------------

DROPOUT_MODEL = {**MODEL, "dropout": 0.3}
TWO_EPOCHS = {**TRAINING, "max_epochs": 2}
#: Maps in the kill test's training set: 600 steps of batch 4, ~3-6 s an epoch on 2 cores
#: (~1 ms a step would be needed to finish epoch 2 before the kill, 0.2 s into it).
N_KILL = 2400
KILL_TRAINING = {**TRAINING, "max_epochs": 5}


def _kill_in_epoch_2(child: _Child, state_file: Path) -> None:
    """SIGKILL ``child`` 0.2 s after its checkpoint of epoch 1 appears."""
    while child.proc.poll() is None and not state_file.exists():
        time.sleep(0.01)
    if child.proc.poll() is None:
        time.sleep(0.2)
        child.proc.send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def children(prepared8, tmp_path_factory):
    """Started before the main chain: (1) a 2-epoch run with dropout straight through, then
    the same run stopped after epoch 1 and resumed; (2) a run killed during epoch 2."""
    root = tmp_path_factory.mktemp("children")
    dropout_calls = [
        _kwargs(prepared8, root / "dropout_full", model=DROPOUT_MODEL, training=TWO_EPOCHS),
        _kwargs(
            prepared8, root / "dropout_resumed", model=DROPOUT_MODEL, training=TWO_EPOCHS, cap=1
        ),
        _kwargs(prepared8, root / "dropout_resumed", model=DROPOUT_MODEL, training=TWO_EPOCHS),
    ]
    dropout = _Child(dropout_calls, root / "dropout")

    data = root / "big"
    data.mkdir()
    train = xr.open_zarr(prepared8 / "train.zarr").load()
    reps = math.ceil(N_KILL / train.sizes["sample"])
    arrays = {k: np.concatenate([train[k].values] * reps) for k in train.data_vars}
    write_zarr_atomic(_as_dataset(arrays, train.attrs), data / "train.zarr")
    shutil.copytree(prepared8 / "val.zarr", data / "val.zarr")
    shutil.copy2(prepared8 / "normalization.json", data / "normalization.json")
    out = root / "killed_model"
    killed = _Child([_kwargs(data, out, training=KILL_TRAINING)], root / "killed")
    killer = threading.Thread(
        target=_kill_in_epoch_2, args=(killed, out / CHECKPOINT / "state.json"), daemon=True
    )
    killer.start()
    yield {
        "dropout": (dropout, root / "dropout_full", root / "dropout_resumed"),
        "killed": (killed, killer, data, out),
    }
    dropout.stop()
    killed.stop()


@pytest.fixture(scope="module")
def dropout_runs(children):
    child, full, resumed = children["dropout"]
    rc, _, stderr = child.finish()
    assert rc == 0, stderr[-3000:]
    return full, resumed, stderr


def test_dropout_run_resumed(dropout_runs):
    full, resumed, log = dropout_runs
    assert "resuming from the checkpoint after epoch 1" in log
    a, b = _losses(_history(full)), _losses(_history(resumed))
    assert [r[0] for r in a] == [r[0] for r in b] == [1, 2]
    assert a[0] == b[0]  # epoch 1: the same run


def test_resumed_with_dropout_equals_uninterrupted(dropout_runs):
    full, resumed, _ = dropout_runs
    a, b = _losses(_history(full)), _losses(_history(resumed))
    assert a == b, f"epoch 2 loss uninterrupted {a[1][1]!r}, resumed {b[1][1]!r}"


@pytest.mark.slow
def test_killed_training_leaves_no_model(children):
    """SIGKILL during epoch 2: no final output, and the checkpoint of epoch 1 resumes."""
    child, killer, data, out = children["killed"]
    killer.join(timeout=400)
    rc, stdout, stderr = child.finish()
    assert rc == -signal.SIGKILL, stderr[-3000:]
    assert "DONE" not in stdout
    assert "epoch 1/5" in stderr and "epoch 2/5" not in stderr, stderr[-3000:]
    for name in OUTPUTS:
        assert not (out / name).exists(), name
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT]
    assert json.loads((out / CHECKPOINT / "state.json").read_text())["epochs_done"] == 1
    # a rerun picks up the epoch-1 checkpoint
    state, log = _train(data, out, training=KILL_TRAINING, cap=0)
    assert "resuming from the checkpoint after epoch 1" in log
    assert state["epochs_done"] == 1


# --- bad input: named, and before any training ----------------------------------------------


def _write_set(path: Path, *, npix: int = 8, n: int = 4, nan_in: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "inputs": rng.uniform(-1, 1, (n, npix, npix, 1)).astype(np.float32),
        "labels": rng.uniform(0, 1, (n, npix, npix, 2)).astype(np.float32),
        "m200c": np.full(n, 2e14),
        "realization": np.arange(n),
        "ln_scatter": np.zeros(n),
    }
    if nan_in:
        arrays[nan_in][n - 1, npix // 2, 1, 0] = np.nan
    write_zarr_atomic(_as_dataset(arrays, {"set": "test"}), path)
    return path


def test_load_set(prepared8):
    x, y = load_set(prepared8 / "train.zarr", input_size=8)
    assert x.shape == (24, 8, 8, 1) and y.shape == (24, 8, 8, 2)
    assert x.dtype == y.dtype == np.float32


def test_load_set_missing(tmp_path):
    path = tmp_path / "train.zarr"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(path))} does not exist"):
        load_set(path)


def test_load_set_of_another_map_size(prepared8):
    path = prepared8 / "train.zarr"
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(path))}: maps are 8x8, the model expects 16x16"
    ):
        load_set(path, input_size=16)


@pytest.mark.parametrize("variable", ["inputs", "labels"])
def test_load_set_with_nan(tmp_path, variable):
    path = _write_set(tmp_path / "train.zarr", nan_in=variable)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: {variable} hold NaN"):
        load_set(path)


def test_load_set_not_a_set(tmp_path):
    path = tmp_path / "train.zarr"
    path.mkdir()
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} cannot be read"):
        load_set(path)


BAD_INPUTS = {
    # case: (what to break, error type, message pattern with {data})
    "val_of_another_size": (
        lambda d: _write_set(d / "val.zarr", npix=16),
        ValueError,
        r"{data}/val\.zarr: maps are 16x16, the model expects 8x8",
    ),
    "nan_in_train": (
        lambda d: _write_set(d / "train.zarr", nan_in="inputs"),
        ValueError,
        r"{data}/train\.zarr: inputs hold NaN",
    ),
    "missing_normalization": (
        lambda d: (d / "normalization.json").unlink(),
        FileNotFoundError,
        r"normalization file {data}/normalization\.json does not exist",
    ),
    "missing_val": (
        lambda d: shutil.rmtree(d / "val.zarr"),
        FileNotFoundError,
        r"data set {data}/val\.zarr does not exist",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_train_model_refuses_bad_input(prepared8, tmp_path, case):
    breaks, error, pattern = BAD_INPUTS[case]
    data = _copy_set(prepared8, tmp_path / "data")
    breaks(data)
    out = tmp_path / "model"
    with pytest.raises(error, match=pattern.format(data=re.escape(str(data)))):
        _train(data, out)
    assert not out.exists()  # stopped before the checkpoint directory, i.e. any training


def test_configure_after_tf_ran():
    """train_model must work in a process that has already used TensorFlow (a notebook, a
    test session, an evaluation script that trains)."""
    import tensorflow as tf

    from szmass.network.train import configure_tensorflow

    tf.constant(1.0) + 1.0  # TensorFlow's runtime is up
    threads = tf.config.threading.get_intra_op_parallelism_threads() + 1  # another size
    configure_tensorflow(threads=threads, seed=SEED, mixed_precision=False)


# --- the epoch order ------------------------------------------------------------------------


def _epoch_orders(n, *, batch, seed, first, last):
    """The sample order of each epoch first..last-1 of epoch_batches (x = y = index)."""
    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    batches = []
    for xb, yb in epoch_batches(
        x, x.copy(), batch_size=batch, seed=seed, first_epoch=first, last_epoch=last
    ):
        np.testing.assert_array_equal(xb.numpy(), yb.numpy())  # pairs stay together
        batches.append(xb.numpy().ravel().astype(int))
    per_epoch = math.ceil(n / batch)
    assert len(batches) == per_epoch * (last - first)
    sizes = [len(b) for b in batches[:per_epoch]]
    assert sizes == [batch] * (n // batch) + ([n % batch] if n % batch else [])
    return [
        np.concatenate(batches[k * per_epoch : (k + 1) * per_epoch]) for k in range(last - first)
    ]


def test_each_epoch_is_a_permutation():
    for order in _epoch_orders(10, batch=4, seed=3, first=0, last=5):
        assert sorted(order) == list(range(10))


def test_epochs_differ():
    orders = _epoch_orders(10, batch=4, seed=3, first=0, last=5)
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(orders[i], orders[j]), (i, j)
    assert not np.array_equal(orders[0], np.arange(10))


def test_epoch_order_is_keyed_on_seed_and_epoch():
    """A resumed run (first_epoch > 0) sees the batches an uninterrupted one saw."""
    straight = _epoch_orders(10, batch=4, seed=3, first=0, last=5)
    resumed = _epoch_orders(10, batch=4, seed=3, first=3, last=5)
    for a, b in zip(straight[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    again = _epoch_orders(10, batch=4, seed=3, first=0, last=5)
    for a, b in zip(straight, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _epoch_orders(10, batch=4, seed=4, first=0, last=5)
    assert not all(np.array_equal(a, b) for a, b in zip(straight, other, strict=True))


def test_single_batch_epoch():
    (order,) = _epoch_orders(3, batch=4, seed=0, first=7, last=8)
    assert sorted(order) == [0, 1, 2]


# --- fresh skies, the readout-weighted loss and selection by the validation width ---------

FRESH = {
    **TRAINING,
    "max_epochs": 2,
    "warmup_epochs": 1,
    "fresh_skies": True,
    "readout_weight": 0.5,
    "select_by": "val_width",
    "bn_recalibration": True,
}
DROPOUT_DEPTH2 = {**MODEL, "depth": 2, "dropout": 0.3}  # a dropout that feeds a batch norm


def _train_fresh(data: Path, out: Path, spectra: Path, *, cap=None, training=FRESH):
    kwargs = _kwargs(data, out, model=DROPOUT_DEPTH2, training=training, cap=cap)
    kwargs.update(spectra_path=str(spectra), sky=sky(8), sigma_int=0.2)
    with _tolerant_thread_settings():
        return train_model(**kwargs)


@pytest.fixture(scope="module")
def fresh_runs(prepared8, tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    spectra = write_spectra(root / "spectra.ecsv")
    _train_fresh(prepared8, root / "full", spectra)
    _train_fresh(prepared8, root / "resumed", spectra, cap=1)
    _train_fresh(prepared8, root / "resumed", spectra)
    _train_fresh(prepared8, root / "fixed", spectra, training={**FRESH, "fresh_skies": False})
    return root


def test_fresh_skies_resume_bit_for_bit(fresh_runs):
    full, resumed = _history(fresh_runs / "full"), _history(fresh_runs / "resumed")
    assert _losses(resumed) == _losses(full)
    assert [r["val_width"] for r in resumed] == [r["val_width"] for r in full]


def test_fresh_skies_are_new_maps(fresh_runs):
    """Same settings, same seed: only the skies differ, and so do the training losses."""
    fresh, fixed = _history(fresh_runs / "full"), _history(fresh_runs / "fixed")
    assert fresh[0]["loss"] != fixed[0]["loss"]


def test_best_epoch_is_the_narrowest_validation_estimate(fresh_runs):
    history = _history(fresh_runs / "full")
    widths = [float(r["val_width"]) for r in history]
    summary = json.loads((fresh_runs / "full" / "normalization.json").read_text())
    assert summary["best_epoch"] == int(np.argmin(widths)) + 1
    assert summary["best_val_loss"] == float(history[summary["best_epoch"] - 1]["val_loss"])
    # one warm-up epoch: epoch 1 already at the full rate (1/1 of it)
    assert float(history[0]["learning_rate"]) == pytest.approx(FRESH["learning_rate"])


def test_fresh_skies_need_the_spectra(prepared8, tmp_path):
    with pytest.raises(ValueError, match="fresh_skies needs spectra_path"):
        _train(prepared8, tmp_path / "out", training=FRESH)


def test_unknown_selection_is_refused(prepared8, tmp_path):
    with pytest.raises(ValueError, match="select_by.*val_loss"):
        _train(prepared8, tmp_path / "out", training={**TRAINING, "select_by": "loss"})


# --- the fine-tune phase after early stopping -------------------------------------------------

FINETUNE = {
    **FRESH,
    "finetune_epochs": 2,
    "finetune_learning_rate": 4e-4,
    "finetune_batch_size": 8,
    "finetune_readout_weight": 5.0,
}
FT_CHECKPOINT = ".mresunet.finetune.checkpoint"
#: A fine-tune of at most 8 epochs on the log readout, stopped after 1 without a narrower one;
#: its learning rate is too small to move a float32 weight, so no epoch is narrower than its
#: first (batch norm is recomputed on the same inputs before each validation).
STOPPING = {
    **FINETUNE,
    "finetune_epochs": 8,
    "finetune_learning_rate": 1e-14,
    "finetune_stop_patience": 1,
    "finetune_readout_loss": "log",
}
#: The same fine-tune on plateau cuts (lr_patience 1, lr_factor 0.5), without stop patience:
#: no epoch is narrower, so every epoch halves the rate until a cut would go below 5% of it.
PLATEAU = {**STOPPING, "finetune_stop_patience": 0, "finetune_schedule": "plateau"}


def _train_fresh_logged(data, out, spectra, **kwargs):
    logger = logging.getLogger("szmass.train")
    records, level = _Records(), logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        state = _train_fresh(data, out, spectra, **kwargs)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    return state, records.messages


@pytest.fixture(scope="module")
def finetune_runs(prepared8, tmp_path_factory):
    """A fine-tuned run straight through; the same run stopped after the first phase's 2
    epochs and 1 fine-tune epoch, then finished; one whose fine-tune setting changed after
    that stop; and the finished run rerun with a changed fine-tune setting."""
    root = tmp_path_factory.mktemp("finetune")
    spectra = write_spectra(root / "spectra.ecsv")
    out = {"root": root}
    out["full_state"], out["full_log"] = _train_fresh_logged(
        prepared8, root / "full", spectra, training=FINETUNE
    )
    out["full_files"] = sorted(p.name for p in (root / "full").iterdir())
    shutil.copytree(root / "full", root / "refit")
    _, out["refit_log"] = _train_fresh_logged(
        prepared8, root / "refit", spectra, training={**FINETUNE, "finetune_batch_size": 4}
    )
    shutil.copytree(root / "full", root / "stopping")
    shutil.copytree(root / "full", root / "plateau")
    _, out["plateau_log"] = _train_fresh_logged(
        prepared8, root / "plateau", spectra, training=PLATEAU
    )
    _, out["stopping_log"] = _train_fresh_logged(
        prepared8, root / "stopping", spectra, training=STOPPING
    )
    _, out["stop_log"] = _train_fresh_logged(
        prepared8, root / "resumed", spectra, training=FINETUNE, cap=3
    )
    out["stopped_files"] = sorted(p.name for p in (root / "resumed").iterdir())
    shutil.copytree(root / "resumed", root / "changed")
    _, out["resume_log"] = _train_fresh_logged(
        prepared8, root / "resumed", spectra, training=FINETUNE
    )
    changed = {**FINETUNE, "finetune_learning_rate": 1e-4}
    _, out["changed_log"] = _train_fresh_logged(
        prepared8, root / "changed", spectra, training=changed, cap=0
    )
    return out


def test_finetune_outputs(finetune_runs, prepared8):
    out = finetune_runs["root"] / "full"
    # the outputs, and the finished first phase's checkpoint (the fine-tune's is gone)
    assert finetune_runs["full_files"] == sorted([*OUTPUTS, CHECKPOINT])
    history = _history(out)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4]
    summary = json.loads((out / "normalization.json").read_text())
    widths = [float(r["val_width"]) for r in history]
    # the model is the fine-tune's narrowest epoch; the first phase's best is kept beside it
    assert summary["best_epoch"] == 3 + int(np.argmin(widths[2:]))
    assert summary["pretrain_best_epoch"] == 1 + int(np.argmin(widths[:2]))
    assert summary["finetune_epochs"] == 2
    # the fine-tune's rate: half a cosine from its own rate, to 5% of it after its last epoch
    lr, floor = FINETUNE["finetune_learning_rate"], 0.05 * FINETUNE["finetune_learning_rate"]
    expected = [floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * k / 2)) for k in (0, 1)]
    assert [float(r["learning_rate"]) for r in history[2:]] == pytest.approx(expected, rel=1e-6)
    assert any(
        "fine-tune: at most 2 epochs without dropout" in m for m in finetune_runs["full_log"]
    )
    # the kept network has no dropout, the same weights' layout, and loads with plain Keras
    net = keras.saving.load_model(out / "mresunet.keras")
    assert not [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    x_val, _ = load_set(prepared8 / "val.zarr", input_size=8)
    assert net.predict(x_val, verbose=0).shape == (12, 8, 8, 2)


def test_finetune_resumes_and_equals_uninterrupted(finetune_runs):
    root = finetune_runs["root"]
    assert finetune_runs["stopped_files"] == sorted([CHECKPOINT, FT_CHECKPOINT])  # no model
    log = finetune_runs["resume_log"]
    assert "resuming from the checkpoint after epoch 2" in log
    assert "resuming the fine-tune from its checkpoint after epoch 3" in log
    assert _losses(_history(root / "resumed")) == _losses(_history(root / "full"))
    a = keras.saving.load_model(root / "full" / "mresunet.keras")
    b = keras.saving.load_model(root / "resumed" / "mresunet.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_a_changed_finetune_setting_keeps_the_first_phase(finetune_runs):
    log = finetune_runs["changed_log"]
    assert "resuming from the checkpoint after epoch 2" in log  # the first phase is kept
    assert not any("resuming the fine-tune" in m for m in log)  # the fine-tune starts afresh
    assert any(
        "fine-tune: at most 2 epochs without dropout, learning rate 0.0001" in m for m in log
    )


def test_a_finished_run_with_a_changed_finetune_setting_reruns_only_the_fine_tune(
    finetune_runs,
):
    root = finetune_runs["root"]
    log = finetune_runs["refit_log"]
    assert "resuming from the checkpoint after epoch 2" in log
    assert not any(re.match(r"epoch [12]/", m) for m in log)  # no first-phase epoch again
    assert any("fine-tune: at most 2 epochs without dropout" in m and "batch 4" in m for m in log)
    refit, full = _history(root / "refit"), _history(root / "full")
    assert [int(r["epoch"]) for r in refit] == [1, 2, 3, 4]
    assert _losses(refit[:2]) == _losses(full[:2])  # the first phase's rows, as they were
    assert _losses(refit[2:]) != _losses(full[2:])  # a new fine-tune


def test_the_fine_tune_stops_after_its_patience(finetune_runs):
    """finetune_stop_patience 1: the fine-tune ends on the first epoch without a narrower
    validation estimate (its second: see STOPPING), not on its 8-epoch cap; the outputs say so
    and count what ran."""
    root = finetune_runs["root"] / "stopping"
    log = finetune_runs["stopping_log"]
    assert not any(re.match(r"epoch [12]/", m) for m in log)  # the first phase is reused
    assert any(
        "at most 8 epochs" in m and "(log)" in m and "stopped after 1 epochs" in m for m in log
    )
    history = _history(root)
    widths = [float(r["val_width"]) for r in history[2:]]  # the fine-tune's epochs, 3..
    summary = json.loads((root / "normalization.json").read_text())
    assert len(widths) == 2 and widths[1] >= widths[0]
    assert summary["finetune_stopped_early"] is True and summary["finetune_epochs"] == 2
    assert summary["best_epoch"] == 3  # the fine-tune's first epoch
    assert sorted(p.name for p in root.iterdir()) == sorted([*OUTPUTS, CHECKPOINT])


def test_the_fine_tune_recipe_takes_its_own_keys():
    """The fine-tune's settings come from the finetune_* keys, not the first phase's."""
    recipe = training_recipe(
        {
            **TRAINING,
            "ema_momentum": 0.9,
            "readout_loss": "relative",
            "finetune_epochs": 6,
            "finetune_learning_rate": 3e-4,
            "finetune_batch_size": 16,
            "finetune_readout_weight": 7.0,
            "finetune_readout_loss": "log",
            "finetune_schedule": "plateau",
            "finetune_ema_momentum": 0.99,
            "finetune_stop_patience": 2,
            "finetune_sz_weight": 20.0,
        }
    )
    ft = finetune_recipe(recipe, first_epoch=30)
    assert (ft["sz_weight"], recipe["sz_weight"]) == (20.0, 1.0)
    assert (ft["learning_rate"], ft["min_learning_rate"]) == (3e-4, pytest.approx(1.5e-5))
    assert (ft["batch_size"], ft["readout_weight"], ft["readout_loss"]) == (16, 7.0, "log")
    assert (ft["schedule"], ft["ema_momentum"], ft["select_by"]) == ("plateau", 0.99, "val_width")
    assert (ft["max_epochs"], ft["stop_patience"], ft["lr_patience"]) == (36, 2, 1)
    cosine = finetune_recipe({**recipe, "finetune_schedule": "cosine"}, first_epoch=30)
    assert cosine["lr_patience"] == 7  # no plateau cut within the phase
    own = finetune_recipe({**recipe, "finetune_lr_patience": 4}, first_epoch=30)
    assert (own["lr_patience"], recipe["lr_patience"]) == (4, 1)  # 0 (above): the first phase's


def test_a_plateau_fine_tune_stops_at_its_floor(finetune_runs):
    root = finetune_runs["root"] / "plateau"
    assert any("learning rate 1e-14 (plateau)" in m for m in finetune_runs["plateau_log"])
    rates = [float(r["learning_rate"]) for r in _history(root)[2:]]
    # the first epoch is the best; 1e-14 is halved after each later one (none is narrower):
    # 1, 1, 1/2, .., 1/16; the cut after the sixth would go below the floor (1/20): it stops
    assert rates == pytest.approx([1e-14] + [1e-14 / 2**k for k in range(5)], rel=1e-6)
    summary = json.loads((root / "normalization.json").read_text())
    assert summary["finetune_stopped_early"] is True and summary["finetune_epochs"] == 6
    assert summary["best_epoch"] == 3


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("finetune_schedule", "linear", "finetune_schedule is 'linear'; expected one of"),
        ("finetune_ema_momentum", 1.0, "finetune_ema_momentum is 1.0; expected 0"),
        ("finetune_readout_loss", "ln", "finetune_readout_loss is 'ln'; expected one of"),
        ("finetune_stop_patience", -1, "finetune_stop_patience is -1; expected 0"),
        ("finetune_lr_patience", -2, "finetune_lr_patience is -2; expected 0"),
        ("finetune_sz_weight", 0.0, "finetune_sz_weight is 0.0; expected a weight > 0"),
        ("sz_weight", -1.0, "sz_weight is -1.0; expected a weight > 0"),
        ("val_width_range", [8.0, 1.0], r"val_width_range is \[8.0, 1.0\]; expected \[\]"),
        ("val_width_range", [50.0, 60.0], r"val_width_range \[50.0, 60.0\] holds 0 of the"),
    ],
)
def test_bad_fine_tune_settings_are_refused(prepared8, tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        _train(prepared8, tmp_path / "out", training={**FINETUNE, key: value})
    assert not (tmp_path / "out").exists()
