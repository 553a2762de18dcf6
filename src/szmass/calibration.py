"""Mass calibration of an estimator's raw output: a scaling relation fitted on maps of known
mass and inverted (the matched filter's amplitude; the network's raw mass readout).

Shared by ``baseline`` (the filter, calibrated on the training realizations) and ``network``
(the raw estimate, calibrated on the validation realizations), so that the two estimators
are compared on equal terms. No test set is ever used to fit a calibration.
"""

import numpy as np


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares y = c0 + c1 x: coefficients, their covariance, rms residual (ddof 2)."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    c1 = float(dx @ (y - y.mean()) / sxx)
    c0 = float(y.mean() - c1 * x.mean())
    s2 = float(np.sum((y - c0 - c1 * x) ** 2) / (x.size - 2))
    cov = s2 * np.array([[1.0 / x.size + x.mean() ** 2 / sxx, -x.mean() / sxx],
                         [-x.mean() / sxx, 1.0 / sxx]])  # fmt: skip
    return np.array([c0, c1]), cov, float(np.sqrt(s2))


def fit_calibration(
    *, amplitude: np.ndarray, m200c_msun: np.ndarray, method: str = "inverse"
) -> dict[str, float]:
    """Fit the mass calibration ln M200c = a + b ln A on training maps (least squares).

    ``method="inverse"`` regresses ln M on ln A: the best prediction of ln M over the training
    set's mass distribution, which, like any regression of the truth on a noisy observable
    (and like an MSE-trained network), pulls estimates toward the mean training mass.
    ``method="forward"`` fits the scaling relation ln A = alpha + beta ln M (scatter in A at
    fixed M, as the simulation has it) and inverts it, a = -alpha / beta, b = 1 / beta: no pull
    toward the mean, but least squares on ln A is biased where S/N <~ 3 (a noiseless
    calibration: fit the filter's response to the templates, ``scale_response_fixed``).

    Maps with A <= 0 (or non-finite) have no logarithm: they are excluded from the fit and
    counted in ``n_nonpositive``, never dropped silently.

    Returns:
        ``a``, ``b``, their errors ``a_err``, ``b_err`` (first order), ``scatter`` (rms
        residual in ln M; forward: the ln A residual / |beta|), ``n_used``, ``n_nonpositive``.
    """
    amp = np.asarray(amplitude, dtype=float)
    mass = np.asarray(m200c_msun, dtype=float)
    if amp.shape != mass.shape or amp.ndim != 1:
        raise ValueError(f"amplitude {amp.shape} and m200c_msun {mass.shape} must be (n,)")
    if not np.all(np.isfinite(mass) & (mass > 0)):
        raise ValueError("m200c_msun must be positive and finite")
    if method not in ("inverse", "forward"):
        raise ValueError(f"method must be 'inverse' or 'forward', got {method!r}")
    good = np.isfinite(amp) & (amp > 0)
    if good.sum() < 3:
        raise ValueError(f"only {good.sum()} positive amplitudes; a fit needs at least 3")
    ln_a, ln_m = np.log(amp[good]), np.log(mass[good])
    if method == "inverse":
        (a, b), cov, scatter = _ols(ln_a, ln_m)
    else:
        (alpha, beta), cov_ab, scatter_a = _ols(ln_m, ln_a)
        a, b, scatter = -alpha / beta, 1.0 / beta, scatter_a / abs(beta)
        jac = np.array([[-1.0 / beta, alpha / beta**2], [0.0, -1.0 / beta**2]])
        cov = jac @ cov_ab @ jac.T
    return {
        "a": float(a),
        "b": float(b),
        "a_err": float(np.sqrt(cov[0, 0])),
        "b_err": float(np.sqrt(cov[1, 1])),
        "scatter": float(scatter),
        "n_used": int(good.sum()),
        "n_nonpositive": int((~good).sum()),
    }


def apply_calibration(
    calibration: dict[str, float], *, amplitude: np.ndarray, amplitude_err: np.ndarray
) -> dict[str, np.ndarray]:
    """M200c = exp(a + b ln A) [Msun] per map, with the error of ln M from sigma_A.

    ``ln_m_err`` = |b| sigma_A / A (first order; meaningful where A / sigma_A >~ 3);
    ``ln_m_err_total`` adds the calibration's ``scatter`` in quadrature. A <= 0 (or
    non-finite) gives NaN in all three, flagged in ``nonpositive`` and counted in
    ``n_nonpositive``.
    """
    amp = np.asarray(amplitude, dtype=float)
    err = np.broadcast_to(np.asarray(amplitude_err, dtype=float), amp.shape)
    good = np.isfinite(amp) & (amp > 0)
    safe = np.where(good, amp, 1.0)
    ln_m = np.where(good, calibration["a"] + calibration["b"] * np.log(safe), np.nan)
    ln_err = np.where(good, abs(calibration["b"]) * err / safe, np.nan)
    return {
        "m200c_est": np.exp(ln_m),
        "ln_m_err": ln_err,
        "ln_m_err_total": np.hypot(ln_err, calibration["scatter"]),
        "nonpositive": ~good,
        "n_nonpositive": int((~good).sum()),
    }
