"""szmass.readout: the readout-weighted loss, the validation statistics and the batch-norm
statistics recomputed without dropout."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from szmass.network.model import build_mresunet
from szmass.network.readout import (
    LN_FLOOR,
    ReadoutMSE,
    ln_ratio_loss,
    loss_value,
    readout_error,
    readout_scores,
    recalibrate_batch_norm,
    validate_readout,
)

#: float32 sums of a few hundred terms against float64 numpy.
LOSS_RTOL = 1e-5


def _pair(seed=0, n=5, size=8):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, size, size, 2)).astype("float32"),
        rng.normal(size=(n, size, size, 2)).astype("float32"),
    )


def test_weight_zero_is_the_mse():
    y, p = _pair()
    got = float(ReadoutMSE(readout_weight=0.0)(y, p))
    assert got == pytest.approx(float(np.mean((p - y) ** 2)), rel=LOSS_RTOL)
    assert loss_value(y, p, readout_weight=0.0) == pytest.approx(got, rel=LOSS_RTOL)


def test_weight_adds_the_central_mass_pixel():
    y, p = _pair(1)
    centre = (p[:, 4, 4, 1].astype(float) - y[:, 4, 4, 1]) ** 2
    expected = np.mean((p - y) ** 2) + 3.0 * centre.mean()
    assert float(ReadoutMSE(readout_weight=3.0)(y, p)) == pytest.approx(expected, rel=LOSS_RTOL)
    assert loss_value(y, p, readout_weight=3.0) == pytest.approx(expected, rel=LOSS_RTOL)
    # the SZ channel's centre is not the readout
    p2 = p.copy()
    p2[:, 4, 4, 0] += 1.0
    extra = float(ReadoutMSE(readout_weight=3.0)(y, p2)) - float(
        ReadoutMSE(readout_weight=3.0)(y, p)
    )
    assert extra == pytest.approx(np.mean((p2 - y) ** 2) - np.mean((p - y) ** 2), rel=1e-3)


def test_sz_weight_scales_the_sz_channel_only():
    """The map-wide mean over pixels and both channels, the SZ channel's squared errors times
    ``sz_weight``: (w * mean_sz + mean_mass) / 2, plus the readout term."""
    y, p = _pair(5)
    sq = (p.astype(float) - y) ** 2
    centre = sq[:, 4, 4, 1].mean()
    expected = (20.0 * sq[..., 0].mean() + sq[..., 1].mean()) / 2 + 3.0 * centre
    loss = ReadoutMSE(readout_weight=3.0, sz_weight=20.0)
    assert float(loss(y, p)) == pytest.approx(expected, rel=LOSS_RTOL)
    assert loss_value(y, p, readout_weight=3.0, sz_weight=20.0) == pytest.approx(
        expected, rel=LOSS_RTOL
    )
    plain = ReadoutMSE(readout_weight=3.0)  # weight 1: the map-wide MSE as before, exactly
    assert float(plain(y, p)) == float(ReadoutMSE(readout_weight=3.0, sz_weight=1.0)(y, p))
    assert loss_value(y, p, readout_weight=0.0, sz_weight=1.0) == pytest.approx(sq.mean())


def test_relative_readout_is_the_squared_relative_error_at_the_centre():
    y, p = _pair(2)
    y[:, 4, 4, 1], p[:, 4, 4, 1] = [2.0, 2.0, 0.5, 0.5, 4.0], [1.0, 3.0, 0.25, 0.0, 5.0]
    # hand values: (p - t) / t = -1/2, 1/2, -1/2, -1, 1/4
    centre = np.array([0.25, 0.25, 0.25, 1.0, 1 / 16])
    expected = np.mean((p - y) ** 2) + 0.5 * centre.mean()
    got = float(ReadoutMSE(readout_weight=0.5, readout_loss="relative")(y, p))
    assert got == pytest.approx(expected, rel=LOSS_RTOL)
    assert loss_value(y, p, readout_weight=0.5, readout_loss="relative") == pytest.approx(
        expected, rel=LOSS_RTOL
    )
    # a relative error counts the same at every mass (the squared error in M does not)
    y2, p2 = y * 4.0, p * 4.0
    for kind, ratio in (("relative", 1.0), ("squared", 16.0)):
        a = loss_value(y, p, readout_weight=1.0, readout_loss=kind) - np.mean((p - y) ** 2)
        b = loss_value(y2, p2, readout_weight=1.0, readout_loss=kind) - np.mean((p2 - y2) ** 2)
        assert b == pytest.approx(ratio * a, rel=LOSS_RTOL), kind


def test_relative_readout_is_finite_and_pulls_a_negative_centre_up():
    # quadratic in p: a centre far below zero has a finite loss and gradient, pointing up
    y, p = _pair(4)
    y[:, 4, 4, 1], p[:, 4, 4, 1] = 1.0, [-100.0, -4.0, -0.3, 0.0, 0.5]
    pt = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ReadoutMSE(readout_weight=1.0, readout_loss="relative")(y, pt))
    grad = tape.gradient(loss, pt).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    assert np.all(grad[:, 4, 4, 1] < 0)


def test_log_readout_hand_values_and_a_smooth_hand_over():
    ln2 = np.log(2.0)
    r = np.array([2.0, 1.0, 0.5, 0.25, 0.0, -1.0])
    # (ln r)^2 above 1/2; below, ln^2 2 - 4 ln 2 d + 4 (1 + ln 2) d^2 with d = r - 1/2
    lower = [ln2**2 - 4 * ln2 * d + 4 * (1 + ln2) * d**2 for d in (-0.25, -0.5, -1.5)]
    np.testing.assert_allclose(ln_ratio_loss(r), [ln2**2, 0.0, ln2**2, *lower], rtol=1e-12)
    # value, slope and curvature continuous at 1/2 (central differences, h = 1e-4)
    h = 1e-4
    for side in (-1, 1):
        at = 0.5 + side * 2 * h
        slope = (ln_ratio_loss(at + h) - ln_ratio_loss(at - h)) / (2 * h)
        curve = (ln_ratio_loss(at + h) - 2 * ln_ratio_loss(at) + ln_ratio_loss(at - h)) / h**2
        assert slope == pytest.approx(2 * np.log(0.5) / 0.5, rel=1e-3)
        assert curve == pytest.approx(2 * (1 - np.log(0.5)) / 0.25, rel=1e-2)
    # the keras loss is the same function of p / t, at every mass alike
    y, p = _pair(5)
    y[:, 4, 4, 1], p[:, 4, 4, 1] = [2.0, 0.5, 4.0, 1.0, 3.0], [4.0, 0.5, 1.0, 0.0, -3.0]
    expected = np.mean((p - y) ** 2) + 0.5 * ln_ratio_loss(np.array([2, 1, 0.25, 0, -1])).mean()
    got = float(ReadoutMSE(readout_weight=0.5, readout_loss="log")(y, p))
    assert got == pytest.approx(expected, rel=LOSS_RTOL)


def test_log_readout_gradient_is_finite_and_points_to_the_truth():
    y, p = _pair(6)
    y[:, 4, 4, 1], p[:, 4, 4, 1] = 1.0, [-100.0, 0.0, 0.7, 1.5, 40.0]
    pt = tf.Variable(p)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ReadoutMSE(readout_weight=1.0, readout_loss="log")(y, pt))
    grad = tape.gradient(loss, pt).numpy()[:, 4, 4, 1]
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    assert np.all(grad[:3] < 0) and np.all(grad[3:] > 0)


def test_eachreadout_error_has_the_bias_it_is_documented_with():
    # the constant estimate minimising each error over lognormal truths t = exp(N(0, 0.2)):
    # squared -> E[t] = exp(+sigma^2/2), relative -> exp(-1.5 sigma^2), log -> exp(E ln t)
    sigma = 0.2
    ln_t = np.random.default_rng(0).normal(0.0, sigma, 50_000)
    t = np.exp(ln_t)
    grid = np.exp(np.linspace(-0.2, 0.2, 801))  # ln steps of 5e-4
    found = {}
    for kind in ("squared", "relative", "log"):
        cost = [np.mean(readout_error(g, t, kind, np)) for g in grid]
        found[kind] = np.log(grid[int(np.argmin(cost))]) - ln_t.mean()
    assert found["squared"] == pytest.approx(sigma**2 / 2, abs=2e-3)
    assert found["relative"] == pytest.approx(-1.5 * sigma**2, abs=2e-3)
    assert found["log"] == pytest.approx(0.0, abs=2e-3)


def test_unknown_readout_loss_is_refused_by_name():
    with pytest.raises(ValueError, match="readout_loss.*'cubic'"):
        ReadoutMSE(readout_weight=1.0, readout_loss="cubic")


def test_loss_round_trips_through_a_saved_model(tmp_path):
    net = build_mresunet(input_size=8, base_filters=2, depth=1, dropout=0.0)
    net.compile(optimizer="adam", loss=ReadoutMSE(readout_weight=2.5, readout_loss="relative"))
    net.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.loss, ReadoutMSE) and loaded.loss.readout_weight == 2.5
    assert loaded.loss.readout_loss == "relative" and loaded.loss.sz_weight == 1.0
    net.compile(optimizer="adam", loss=ReadoutMSE(readout_weight=0.0, sz_weight=30.0))
    net.save(tmp_path / "w.keras")
    assert keras.saving.load_model(tmp_path / "w.keras").loss.sz_weight == 30.0


def test_readout_scores_known_numbers():
    m_true = np.full(1001, 4e14)
    r = np.linspace(-1.0, 1.0, 1001)  # uniform: 16-84% half-width 0.68
    s = readout_scores(m_true * np.exp(r), m_true)
    assert s["mean_ln"] == pytest.approx(0.0, abs=1e-12)
    assert s["width"] == pytest.approx(0.68, abs=1e-3)
    # estimates <= 0 rank lowest (held at the floor), they do not vanish or give NaN
    est = m_true.copy()
    est[:200] = -1.0
    s = readout_scores(est, m_true)
    assert np.isfinite(s["width"]) and s["mean_ln"] == pytest.approx(200 / 1001 * np.log(LN_FLOOR))


class _Fixed:
    """A stand-in network whose predictions are given."""

    def __init__(self, pred):
        self.pred, self.at = pred, 0

    def predict_on_batch(self, x):
        out = self.pred[self.at : self.at + len(x)]
        self.at += len(x)
        return out


def test_val_width_range_scores_only_the_clusters_inside_it():
    m_norm = 1e14
    m14 = np.geomspace(0.5, 12.0, 200)  # a continuous validation set
    y = np.zeros((200, 9, 9, 2), "float32")
    y[:, 4, 4, 1] = m14
    pred = y.copy()
    outside = (m14 < 1.0) | (m14 > 8.0)
    pred[outside, 4, 4, 1] *= np.e  # read e times high outside 1-8e14, exact inside
    recipe = {"bn_recalibration": False, "readout_weight": 0.0, "readout_loss": "squared"}
    kw = {"m_norm": m_norm, "x_recal": None}
    every = validate_readout(_Fixed(pred), y, y, recipe=recipe, **kw)
    band = validate_readout(_Fixed(pred), y, y, recipe={**recipe, "val_width_range": [1, 8]}, **kw)
    assert every["val_mean_ln"] == pytest.approx(outside.mean())  # ln e = 1 on the outside ones
    assert (band["val_mean_ln"], band["val_width"]) == (pytest.approx(0.0), pytest.approx(0.0))
    assert band["val_loss"] == pytest.approx(every["val_loss"])  # the loss: every map


def _moving_stats(net):
    return {
        layer.name: (np.array(layer.moving_mean), np.array(layer.moving_variance))
        for layer in net.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def test_recalibration_uses_no_dropout_and_restores_the_layers():
    """The same weights with and without dropout layers give the same recomputed statistics:
    dropout is off while they are gathered; rates and momenta come back afterwards."""
    keras.utils.set_random_seed(0)
    kwargs = dict(input_size=8, base_filters=2, depth=2, n_substages=2, skip_dilations=(2,))
    with_drop = build_mresunet(dropout=0.5, **kwargs)
    without = build_mresunet(dropout=0.0, **kwargs)
    without.set_weights(with_drop.get_weights())
    x = np.random.default_rng(2).normal(size=(96, 8, 8, 1)).astype("float32")
    recalibrate_batch_norm(with_drop, x, batch_size=32)
    recalibrate_batch_norm(without, x, batch_size=32)
    a, b = _moving_stats(with_drop), _moving_stats(without)
    assert a.keys() == b.keys() and any(name.startswith("dec") for name in a)
    for name in a:
        np.testing.assert_allclose(a[name][0], b[name][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[name][1], b[name][1], rtol=1e-5, atol=1e-6)
    assert {
        layer.rate for layer in with_drop.layers if isinstance(layer, keras.layers.Dropout)
    } == {0.5}
    assert {
        layer.momentum
        for layer in with_drop.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    } == {0.99}


def test_recalibration_gives_the_average_batch_statistics():
    """The first batch norm's moving mean becomes the mean over the inputs of its own input."""
    keras.utils.set_random_seed(1)
    net = build_mresunet(
        input_size=8, base_filters=2, depth=2, n_substages=2, skip_dilations=(2,), dropout=0.3
    )
    x = np.random.default_rng(3).normal(size=(64, 8, 8, 1)).astype("float32")
    recalibrate_batch_norm(net, x, batch_size=16)
    bn = net.get_layer("enc0_d1_bn")
    before_bn = keras.Model(net.input, net.get_layer("enc0_d1_selu").output)
    act = np.asarray(before_bn(x))
    np.testing.assert_allclose(
        np.array(bn.moving_mean), act.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )


def _dropout_net(seed: int):
    """A small mResUNet with dropout 0.5 in its decoder and 64 random inputs."""
    keras.utils.set_random_seed(seed)
    net = build_mresunet(
        input_size=8, base_filters=2, depth=2, n_substages=2, skip_dilations=(2,), dropout=0.5
    )
    return net, np.random.default_rng(seed + 1).normal(size=(64, 8, 8, 1)).astype("float32")


def test_dropout_shifts_the_statistics():
    """The fault this guards against: statistics gathered with dropout on (what training's
    moving averages see) differ from those of the inputs the model predicts on."""
    net, x = _dropout_net(4)
    recalibrate_batch_norm(net, x, batch_size=64)
    off = _moving_stats(net)
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for b in bns:
        b.momentum = 0.0
    net(x, training=True)  # dropout on, as in training
    on = _moving_stats(net)
    for b in bns:
        b.momentum = 0.99
    # the decoder's batch norms after the dropout see other variances
    changed = [n for n in on if not np.allclose(on[n][1], off[n][1], rtol=1e-3)]
    assert changed and all(not n.startswith("enc0") for n in changed)


def test_recalibration_keeps_dropout_on_and_off_apart():
    """The traced pass is kept per model and per ``dropout_off``: statistics gathered with
    dropout on (bench_readout's diagnostic) differ in the decoder, and recalibrating again with
    it off gives back the first statistics."""
    net, x = _dropout_net(6)
    recalibrate_batch_norm(net, x, batch_size=32)
    off = _moving_stats(net)
    recalibrate_batch_norm(net, x, batch_size=32, dropout_off=False)
    on = _moving_stats(net)
    recalibrate_batch_norm(net, x, batch_size=32)
    again = _moving_stats(net)
    assert any(not np.allclose(on[n][1], off[n][1], rtol=1e-3) for n in off)
    for name in off:
        np.testing.assert_array_equal(again[name][0], off[name][0])
        np.testing.assert_array_equal(again[name][1], off[name][1])
