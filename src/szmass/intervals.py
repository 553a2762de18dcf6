"""Per-cluster mass intervals (issue 14), for both estimators, and their coverage.

Network: a Neyman confidence belt fitted on the validation realizations (never a test set).
At each validation mass M the quantiles q_k(M) of ln M_est are measured (``fit_belt``) and
interpolated linearly in ln M between the masses; the interval at level 1 - alpha for an
estimate is every M whose central band [q_(alpha/2)(M), q_(1-alpha/2)(M)] contains it
(``belt_intervals``). Whatever the true mass inside the belt's range, its band contains the
estimate with probability 1 - alpha, so the interval covers the truth at that rate at every
mass (frequentist coverage), with no assumption on the shape of the scatter and no prior on
the mass; inverting the median curve gives a median-unbiased estimate. Outside the belt's mass
range nothing was measured: a bound that would lie beyond it is left open (0 or infinity), so
an estimate at the edge of the training masses gets an interval that says so.

Matched filter: the same construction, its belt drawn from the filter's own noise model
instead of maps (``filter_belt``): the amplitude A = mu(M) e^d + n with mu(M) the calibration's
mean relation, d the log-normal intrinsic scatter sigma_int and n the analytic noise sigma_A,
turned into a mass by the calibration. nemo instead takes the quantiles of a posterior, the
likelihood of y_c times a flat prior in ln M (its ``M500cUncorr``); at low S/N that
likelihood stays finite as M -> 0, so the interval depends on how far down the prior reaches
(on synthetic clusters at S/N 2-50, a prior from 1e12 Msun covered 64% at 68%). The belt has
no prior: it covers at every mass, non-detections (A <= 0) included.

Both give the columns ``INTERVAL_COLUMNS`` and, where the truth is known, the PIT (the
probability integral transform: uniform on [0, 1] when the intervals are right).
"""

import logging
from typing import Any

import numpy as np

log = logging.getLogger("szmass.intervals")

#: Quantile levels of the belt (the intervals' 2.5, 16, 84, 97.5% and the PIT's resolution).
BELT_LEVELS = (0.025, 0.05, 0.1, 0.16, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.84, 0.9, 0.95, 0.975)
#: Interval columns of a predictions table: the 68% (16-84%) and 95% (2.5-97.5%) bounds
#: [Msun] and sigma_ln, half the 68% interval's width in ln M.
INTERVAL_COLUMNS = ("m200c_lo2p5", "m200c_lo16", "m200c_hi84", "m200c_hi97p5", "sigma_ln")
#: (lower level, upper level, lower column, upper column) of the two intervals.
BOUNDS = ((0.16, 0.84, "m200c_lo16", "m200c_hi84"), (0.025, 0.975, "m200c_lo2p5", "m200c_hi97p5"))
#: Fewer maps per mass than this make a belt whose outer quantiles are rough (warned about).
ROUGH_BELT_MAPS = 100
#: An estimate <= 0 has no logarithm: it counts as this ln M_est [ln Msun] (below any belt).
LN_EST_FLOOR = np.log(1e10)
#: The matched filter's belt: masses [Msun] and simulated amplitudes per mass.
FILTER_BELT_MASSES = np.geomspace(1e13, 3e15, 100)
FILTER_BELT_DRAWS = 4000
#: A validation set with fewer than 2 maps per distinct mass (continuous training masses,
#: SPEC §3) is grouped into bins of equal counts in ln M: at most this many, of at least
#: ``ROUGH_BELT_MAPS`` maps where there are enough, and never fewer than 2.
MASS_BINS = 16


def _ln_est(m_est) -> np.ndarray:
    m = np.asarray(m_est, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(m) & (m > 0), np.log(np.where(m > 0, m, 1.0)), LN_EST_FLOOR)


def mass_groups(m200c_true, m200c_est) -> tuple[np.ndarray, list[np.ndarray]]:
    """The validation maps grouped by true mass: (masses [Msun], each group's estimates).

    On a grid every distinct mass is a group. With fewer than 2 maps per distinct mass (a
    continuous set) the maps fall in bins of equal counts in ln M (``MASS_BINS``); a bin's
    mass is its mean ln M, and each estimate is moved to it along the local slope of the bins'
    median ln M_est (M_est x (M_bin / M)^slope), so the bin's width does not widen its spread.
    """
    m_true = np.asarray(m200c_true, dtype=float)
    m_est = np.asarray(m200c_est, dtype=float)
    masses = np.unique(m_true)
    if 2 * masses.size <= m_true.size:
        return masses, [m_est[m_true == m] for m in masses]
    ln_m = np.log(m_true)
    order = np.argsort(ln_m, kind="stable")
    n_bins = int(np.clip(m_true.size // ROUGH_BELT_MAPS, 2, MASS_BINS))
    bins = np.array_split(order, n_bins)
    centres = np.array([ln_m[b].mean() for b in bins])
    medians = np.array([np.median(_ln_est(m_est[b])) for b in bins])
    slope = np.gradient(medians, centres)
    slope = np.where(np.isfinite(slope), slope, 1.0)
    shift = zip(bins, centres, slope, strict=True)
    groups = [m_est[b] * np.exp(-k * (ln_m[b] - c)) for b, c, k in shift]
    return np.exp(centres), groups


def fit_belt(m200c_true, m200c_est, *, levels=BELT_LEVELS, min_maps: int = 3) -> dict[str, Any]:
    """The belt from maps of known mass: per true mass (``mass_groups``: distinct masses, or
    bins of a continuous set) the ``levels`` quantiles of ln M_est, made non-decreasing in mass
    (a belt must be monotone to be inverted).

    Raises ValueError with fewer than 2 masses or fewer than ``min_maps`` maps at a mass.
    """
    masses, groups = mass_groups(m200c_true, m200c_est)
    if masses.size < 2:
        raise ValueError(f"a belt needs maps at 2 or more masses, got {masses.size}")
    counts = np.array([g.size for g in groups])
    if counts.min() < min_maps:
        raise ValueError(
            f"a belt needs {min_maps} maps per mass; {masses[counts.argmin()]:.3g} Msun has "
            f"{counts.min()}"
        )
    if counts.min() < ROUGH_BELT_MAPS:
        log.warning(
            "a belt from %d maps per mass: its 2.5 and 97.5%% quantiles are rough", counts.min()
        )
    q = np.array([np.quantile(_ln_est(g), levels, method="normal_unbiased") for g in groups])
    q = np.maximum.accumulate(q, axis=0)
    return {
        "method": "Neyman belt: quantiles of ln M_est per validation mass (or mass bin), "
        "interpolated in ln M",
        "levels": [float(v) for v in levels],
        "ln_m200c": np.log(masses).tolist(),
        "quantiles_ln_est": q.tolist(),
        "n_maps": counts.tolist(),
    }


def _curve(belt: dict[str, Any], level: float, *, ties: str) -> np.ndarray:
    """The belt's ``level`` quantile against mass, made strictly increasing so that inverting
    it is single-valued. Where it is flat (estimates <= 0 at the floor, or the monotone fix),
    ``ties="low"`` resolves an estimate on the flat part to its lowest mass (for a lower
    bound), ``"high"`` to its highest (for an upper bound): the interval keeps every mass whose
    band holds the estimate."""
    levels = np.asarray(belt["levels"])
    k = np.flatnonzero(np.isclose(levels, level))
    if not k.size:
        raise ValueError(f"the belt has no {level} quantile (levels {belt['levels']})")
    curve = np.asarray(belt["quantiles_ln_est"])[:, k[0]]
    i = np.arange(curve.size)
    return curve + 1e-9 * (i + 1) if ties == "low" else curve - 1e-9 * (curve.size - i)


def belt_intervals(belt: dict[str, Any], m200c_est) -> dict[str, np.ndarray]:
    """The intervals of each estimate [Msun] (``INTERVAL_COLUMNS``) and ``m200c_belt``, the
    inverted median curve (NaN outside the belt). Open bounds are 0 and inf; an estimate <= 0
    gets an upper limit, a NaN one (no estimate) NaN."""
    ln_est = _ln_est(m200c_est)
    ln_m = np.asarray(belt["ln_m200c"])
    out = {}
    for lo_level, hi_level, lo_col, hi_col in BOUNDS:
        # lower bound: the smallest M whose band's upper edge reaches the estimate
        upper_edge = _curve(belt, hi_level, ties="low")
        lo = np.exp(np.interp(ln_est, upper_edge, ln_m))
        out[lo_col] = np.where(ln_est < upper_edge[0], 0.0, lo)
        # upper bound: the largest M whose band's lower edge is still at or below it
        lower_edge = _curve(belt, lo_level, ties="high")
        hi = np.exp(np.interp(ln_est, lower_edge, ln_m))
        out[hi_col] = np.where(ln_est > lower_edge[-1], np.inf, hi)
    with np.errstate(divide="ignore"):
        out["sigma_ln"] = 0.5 * (np.log(out["m200c_hi84"]) - np.log(out["m200c_lo16"]))
    median = _curve(belt, 0.5, ties="low")
    inside = (ln_est >= median[0]) & (ln_est <= median[-1])
    out["m200c_belt"] = np.where(inside, np.exp(np.interp(ln_est, median, ln_m)), np.nan)
    missing = np.isnan(np.asarray(m200c_est, dtype=float))  # no estimate (off the map): no interval
    return {k: np.where(missing, np.nan, v) for k, v in out.items()}


def belt_pit(belt: dict[str, Any], m200c_true, m200c_est, *, seed: int = 0) -> np.ndarray:
    """F(ln M_est | M_true), the belt's CDF of the estimate at the true mass (linear between
    its levels, 0 below the lowest and 1 above the highest); NaN outside its mass range. An
    estimate <= 0 (at the floor, an atom of probability F0) gets a uniform draw in [0, F0],
    the randomised PIT of a discrete outcome."""
    ln_true = np.log(np.asarray(m200c_true, dtype=float))
    ln_est = _ln_est(m200c_est)
    ln_m = np.asarray(belt["ln_m200c"])
    levels = np.asarray(belt["levels"])
    q = np.asarray(belt["quantiles_ln_est"])
    rng = np.random.default_rng(seed)
    out = np.full(ln_true.shape, np.nan)
    for i in np.flatnonzero((ln_true >= ln_m[0] - 1e-9) & (ln_true <= ln_m[-1] + 1e-9)):
        at = np.array([np.interp(ln_true[i], ln_m, q[:, k]) for k in range(levels.size)])
        if ln_est[i] <= LN_EST_FLOOR:
            f0 = levels[at <= LN_EST_FLOOR].max(initial=0.0)
            out[i] = rng.uniform(0.0, f0)
        else:
            out[i] = np.interp(ln_est[i], at + 1e-9 * np.arange(at.size), levels, left=0, right=1)
    return out


def filter_belt(
    amplitude_err: float, calibration: dict[str, float], *, sigma_int: float, seed: int = 0
) -> dict[str, Any]:
    """The matched filter's belt from its noise model: at each of ``FILTER_BELT_MASSES``,
    ``FILTER_BELT_DRAWS`` amplitudes A = mu(M) e^d + n, d ~ N(0, sigma_int), n ~ N(0,
    sigma_A), with mu(M) the calibration's mean relation, turned into masses by the
    calibration; no map of any set is used."""
    rng = np.random.default_rng(seed)
    m = np.repeat(FILTER_BELT_MASSES, FILTER_BELT_DRAWS)
    mu = np.exp((np.log(m) - calibration["a"]) / calibration["b"])
    amp = mu * np.exp(rng.normal(0.0, sigma_int, m.size)) + rng.normal(0.0, amplitude_err, m.size)
    return fit_belt(m, calibrated_masses(amp, calibration))


def calibrated_masses(amplitude, calibration: dict[str, float]) -> np.ndarray:
    """exp(a + b ln A) [Msun]; 0 where A <= 0 (a non-detection)."""
    amp = np.asarray(amplitude, dtype=float)
    good = np.isfinite(amp) & (amp > 0)
    ln_m = calibration["a"] + calibration["b"] * np.log(np.where(good, amp, 1.0))
    return np.where(good, np.exp(ln_m), np.where(np.isfinite(amp), 0.0, np.nan))


def filter_intervals(
    amplitude,
    amplitude_err,
    calibration: dict[str, float],
    *,
    sigma_int: float,
    m200c_true=None,
    belts: dict | None = None,
) -> dict[str, np.ndarray]:
    """The matched filter's intervals [Msun] (``INTERVAL_COLUMNS``, ``m200c_belt``) from its
    amplitude, the analytic noise sigma_A (one value per filter: maps are grouped by it), its
    calibration (one z: a filter whose calibration depends on z is called once per z, with
    the calibration at that z) and the log-normal intrinsic scatter ``sigma_int`` of A at
    fixed M; with ``m200c_true``, also ``pit``. ``belts``, a dict, keeps the belts built (by
    sigma_A, calibration and sigma_int) for the next call."""
    amp = np.asarray(amplitude, dtype=float)
    err = np.broadcast_to(np.asarray(amplitude_err, dtype=float), amp.shape)
    out = {c: np.full(amp.shape, np.nan) for c in (*INTERVAL_COLUMNS, "m200c_belt", "pit")}
    for sigma in np.unique(err[np.isfinite(err)]):
        pick = err == sigma
        key = (float(sigma), calibration["a"], calibration["b"], float(sigma_int))
        belt = None if belts is None else belts.get(key)
        if belt is None:
            belt = filter_belt(float(sigma), calibration, sigma_int=sigma_int)
        if belts is not None:
            belts[key] = belt
        m_est = calibrated_masses(amp[pick], calibration)
        for column, values in belt_intervals(belt, m_est).items():
            out[column][pick] = values
        if m200c_true is not None:
            out["pit"][pick] = belt_pit(belt, np.asarray(m200c_true, float)[pick], m_est)
    if m200c_true is None:
        del out["pit"]
    return out


def coverage(table, *, pit=None) -> dict[str, Any]:
    """How often the intervals of a predictions table hold the truth: the fraction inside the
    68% and 95% intervals, the median 68% interval width in ln M (2 sigma_ln), and, with
    ``pit``, the PIT's Kolmogorov-Smirnov distance from uniform and its 10-bin histogram."""
    m = table["m200c_true"].to_numpy(float)
    out: dict[str, Any] = {"n": int(len(m))}
    for lo_level, hi_level, lo_col, hi_col in BOUNDS:
        inside = (table[lo_col].to_numpy(float) <= m) & (m <= table[hi_col].to_numpy(float))
        out[f"coverage_{round(100 * (hi_level - lo_level))}"] = float(np.mean(inside))
    width = 2 * table["sigma_ln"].to_numpy(float)
    out["median_width_68_ln"] = float(np.median(width)) if len(width) else float("nan")
    out["open_fraction"] = float(np.mean(~np.isfinite(width))) if len(width) else float("nan")
    if pit is not None:
        p = np.sort(np.asarray(pit, dtype=float)[np.isfinite(pit)])
        out["n_pit"] = int(p.size)
        if p.size:
            ecdf_hi = np.arange(1, p.size + 1) / p.size
            out["pit_ks"] = float(max(np.max(ecdf_hi - p), np.max(p - (ecdf_hi - 1 / p.size))))
            out["pit_histogram"] = np.histogram(p, bins=10, range=(0, 1))[0].tolist()
    return out
