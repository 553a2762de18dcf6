"""The mass readout during training: a loss that weighs it, its width on the validation set,
and batch-norm statistics recomputed without dropout (issue 12; beyond the paper).

- ``ReadoutMSE``: the paper's map-wide MSE (Gupta & Reichardt 2020, arXiv:2003.06135, §3)
  plus ``readout_weight`` times the squared error of the mass channel's central pixel, the one
  pixel the estimate reads. The central pixel is 1 of 3200 outputs, so the map-wide MSE alone
  barely sees it: lowering it need not narrow the mass estimate. With
  ``readout_loss="relative"`` the readout's error is relative, ((p - t) / t)^2: the squared
  error in M weighs a cluster's relative error by M^2 (a 1e14 cluster 1/64 of an 8e14 one),
  while the evaluation's ln-ratio statistics weigh every cluster alike. Each has a bias of its
  own where the estimate scatters by sigma in ln M (lognormal): the squared error's minimiser
  E[M] reads +sigma^2/2 high, the relative one's E[1/M] / E[1/M^2] -1.5 sigma^2 low. With
  ``readout_loss="log"`` the error is (ln r)^2, r = p / t, whose minimiser exp E[ln M] has
  none; below r = 1/2 it continues as its second-order expansion there (``ln_ratio_loss``),
  a parabola in p, so p <= 0 (an untrained network) has a finite loss and a bounded pull.
  (A plain ln p failed twice, 2026-12-03: with a hard floor on p, no gradient below it and a
  1/p one above, the validation mean ln ratio was +1.2 after 5 epochs; smoothed by softplus,
  ln(eps softplus(p / eps)), its steep tail drove the estimates 44x high, +3.8 after 2.)
- ``readout_scores``: the validation set's mean and robust half-width (16-84%) of
  ln(M_est / M_true), the statistic the evaluation reports, for choosing the best epoch.
- ``recalibrate_batch_norm``: the decoder's dropout feeds conv -> SELU -> batch norm, whose
  moving statistics are gathered with dropout on and used with it off; that shift read masses
  3-16% low. This recomputes every batch-norm layer's mean and variance on training inputs with
  dropout off (the average of the batch statistics, as SWA's ``bn_update``).
"""

import weakref
from typing import Any

import keras
import numpy as np

#: How the readout's error is measured (``training.readout_loss``).
READOUT_LOSSES = ("squared", "relative", "log")

#: Estimates at or below this fraction of the true mass count as this fraction in the ln-ratio
#: statistics (an undertrained network gives estimates <= 0; they rank lowest).
LN_FLOOR = 1e-3


@keras.saving.register_keras_serializable(package="szmass")
class ReadoutMSE(keras.losses.Loss):
    """Mean squared error over all pixels and channels, the SZ channel's (0) weighted by
    ``sz_weight``, plus ``readout_weight`` times the squared error of channel ``channel`` at
    the central pixel, in M (``readout_loss`` "squared"), relative to the true value
    ("relative") or in ln M ("log", ``ln_ratio_loss``); one value per map."""

    def __init__(
        self,
        readout_weight: float = 0.0,
        channel: int = 1,
        readout_loss: str = "squared",
        sz_weight: float = 1.0,
        name="readout_mse",
        **kw,
    ):
        super().__init__(name=name, **kw)
        if readout_loss not in READOUT_LOSSES:
            raise ValueError(
                f"training.readout_loss is {readout_loss!r}; expected one of {READOUT_LOSSES}"
            )
        self.readout_weight = float(readout_weight)
        self.channel = int(channel)
        self.readout_loss = readout_loss
        self.sz_weight = float(sz_weight)

    def call(self, y_true, y_pred):
        ops = keras.ops
        per_map = ops.mean(
            channel_weights(self.sz_weight, y_true.shape[-1]) * ops.square(y_pred - y_true),
            axis=(1, 2, 3),
        )
        c = y_true.shape[1] // 2
        p, t = y_pred[:, c, c, self.channel], y_true[:, c, c, self.channel]
        return per_map + self.readout_weight * readout_error(p, t, self.readout_loss, ops)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "readout_weight": self.readout_weight,
            "channel": self.channel,
            "readout_loss": self.readout_loss,
            "sz_weight": self.sz_weight,
        }


def channel_weights(sz_weight: float, channels: int) -> np.ndarray:
    """The map-wide MSE's weight of each output channel: ``sz_weight`` for the SZ map (0), 1
    for the mass map. The SZ label is over ``sz_scale``, the largest |SZ| of the training set
    (an 8e14 cluster's centre, ~440 uK), the mass label over the mean mass: a 2e14 cluster's SZ
    map is ~0.08 at its centre where its mass map is ~0.4, so at weight 1 the SZ channel's
    errors count ~35x less than the mass map's for the same relative error."""
    w = np.ones(channels, dtype=np.float32)
    w[0] = sz_weight
    return w


def loss_value(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    readout_weight: float,
    readout_loss: str = "squared",
    sz_weight: float = 1.0,
) -> float:
    """The training loss of a whole set, in numpy (float64 sums)."""
    w = channel_weights(sz_weight, y_true.shape[-1]).astype(float)
    per_map = np.mean(w * (y_pred.astype(float) - y_true) ** 2, axis=(1, 2, 3))
    c = y_true.shape[1] // 2
    p, t = y_pred[:, c, c, 1].astype(float), y_true[:, c, c, 1].astype(float)
    return float(np.mean(per_map + readout_weight * readout_error(p, t, readout_loss, np)))


def readout_error(p, t, readout_loss: str, xp):
    """The readout's error term per map, in numpy or keras ops (``xp``); a mass label's
    centre t is > 0 (M200c / M_norm)."""
    if readout_loss == "squared":
        return (p - t) ** 2
    if readout_loss == "relative":
        return ((p - t) / t) ** 2
    return ln_ratio_loss(p / t, xp)


#: Where the log readout's (ln r)^2 hands over to its expansion.
_LOG_SWITCH = 0.5


def ln_ratio_loss(r, xp=np):
    """(ln r)^2 for r >= 1/2; below, its second-order expansion about r = 1/2 (value, slope
    and curvature continuous): ln^2 2 - 4 ln 2 (r - 1/2) + 4 (1 + ln 2)(r - 1/2)^2. In numpy or
    keras ops (``xp``); both branches are finite everywhere, so the gradient has no NaN."""
    ln2 = float(np.log(2.0))
    upper = xp.log(xp.maximum(r, _LOG_SWITCH)) ** 2
    d = xp.minimum(r, _LOG_SWITCH) - _LOG_SWITCH
    lower = ln2**2 - 4 * ln2 * d + 4 * (1 + ln2) * d**2
    return xp.where(r >= _LOG_SWITCH, upper, lower)


def ln_ratio(m_est: np.ndarray, m_true: np.ndarray) -> np.ndarray:
    """ln(M_est / M_true), with estimates below ``LN_FLOOR`` M_true held at the floor."""
    return np.log(np.maximum(np.asarray(m_est, float) / m_true, LN_FLOOR))


def readout_scores(m_est: np.ndarray, m_true: np.ndarray) -> dict[str, float]:
    """Mean and robust half-width (half the 16-84 percentile range) of ln(M_est / M_true)."""
    r = ln_ratio(m_est, m_true)
    lo, hi = np.percentile(r, [16, 84])
    return {"mean_ln": float(r.mean()), "width": float((hi - lo) / 2)}


def recalibrate_batch_norm(
    net: keras.Model, inputs: np.ndarray, *, batch_size: int = 64, dropout_off: bool = True
) -> None:
    """Set every batch-norm layer's moving mean and variance to the average of its batch
    statistics over ``inputs`` (n, H, W, C; whole batches only), computed with dropout off
    (``dropout_off=False`` keeps it on: what a training's moving averages see, for diagnostics).

    Each batch goes through one traced training-mode forward pass with the momenta at 0, which
    leaves that batch's statistics in the moving variables; their average is summed here in
    float64. The pass is traced once per model (``_training_forward``): eager calls, as before
    2026-12-08, took 8 s per recalibration of 1067 maps at width 16 (~1/6 of a CPU epoch),
    tracing anew each time 5 s, the kept trace 3 s."""
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    if not bns:
        return
    momenta, rates = [b.momentum for b in bns], [d.rate for d in drops]
    n = max(1, len(inputs) // batch_size)
    sums = [[0.0, 0.0] for _ in bns]
    try:
        for b in bns:  # moving <- moving * 0 + this batch's statistics
            b.momentum = 0.0
        for d in drops if dropout_off else ():
            d.rate = 0.0
        forward = _training_forward(net, dropout_off)
        for k in range(n):
            forward(inputs[k * batch_size : (k + 1) * batch_size])
            for s, b in zip(sums, bns, strict=True):
                s[0] = s[0] + np.asarray(b.moving_mean, dtype=float)
                s[1] = s[1] + np.asarray(b.moving_variance, dtype=float)
        for (mean, var), b in zip(sums, bns, strict=True):
            b.moving_mean.assign(mean / n)
            b.moving_variance.assign(var / n)
    finally:
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m
        for d, r in zip(drops, rates, strict=True):
            d.rate = r


#: Each model's traced training-mode pass for ``recalibrate_batch_norm``, by ``dropout_off``
#: (traced with the momenta and, where off, the dropout rates at 0, as every call sets them).
_FORWARD: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _training_forward(net: keras.Model, dropout_off: bool):
    import tensorflow as tf

    traced = _FORWARD.setdefault(net, {})
    if dropout_off not in traced:
        model = weakref.ref(net)  # the cache must not keep the model alive
        traced[dropout_off] = tf.function(lambda x: model()(x, training=True))
    return traced[dropout_off]


def validate_readout(
    net, x_val, y_val, *, m_norm: float, recipe: dict, x_recal
) -> dict[str, float]:
    """The validation loss and readout statistics of the model as it stands; with
    ``bn_recalibration``, its batch-norm statistics are first recomputed without dropout. With
    ``val_width_range`` ([low, high] in 1e14 Msun), the readout's mean and width are those of
    the validation clusters of true M200c within it (the loss stays every map's)."""
    if recipe["bn_recalibration"]:
        recalibrate_batch_norm(net, x_recal)
    pred = np.concatenate(
        [net.predict_on_batch(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]
    )
    c = x_val.shape[1] // 2
    m_est, m_true = pred[:, c, c, 1] * m_norm, y_val[:, c, c, 1] * m_norm
    band = recipe.get("val_width_range") or ()
    if band:  # the readout scored on the validation clusters within the band only
        inside = (m_true >= band[0] * 1e14) & (m_true <= band[1] * 1e14)
        m_est, m_true = m_est[inside], m_true[inside]
    scores = readout_scores(m_est, m_true)
    return {
        "val_loss": loss_value(
            y_val,
            pred,
            readout_weight=recipe["readout_weight"],
            readout_loss=recipe["readout_loss"],
            sz_weight=recipe.get("sz_weight", 1.0),
        ),
        "val_mean_ln": scores["mean_ln"],
        "val_width": scores["width"],
    }
