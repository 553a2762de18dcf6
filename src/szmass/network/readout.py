"""The mass readout during training: a loss that weighs it, its width on the validation set,
and batch-norm statistics recomputed without dropout (issue 12; beyond the paper).

- ``ReadoutMSE``: the paper's map-wide MSE (Gupta & Reichardt 2020, arXiv:2003.06135, §3)
  plus ``readout_weight`` times the squared error of the mass channel's central pixel, the one
  pixel the estimate reads. The central pixel is 1 of 3200 outputs, so the map-wide MSE alone
  barely sees it: lowering it need not narrow the mass estimate. With ``readout_loss="log"``
  the readout's error is taken in ln M, (ln p - ln t)^2, the statistic the evaluation reports:
  the squared error in M weighs a cluster's relative error by M^2 (a 1e14 cluster 1/64 of an
  8e14 one), and its minimiser is the posterior mean of M, where the log one's is exp E[ln M].
- ``readout_scores``: the validation set's mean and robust half-width (16-84%) of
  ln(M_est / M_true), the statistic the evaluation reports, for choosing the best epoch.
- ``recalibrate_batch_norm``: the decoder's dropout feeds conv -> SELU -> batch norm, whose
  moving statistics are gathered with dropout on and used with it off; that shift read masses
  3-16% low. This recomputes every batch-norm layer's mean and variance on training inputs with
  dropout off (cumulative averages of the batch statistics, as SWA's ``bn_update``).
"""

from typing import Any

import keras
import numpy as np

#: The log readout takes ln(eps * softplus(p / eps)) for ln p, with eps this (normalised)
#: value (0.03 x m_norm: 1.35e13 Msun in the paper's setup): smooth, and equal to ln p within
#: 1e-4 above ~8 eps (the lightest training mass, 1e14, is ~7 eps; 3e-4 there). A hard floor
#: (ln max(p, floor)) failed: in training mode, with the decoder's dropout, many centres sat
#: below the floor with no gradient, and the readout's 1/p gradient near it blew up the rest
#: (one run, 2026-12-03: validation mean ln ratio +1.2 after 5 epochs; killed).
LOG_READOUT_EPS = 0.03

#: Estimates at or below this fraction of the true mass count as this fraction in the ln-ratio
#: statistics (an undertrained network gives estimates <= 0; they rank lowest).
LN_FLOOR = 1e-3


@keras.saving.register_keras_serializable(package="szmass")
class ReadoutMSE(keras.losses.Loss):
    """Mean squared error over all pixels and channels, plus ``readout_weight`` times the
    squared error of channel ``channel`` at the central pixel, in M (``readout_loss``
    "squared") or in ln M ("log"); one value per map."""

    def __init__(
        self,
        readout_weight: float = 0.0,
        channel: int = 1,
        readout_loss: str = "squared",
        name="readout_mse",
        **kw,
    ):
        super().__init__(name=name, **kw)
        if readout_loss not in ("squared", "log"):  # train.READOUT_LOSSES (no cycle)
            raise ValueError(
                f"training.readout_loss is {readout_loss!r}; expected 'squared' or 'log'"
            )
        self.readout_weight = float(readout_weight)
        self.channel = int(channel)
        self.readout_loss = readout_loss

    def call(self, y_true, y_pred):
        ops = keras.ops
        per_map = ops.mean(ops.square(y_pred - y_true), axis=(1, 2, 3))
        c = y_true.shape[1] // 2
        p, t = y_pred[:, c, c, self.channel], y_true[:, c, c, self.channel]
        if self.readout_loss == "log":
            p, t = _soft_log_tensor(p), _soft_log_tensor(t)
        return per_map + self.readout_weight * ops.square(p - t)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "readout_weight": self.readout_weight,
            "channel": self.channel,
            "readout_loss": self.readout_loss,
        }


#: Below this z = v / eps, ln softplus(z) is taken as z - e^z / 2 (its expansion, error
#: < e^(2z)): in float32 softplus(z) underflows to 0 near z = -104, and ln 0 with its 0/0
#: gradient turned a training run's loss to NaN in its first epoch (2026-12-03).
_SOFT_LOG_SWITCH = -10.0


def _soft_log_tensor(v):
    """``soft_log`` in keras ops, finite with a finite gradient for any v."""
    ops = keras.ops
    z = v / ops.cast(LOG_READOUT_EPS, v.dtype)
    switch = ops.cast(_SOFT_LOG_SWITCH, v.dtype)
    body = ops.log(ops.softplus(ops.maximum(z, switch)))  # both branches finite: no NaN grads
    tail = ops.minimum(z, switch)
    tail = tail - ops.exp(tail) / 2
    return ops.log(ops.cast(LOG_READOUT_EPS, v.dtype)) + ops.where(z > switch, body, tail)


def loss_value(
    y_true: np.ndarray, y_pred: np.ndarray, *, readout_weight: float, readout_loss: str = "squared"
) -> float:
    """The training loss of a whole set, in numpy (float64 sums)."""
    per_map = np.mean((y_pred.astype(float) - y_true) ** 2, axis=(1, 2, 3))
    c = y_true.shape[1] // 2
    p, t = y_pred[:, c, c, 1].astype(float), y_true[:, c, c, 1].astype(float)
    if readout_loss == "log":
        p, t = (soft_log(v) for v in (p, t))
    return float(np.mean(per_map + readout_weight * (p - t) ** 2))


def soft_log(v: np.ndarray) -> np.ndarray:
    """ln(eps * softplus(v / eps)), eps = ``LOG_READOUT_EPS``: ln v for v >> eps, smooth
    and finite at v <= 0 (the log readout's ln, in numpy)."""
    z = np.asarray(v, float) / LOG_READOUT_EPS
    body = np.log(np.logaddexp(0.0, np.maximum(z, _SOFT_LOG_SWITCH)))
    tail = np.minimum(z, _SOFT_LOG_SWITCH)
    return np.log(LOG_READOUT_EPS) + np.where(z > _SOFT_LOG_SWITCH, body, tail - np.exp(tail) / 2)


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
    statistics over ``inputs`` (n, H, W, C), computed with dropout off (``dropout_off=False``
    keeps it on: what a training's moving averages see, for diagnostics)."""
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    if not bns:
        return
    momenta, rates = [b.momentum for b in bns], [d.rate for d in drops]
    try:
        for d in drops if dropout_off else ():
            d.rate = 0.0
        for k in range(max(1, len(inputs) // batch_size)):  # whole batches only
            for b in bns:  # moving <- moving * k/(k+1) + batch/(k+1): the running average
                b.momentum = k / (k + 1)
            net(inputs[k * batch_size : (k + 1) * batch_size], training=True)
    finally:
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m
        for d, r in zip(drops, rates, strict=True):
            d.rate = r


def validate_readout(
    net, x_val, y_val, *, m_norm: float, recipe: dict, x_recal
) -> dict[str, float]:
    """The validation loss and readout statistics of the model as it stands; with
    ``bn_recalibration``, its batch-norm statistics are first recomputed without dropout."""
    if recipe["bn_recalibration"]:
        recalibrate_batch_norm(net, x_recal)
    pred = np.concatenate(
        [net.predict_on_batch(x_val[i : i + 64]) for i in range(0, len(x_val), 64)]
    )
    c = x_val.shape[1] // 2
    scores = readout_scores(pred[:, c, c, 1] * m_norm, y_val[:, c, c, 1] * m_norm)
    return {
        "val_loss": loss_value(
            y_val,
            pred,
            readout_weight=recipe["readout_weight"],
            readout_loss=recipe["readout_loss"],
        ),
        "val_mean_ln": scores["mean_ln"],
        "val_width": scores["width"],
    }
