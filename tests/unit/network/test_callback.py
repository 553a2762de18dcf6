"""szmass.network.callback: the learning-rate cuts and the two stopping rules, driven epoch by
epoch with scripted validation scores (no fitting)."""

import json
import logging

import keras
import numpy as np
import pytest

from szmass.network import callback as callback_mod
from szmass.network.callback import make_callback

# Keras 3.15 converts TF variables with np.array(copy=False), which NumPy 2 deprecates.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

RECIPE = {
    "max_epochs": 20,
    "warmup_epochs": 0,
    "learning_rate": 1e-3,
    "select_by": "val_width",
    "batch_size": 4,
    "lr_patience": 2,
    "lr_factor": 0.5,
    "stop_patience": 100,
    "min_learning_rate": 0.0,
}


def _make(tmp_path, widths, *, n_train=8, means=None, **recipe):
    """A callback on a one-layer model whose validations score ``widths`` in turn (with mean
    ln ratios ``means``, else 0)."""
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.Adam(RECIPE["learning_rate"]), loss="mse")
    state = {
        "best_score": float("inf"),
        "best_epoch": 0,
        "wait_lr": 0,
        "wait_stop": 0,
        "stopped_early": False,
        "history": [],
    }
    scores = iter(zip(widths, means or [0.0] * len(widths), strict=True))

    def validate(_net):
        width, mean = next(scores)
        return {"val_loss": 1.0, "val_mean_ln": mean, "val_width": width}

    callback = make_callback(
        ckpt_dir=tmp_path,
        state=state,
        training={**RECIPE, **recipe},
        n_train=n_train,
        validate=validate,
        draw_seconds={},
    )
    callback.set_model(net)
    return callback, net, state


def _drive(tmp_path, widths, **recipe):
    """Run the callback's epoch hooks with validation widths ``widths``; returns (state,
    learning rate after each epoch)."""
    callback, net, state = _make(tmp_path, widths, **recipe)
    rates = []
    for epoch in range(len(widths)):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0})
        rates.append(float(keras.ops.convert_to_numpy(net.optimizer.learning_rate)))
        if net.stop_training:
            break
    assert json.loads((tmp_path / "state.json").read_text())["epochs_done"] == len(rates)
    return state, rates


def test_plateau_halves_the_rate_without_a_floor(tmp_path):
    state, rates = _drive(tmp_path, [0.5, 0.6, 0.6, 0.6, 0.6, 0.4, 0.6])
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2.5e-4])
    assert not state["stopped_early"]
    assert state["best_epoch"] == 6


def test_a_cut_below_the_floor_stops_training(tmp_path):
    # floor 3e-4: the first cut (to 5e-4) is taken, the second (2.5e-4) would pass the floor
    state, rates = _drive(tmp_path, [0.5] + [0.6] * 9, min_learning_rate=3e-4)
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 5e-4])
    assert state["stopped_early"]
    assert state["best_epoch"] == 1


def test_improvements_reset_the_count_to_the_floor(tmp_path):
    widths = [0.5, 0.6, 0.6, 0.4, 0.6, 0.3, 0.6, 0.2, 0.6]
    state, rates = _drive(tmp_path, widths, min_learning_rate=3e-4)
    assert len(rates) == 9 and not state["stopped_early"]  # cut once (epoch 3), never twice
    assert rates[-1] == pytest.approx(5e-4)


def test_stop_patience_still_stops(tmp_path):
    state, rates = _drive(tmp_path, [0.5] + [0.6] * 9, stop_patience=3)
    assert len(rates) == 4 and state["stopped_early"]
    assert np.isclose(rates[-1], 5e-4)


def test_a_diverged_epoch_fails_and_leaves_the_last_finite_state(tmp_path):
    callback, _net, _state = _make(tmp_path, [0.5, 0.4])
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"loss": 1.0})
    callback.on_epoch_begin(1)
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 2"):
        callback.on_epoch_end(1, {"loss": float("nan")})
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["epochs_done"] == 1
    assert {p.name for p in tmp_path.iterdir()} == {
        "state.json",
        saved["last_file"],
        saved["best_file"],
    }


def test_no_best_epoch_yet_keeps_only_the_last_checkpoint(tmp_path):
    # a non-finite validation width never becomes the best: no best file to keep (that was a
    # KeyError on 2026-12-03)
    state, _ = _drive(tmp_path, [float("nan")])
    assert "best_file" not in state
    assert {p.name for p in tmp_path.iterdir()} == {"state.json", state["last_file"]}


# --- rates, progress and the estimate, on a fake clock ----------------------------------------


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(callback_mod.time, "perf_counter", fake)
    return fake


def _epoch(callback, clock, *, steps, first_s, step_s, epoch=0):
    """One epoch of ``steps`` steps: the first (graph tracing) takes ``first_s``, the rest
    ``step_s`` each."""
    callback.on_epoch_begin(epoch)
    for batch in range(steps):
        clock.now += first_s if batch == 0 else step_s
        callback.on_train_batch_end(batch)
    callback.on_epoch_end(epoch, {"loss": 1.0})


def test_epoch_rate_leaves_out_the_tracing_step(tmp_path, clock):
    # 100 steps of 4 maps at 0.1 s each, after a 20 s first step: 40 images/s, not 400 / 29.9
    callback, _, state = _make(tmp_path, [0.5], n_train=400)
    _epoch(callback, clock, steps=100, first_s=20.0, step_s=0.1)
    (row,) = state["history"]
    assert row["images_per_s"] == pytest.approx(40.0)
    assert row["seconds"] == pytest.approx(29.9)


def test_progress_lines_within_the_epoch(tmp_path, clock, caplog):
    callback, _, _ = _make(tmp_path, [0.5], n_train=4000)  # 1000 steps of 0.1 s: 100 s
    with caplog.at_level(logging.INFO, logger="szmass.train"):
        _epoch(callback, clock, steps=1000, first_s=20.0, step_s=0.1)
    lines = [r.getMessage() for r in caplog.records if ": step " in r.getMessage()]
    assert len(lines) == 3  # every 30 s: at ~30, 60, 90 s
    assert lines[0].startswith("epoch 1: step ") and "40 images/s" in lines[0]
    assert "epoch ETA" in lines[-1]


@pytest.mark.parametrize(("step_s", "warned"), [(0.1, False), (2.0, True)])
def test_long_runs_are_warned_of_at_the_start(tmp_path, clock, caplog, step_s, warned):
    # 20 epochs of 1000 steps: 0.1 s steps take 0.6 h, 2 s steps 11 h
    callback, _, _ = _make(tmp_path, [0.5], n_train=4000)
    callback.on_epoch_begin(0)
    with caplog.at_level(logging.INFO, logger="szmass.train"):
        for batch in range(25):
            clock.now += 5.0 if batch == 0 else step_s
            callback.on_train_batch_end(batch)
    (estimate,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("timed")]
    assert f"the 20 epochs left take at most {step_s * 1000 * 20 / 3600:.1f} h" in estimate
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == warned
    if warned:
        assert "config/cpu.yaml" in warnings[0].getMessage()


# --- the cosine schedule and the weights' moving average ----------------------------------


def test_cosine_schedule_follows_the_formula_and_ignores_plateaus(tmp_path):
    # never a better width after epoch 1, lr_patience 2: a plateau schedule would cut 4 times
    widths = [0.5] + [0.6] * 9
    state, rates = _drive(
        tmp_path,
        widths,
        schedule="cosine",
        max_epochs=10,
        warmup_epochs=2,
        min_learning_rate=1e-5,
    )
    # warm-up 1/2, 2/2 of the rate, then 1e-5 + (1e-3 - 1e-5) (1 + cos(pi (e - 2) / 8)) / 2
    expected = [5e-4, 1e-3] + [
        1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * (e - 2) / 8)) for e in range(2, 10)
    ]
    assert rates == pytest.approx(expected, rel=1e-6)
    assert rates[2] == pytest.approx(1e-3, rel=1e-6) and rates[-1] < 5e-5
    assert not state["stopped_early"]


def test_cosine_schedule_still_stops_early(tmp_path):
    state, rates = _drive(
        tmp_path, [0.5] + [0.6] * 9, schedule="cosine", max_epochs=10, stop_patience=3
    )
    assert len(rates) == 4 and state["stopped_early"] and state["best_epoch"] == 1


def _ema_net(momentum=0.5):
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    net.compile(
        optimizer=keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=momentum), loss="mse"
    )
    return net


def _weights(net):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in net.trainable_variables]


def test_validation_and_best_weights_are_the_moving_average(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 2)), rng.normal(size=(32, 1))
    net = _ema_net()
    seen = []

    def validate(model):
        seen.append(_weights(model))
        return {"val_loss": 1.0, "val_mean_ln": 0.0, "val_width": 0.5}

    state = {
        "best_score": float("inf"),
        "best_epoch": 0,
        "wait_lr": 0,
        "wait_stop": 0,
        "stopped_early": False,
        "history": [],
    }
    callback = make_callback(
        ckpt_dir=tmp_path,
        state=state,
        training={**RECIPE, "max_epochs": 1},
        n_train=32,
        validate=validate,
        draw_seconds={},
    )
    callback.set_model(net)
    net.fit(x, y, batch_size=4, epochs=0, verbose=0)  # builds the optimizer's variables
    for _ in range(8):
        net.train_on_batch(x[:4], y[:4])
    raw = _weights(net)
    average = [
        np.array(keras.ops.convert_to_numpy(v))
        for v in net.optimizer._model_variables_moving_average
    ]
    assert not np.allclose(raw[0], average[0])  # 8 steps of rate 0.1: the two differ
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"loss": 1.0})
    for got, want in zip(seen[0], average, strict=True):
        np.testing.assert_array_equal(got, want)  # validation saw the average
    for got, want in zip(_weights(net), raw, strict=True):
        np.testing.assert_array_equal(got, want)  # training goes on from the raw weights
    best = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best.load_weights(tmp_path / state["best_file"])
    for got, want in zip(_weights(best), average, strict=True):
        np.testing.assert_array_equal(got, want)


def test_the_moving_average_survives_a_checkpoint(tmp_path):
    """A resumed run (the model reloaded from its .keras checkpoint) continues the same
    average: the optimizer's averages are saved with it."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 2)), rng.normal(size=(16, 1))
    keras.utils.set_random_seed(0)
    straight = _ema_net()
    straight.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    # fit() ends by writing the average into the weights; the callback's checkpoint is taken
    # before that, at the epoch's end, from the raw weights: take it the same way
    keras.utils.set_random_seed(0)
    again = _ema_net()
    saved = {}

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.save(tmp_path / "last.keras")
            saved["raw"] = _weights(self.model)

    again.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[Save()])
    resumed = keras.saving.load_model(tmp_path / "last.keras")
    for got, want in zip(_weights(resumed), saved["raw"], strict=True):
        np.testing.assert_array_equal(got, want)
    resumed.fit(x, y, batch_size=4, epochs=2, initial_epoch=1, shuffle=False, verbose=0)
    for got, want in zip(_weights(resumed), _weights(straight), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_width_bias_selection_prefers_the_unbiased_epoch(tmp_path):
    """select_by val_width_bias: width + |mean ln|; the narrowest epoch (0.18) reads 8% high,
    so the unbiased one (0.19 + 0.00) is kept."""
    callback, _, state = _make(
        tmp_path,
        [0.25, 0.19, 0.18, 0.185],
        means=[0.0, 0.0, 0.08, -0.03],
        select_by="val_width_bias",
    )
    for epoch in range(4):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0})
    assert state["best_epoch"] == 2 and state["best_score"] == pytest.approx(0.19)
