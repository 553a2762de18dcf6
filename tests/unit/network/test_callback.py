"""szmass.network.callback: the learning-rate cuts and the two stopping rules, driven epoch by
epoch with scripted validation scores (no fitting)."""

import json

import keras
import numpy as np
import pytest

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


def _drive(tmp_path, widths, **recipe):
    """Run the callback's epoch hooks with validation widths ``widths``; returns (state,
    learning rate after each epoch, epochs run before it asked to stop)."""
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
    scores = iter(widths)

    def validate(_net):
        return {"val_loss": 1.0, "val_mean_ln": 0.0, "val_width": next(scores)}

    callback = make_callback(
        ckpt_dir=tmp_path,
        state=state,
        training={**RECIPE, **recipe},
        n_train=8,
        validate=validate,
        draw_seconds={},
    )
    callback.set_model(net)
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
