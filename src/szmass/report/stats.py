"""Evaluation statistics of the mass estimates (SPEC §4 and §6; Gupta & Reichardt 2020,
arXiv:2003.06135, §4).

- ``per_mass_summary``: per true mass, the median estimate, the error as half the 16-84
  percentile range, dM/M, bias, pull and the mean ln(M_est/M_true) with its standard error.
- ``gaussian_fit`` / ``histogram_gaussian``: the scatter test, a Gaussian fitted to
  ln(M_est/M_true) with bootstrap errors, and the curve to draw over its histogram.
- ``integrated_signal``, ``log_slope``, ``scatter_floor``: the floor in ln M that intrinsic
  scatter in the signal (and the map noise) sets, sigma_int / |d ln Y / d ln M|.
- ``prior_pull``, ``grid_attraction``: where the estimates are pulled toward the discrete
  training grid (SPEC §4 "Information limit", §6 "Honest at the edges").

Masses may be in any one unit (e.g. 1e14 Msun) as long as all arguments share it; everything
returned is either in that unit or dimensionless. Non-finite mass estimates are excluded from
the per-mass statistics and counted (estimates <= 0 rank lowest; only logs leave them out);
bad input raises ``ValueError`` naming the argument, so that no function returns NaN silently.
"""

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Relative tolerance within which two true masses count as the same mass.
MASS_RTOL = 1e-6
#: Percentiles of the error bar: the 1-sigma range of a Gaussian (SPEC §4).
PERCENTILES = (16.0, 84.0)
#: Values drawn at a time in the bootstrap: bounds its memory to ~32 MB (indices + values).
_BOOT_CHUNK = 2_000_000

ArrayLike = np.ndarray | Sequence[float] | float


# --- input checks ---------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a flat float array; raise if it is empty."""
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _positive_finite(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a flat float array; raise unless non-empty, finite and > 0."""
    arr = _as_1d(values, name)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(arr)))} non-finite values")
    if np.any(arr <= 0):
        raise ValueError(f"{name} has {int(np.sum(arr <= 0))} values <= 0")
    return arr


def _pair(m_true: ArrayLike, m_est: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Checked (m_true, m_est): same shape, m_true finite and > 0; m_est may hold NaN."""
    shape_true, shape_est = np.shape(m_true), np.shape(m_est)
    if shape_true != shape_est:
        raise ValueError(f"m_true {shape_true} and m_est {shape_est} have different shapes")
    return _positive_finite(m_true, "m_true"), _as_1d(m_est, "m_est")


def _valid_estimates(m_est: np.ndarray) -> np.ndarray:
    """Mask of the estimates that have a log: finite and > 0."""
    return np.isfinite(m_est) & (m_est > 0)


def _mass_groups(m_true: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Group equal true masses (within ``MASS_RTOL``): [(mass, indices)], ascending mass.

    Sorted masses are split where one differs from the previous by more than MASS_RTOL
    relative (so a group is a chain of close neighbours); each group's mass is the median of
    its members.
    """
    order = np.argsort(m_true, kind="stable")
    ordered = m_true[order]
    breaks = np.nonzero(np.diff(ordered) > MASS_RTOL * ordered[1:])[0] + 1
    return [
        (float(np.median(ordered[idx])), order[idx])
        for idx in np.split(np.arange(ordered.size), breaks)
    ]


def _mass_label(mass: float) -> str:
    return f"m_true={mass:.6g}"


# --- per-mass summary -----------------------------------------------------------------------


def per_mass_summary(*, m_true: ArrayLike, m_est: ArrayLike) -> pd.DataFrame:
    """Per true mass: median estimate, 16-84 percentile error, dM/M, bias, pull, ln ratio.

    The statistics of SPEC §4 (arXiv:2003.06135, §4.1 and Fig. 4): for the estimates of one
    true mass M, the error is half the 16-84 percentile range, dM/M = err / M, and the pull is
    (median - M) / err. SPEC §6 also asks for the mean of ln(M_est / M) per mass (a network that
    regresses toward the mean training mass is biased low at high mass and high at low mass).

    Args:
        m_true: true masses, any shape; finite and > 0. Equal masses (within relative
            ``MASS_RTOL``) form one group.
        m_est: the estimates, same shape and unit as ``m_true``. NaN or inf estimates are
            excluded and counted in ``n_nonfinite``. Estimates <= 0 (a network's negative
            central pixel, a matched filter's non-detection written as 0) are real answers: they
            rank lowest in the percentiles, and only the ln ratio leaves them out (counted in
            ``n_nonpositive``).

    Returns:
        One row per distinct true mass, ascending, with columns

        - ``m_true``: the group's true mass;
        - ``n``: finite estimates used; ``n_nonfinite``: estimates excluded;
          ``n_nonpositive``: finite estimates <= 0 (in the percentiles, not in the ln ratio);
        - ``median``, ``p16``, ``p84``: percentiles of the estimates (numpy's default linear
          interpolation between order statistics);
        - ``err`` = (p84 - p16) / 2; ``dm_over_m`` = err / m_true;
        - ``bias`` = median / m_true - 1;
        - ``pull`` = (median - m_true) / err; where err is 0 (one estimate, or all equal) the
          pull is +-inf, or 0 if the median equals m_true exactly;
        - ``mean_ln_ratio``: mean of ln(m_est / m_true) over the positive estimates (NaN where
          none is positive); ``mean_ln_ratio_err``: its standard error, std(ddof=1) / sqrt(n),
          inf where one is positive.

    Raises:
        ValueError: empty input, shapes that differ, a non-finite or non-positive ``m_true``,
            or a true mass none of whose estimates is finite (the message names it).
    """
    true, est = _pair(m_true, m_est)
    rows = []
    for mass, idx in _mass_groups(true):
        good = est[idx][np.isfinite(est[idx])]
        if good.size == 0:
            raise ValueError(
                f"m_est: no finite estimate for {_mass_label(mass)} ({idx.size} estimates)"
            )
        positive = good[good > 0]
        median = float(np.median(good))
        p16, p84 = (float(p) for p in np.percentile(good, PERCENTILES))
        err = 0.5 * (p84 - p16)
        offset = median - mass
        if err > 0:
            pull = offset / err
        else:
            pull = 0.0 if offset == 0 else math.copysign(math.inf, offset)
        ln_ratio = np.log(positive / mass)
        ln_mean = float(np.mean(ln_ratio)) if positive.size else math.nan
        ln_err = (
            float(np.std(ln_ratio, ddof=1) / np.sqrt(positive.size))
            if positive.size > 1
            else math.inf
        )
        rows.append(
            {
                "m_true": mass,
                "n": int(good.size),
                "median": median,
                "p16": p16,
                "p84": p84,
                "err": err,
                "dm_over_m": err / mass,
                "bias": median / mass - 1.0,
                "pull": pull,
                "mean_ln_ratio": ln_mean,
                "mean_ln_ratio_err": ln_err,
                "n_nonfinite": int(idx.size - good.size),
                "n_nonpositive": int(good.size - positive.size),
            }
        )
    return pd.DataFrame(rows)


# --- scatter test: Gaussian fit of ln(M_est / M_true) --------------------------------------


def _finite_values(values: ArrayLike, name: str, *, minimum: int = 2) -> tuple[np.ndarray, int]:
    """The finite entries of ``values`` and how many were dropped; raise if fewer than
    ``minimum`` remain."""
    arr = _as_1d(values, name)
    finite = arr[np.isfinite(arr)]
    if finite.size < minimum:
        raise ValueError(
            f"{name} has {finite.size} finite values of {arr.size}; at least {minimum} needed"
        )
    return finite, int(arr.size - finite.size)


def gaussian_fit(values: ArrayLike, *, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Maximum-likelihood Gaussian fit of ln(M_est / M_true) with bootstrap errors.

    The scatter test of SPEC §4 (arXiv:2003.06135, §4.3 and Fig. 5): the ML Gaussian of a
    sample is its mean and its ddof=0 standard deviation. The errors are the standard
    deviations (ddof=1) of those two numbers over ``n_boot`` bootstrap resamples (draws with
    replacement of the same size, ``numpy.random.default_rng(seed)``); for a Gaussian sample
    they approach sigma / sqrt(n) and sigma / sqrt(2 n).

    Args:
        values: the ln ratios, any shape; non-finite entries are dropped and counted.
        n_boot: number of bootstrap resamples, >= 2.
        seed: seed of the bootstrap's generator (the result is deterministic given it).

    Returns:
        ``{"mean", "mean_err", "sigma", "sigma_err", "n", "n_dropped"}``; ``n`` counts the
        finite values used, ``n_dropped`` the non-finite ones left out.

    Raises:
        ValueError: ``values`` empty or with fewer than 2 finite entries; ``n_boot`` < 2.
    """
    data, n_dropped = _finite_values(values, "values")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = data.size
    means = np.empty(n_boot)
    sigmas = np.empty(n_boot)
    per_chunk = max(1, _BOOT_CHUNK // n)
    for start in range(0, n_boot, per_chunk):
        stop = min(start + per_chunk, n_boot)
        sample = data[rng.integers(0, n, size=(stop - start, n))]
        means[start:stop] = sample.mean(axis=1)
        sigmas[start:stop] = sample.std(axis=1)
    return {
        "mean": float(np.mean(data)),
        "mean_err": float(np.std(means, ddof=1)),
        "sigma": float(np.std(data)),
        "sigma_err": float(np.std(sigmas, ddof=1)),
        "n": int(n),
        "n_dropped": n_dropped,
    }


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2, elementwise."""
    erf = np.vectorize(math.erf, otypes=[float])
    return 0.5 * (1.0 + erf(np.asarray(x, dtype=float) / math.sqrt(2.0)))


def histogram_gaussian(
    values: ArrayLike,
    *,
    bins: int | Sequence[float] | np.ndarray,
    mean: float | None = None,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of ``values`` and the fitted Gaussian scaled to it (Fig. 5 of
    arXiv:2003.06135).

    Args:
        values: the ln ratios; non-finite entries are left out.
        bins: as ``numpy.histogram`` (a count, or the edges), over the finite values.
        mean, sigma: the Gaussian to draw; by default the ML fit of ``gaussian_fit``
            (mean and ddof=0 std of the finite values).

    Returns:
        ``(centres, counts, pdf_curve)``, each of length n_bins: the bin centres, the counts,
        and the Gaussian's expected count per bin, n * (Phi(upper edge) - Phi(lower edge)),
        which is n * width * pdf(centre) for narrow bins.

    Raises:
        ValueError: fewer than 2 finite values; ``sigma`` not > 0.
    """
    data, _ = _finite_values(values, "values")
    mu = float(np.mean(data)) if mean is None else float(mean)
    sd = float(np.std(data)) if sigma is None else float(sigma)
    if not (np.isfinite(mu) and np.isfinite(sd) and sd > 0):
        raise ValueError(f"sigma must be finite and > 0 (and mean finite), got {mu=}, {sd=}")
    counts, edges = np.histogram(data, bins=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    cdf = _norm_cdf((edges - mu) / sd)
    return centres, counts, data.size * np.diff(cdf)


# --- the floor: signal slope and intrinsic scatter ------------------------------------------


def integrated_signal(sz_maps: np.ndarray) -> np.ndarray:
    """Integrated SZ signal of noise-free SZ maps: |sum over the last two (pixel) axes|.

    The SZ decrement is negative at 150 GHz, so the sum is negative; its absolute value is
    returned so that the signal is positive and ``log_slope`` can fit ln Y against ln M.
    The unit is the maps' unit (e.g. uK) times pixels; slopes in ln do not depend on it.

    Args:
        sz_maps: (..., ny, nx) SZ maps, finite.

    Returns:
        Array of shape (...), one value per map.

    Raises:
        ValueError: fewer than 2 dimensions, no pixels, or non-finite pixels.
    """
    arr = np.asarray(sz_maps, dtype=float)
    if arr.ndim < 2 or arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"sz_maps must be (..., ny, nx) with pixels, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("sz_maps is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError("sz_maps has non-finite pixels")
    return np.abs(arr.sum(axis=(-2, -1)))


def log_slope(*, x: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Least-squares fit of ln y = intercept + slope * ln x.

    Used for d ln Y / d ln M, the slope of the maps' integrated SZ signal against mass, which
    with the intrinsic scatter sets the floor in ln M (SPEC §6; ``scatter_floor``).

    Args:
        x, y: same shape, finite and > 0; at least 3 points and 2 distinct x.

    Returns:
        ``{"slope", "intercept", "slope_err", "scatter"}``: ``scatter`` is the residual rms in
        ln y, sqrt(RSS / (n - 2)) (at fixed x, the intrinsic scatter of ln y);
        ``slope_err`` = scatter / sqrt(sum (ln x - mean ln x)^2), the ordinary least-squares
        standard error.

    Raises:
        ValueError: shapes that differ, non-finite or non-positive values, fewer than 3 points
            or fewer than 2 distinct x.
    """
    if np.shape(x) != np.shape(y):
        raise ValueError(f"x {np.shape(x)} and y {np.shape(y)} have different shapes")
    lx = np.log(_positive_finite(x, "x"))
    ly = np.log(_positive_finite(y, "y"))
    if np.unique(lx).size < 2:
        raise ValueError("x needs at least 2 distinct values")
    if lx.size < 3:
        raise ValueError(f"x and y need at least 3 points for an error, got {lx.size}")
    dx = lx - lx.mean()
    sxx = float(np.sum(dx**2))
    slope = float(np.sum(dx * (ly - ly.mean())) / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    resid = ly - (intercept + slope * lx)
    scatter = float(np.sqrt(np.sum(resid**2) / (lx.size - 2)))
    return {
        "slope": slope,
        "intercept": intercept,
        "slope_err": scatter / math.sqrt(sxx),
        "scatter": scatter,
    }


def scatter_floor(*, sigma_int: float, slope: float, noise_floor: float = 0.0) -> float:
    """The width in ln M that the signal's scatter sets: sqrt((sigma_int/|slope|)^2 + noise^2).

    Intrinsic scatter sigma_int in ln Y at fixed M, with Y ~ M^slope, is a scatter
    sigma_int / |slope| in ln M that no estimator from the map can beat (SPEC §6;
    arXiv:2003.06135, §4.3). The map noise adds its own floor (e.g. the matched filter's
    1 / (S/N) in ln M), in quadrature.

    Args:
        sigma_int: scatter of ln Y at fixed mass, >= 0.
        slope: d ln Y / d ln M, finite and non-zero.
        noise_floor: width in ln M from the noise, >= 0.

    Raises:
        ValueError: any argument outside those ranges or non-finite.
    """
    if not (math.isfinite(sigma_int) and sigma_int >= 0):
        raise ValueError(f"sigma_int must be finite and >= 0, got {sigma_int}")
    if not (math.isfinite(slope) and slope != 0):
        raise ValueError(f"slope must be finite and non-zero, got {slope}")
    if not (math.isfinite(noise_floor) and noise_floor >= 0):
        raise ValueError(f"noise_floor must be finite and >= 0, got {noise_floor}")
    return math.hypot(sigma_int / abs(slope), noise_floor)


# --- the training grid's pull ---------------------------------------------------------------


def _nearest_grid(m: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The grid mass nearest in ln M to each of ``m`` (both > 0; grid sorted, unique)."""
    if grid.size == 1:
        return np.full(m.shape, grid[0])
    lg, lm = np.log(grid), np.log(m)
    right = np.clip(np.searchsorted(lg, lm), 1, lg.size - 1)
    left = right - 1
    pick_right = np.abs(lg[right] - lm) < np.abs(lm - lg[left])
    return np.where(pick_right, grid[right], grid[left])


def _grid(grid_masses: ArrayLike) -> np.ndarray:
    return np.unique(_positive_finite(grid_masses, "grid_masses"))


def prior_pull(*, m_est: ArrayLike, grid_masses: ArrayLike) -> np.ndarray:
    """Signed distance in ln M from each estimate to the nearest training-grid mass.

    d = ln(m_est / g), g the grid mass nearest to m_est in ln M; |d| is the distance. Many
    estimates with |d| much smaller than their scatter mark the learned prior of a network
    trained on a discrete grid (SPEC §4 "Information limit").

    Args:
        m_est: estimates, any shape, finite and > 0 (filter NaN out first).
        grid_masses: the training masses, same unit, finite and > 0.

    Returns:
        Array of the shape of ``m_est``.

    Raises:
        ValueError: empty, non-finite or non-positive ``m_est`` or ``grid_masses``.
    """
    est = _positive_finite(m_est, "m_est")
    grid = _grid(grid_masses)
    return np.log(est / _nearest_grid(est, grid)).reshape(np.shape(m_est))


def _window_probability(mu: float, sd: float, lo: np.ndarray, hi: np.ndarray) -> float:
    """P(lo <= ln m <= hi for some window) for ln m ~ N(mu, sd); windows disjoint, sorted."""
    if sd == 0:
        return float(np.any((lo <= mu) & (mu <= hi)))
    return float(np.sum(_norm_cdf((hi - mu) / sd) - _norm_cdf((lo - mu) / sd)))


def grid_attraction(
    *,
    m_true: ArrayLike,
    m_est: ArrayLike,
    grid_masses: ArrayLike,
    tolerance: float = 0.05,
) -> pd.DataFrame:
    """Per true mass: how often the estimates land on a training mass, against a smooth law.

    SPEC §4 "Information limit" / §6 "Honest at the edges": a network trained on discrete
    masses can answer with the nearest training mass (a learned prior). For the estimates of
    one true mass, the observed fraction within +-``tolerance`` of any grid mass
    (|m_est / g - 1| <= tolerance) is compared with the fraction that a smooth distribution
    of the same centre and width gives: a lognormal with the ML mean and ddof=0 std of
    ln m_est of that group. An excess (observed > smooth) means the estimates clump on the
    grid. For a true mass on the grid an unbiased, narrow estimator gives observed ~ smooth
    ~ 1 and no excess; pinning to a grid edge shows instead in ``per_mass_summary``'s bias
    and here in ``nearest_grid`` and ``median_abs_grid_distance``.

    Args:
        m_true: true masses, finite and > 0.
        m_est: estimates, same shape; NaN, inf or <= 0 are excluded and counted.
        grid_masses: the training masses, finite and > 0.
        tolerance: half-width of the window around each grid mass, relative, in (0, 1).

    Returns:
        One row per distinct true mass, ascending, with columns ``m_true``, ``n``,
        ``n_nonfinite``, ``nearest_grid`` (grid mass nearest to m_true in ln M),
        ``frac_near_grid`` (observed fraction), ``frac_smooth`` (the lognormal's), ``excess``
        (observed - smooth), ``excess_err`` (binomial error of the observed fraction under the
        smooth law, sqrt(p (1 - p) / n), p = frac_smooth), ``median_abs_grid_distance``
        (median |``prior_pull``|).

    Raises:
        ValueError: as ``per_mass_summary``; bad ``grid_masses``; ``tolerance`` not in (0, 1).
    """
    true, est = _pair(m_true, m_est)
    grid = _grid(grid_masses)
    if not (0 < tolerance < 1):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    # Windows in ln m, merged where neighbours overlap so no probability is counted twice.
    lo_all, hi_all = np.log(grid * (1 - tolerance)), np.log(grid * (1 + tolerance))
    lo, hi = [lo_all[0]], [hi_all[0]]
    for a, b in zip(lo_all[1:], hi_all[1:], strict=True):
        if a <= hi[-1]:
            hi[-1] = max(hi[-1], b)
        else:
            lo.append(a)
            hi.append(b)
    lo_arr, hi_arr = np.array(lo), np.array(hi)
    valid = _valid_estimates(est)
    rows = []
    for mass, idx in _mass_groups(true):
        good = est[idx][valid[idx]]
        if good.size == 0:
            raise ValueError(
                f"m_est: no finite, positive estimate for {_mass_label(mass)} "
                f"({idx.size} estimates)"
            )
        ln_est = np.log(good)
        near = np.any((lo_arr <= ln_est[:, None]) & (ln_est[:, None] <= hi_arr), axis=1)
        p_smooth = _window_probability(float(ln_est.mean()), float(ln_est.std()), lo_arr, hi_arr)
        p_smooth = min(max(p_smooth, 0.0), 1.0)
        observed = float(np.mean(near))
        rows.append(
            {
                "m_true": mass,
                "n": int(good.size),
                "n_nonfinite": int(idx.size - good.size),
                "nearest_grid": float(_nearest_grid(np.array([mass]), grid)[0]),
                "frac_near_grid": observed,
                "frac_smooth": p_smooth,
                "excess": observed - p_smooth,
                "excess_err": math.sqrt(p_smooth * (1.0 - p_smooth) / good.size),
                "median_abs_grid_distance": float(
                    np.median(np.abs(np.log(good / _nearest_grid(good, grid))))
                ),
            }
        )
    return pd.DataFrame(rows)
