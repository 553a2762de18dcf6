"""szmass.report.stats: per-mass summary, Gaussian fit with bootstrap, signal slope, scatter
floor and the training grid's pull, on synthetic numbers with known answers."""

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from szmass.report import stats

#: z of the 84th percentile of a unit Gaussian (the 16th is its negative).
Z84 = NormalDist().inv_cdf(0.84)
#: Draws per mass of the lognormal tests: the 16/50/84 percentiles of ln m then carry a
#: sampling error of ~0.003 sigma-units (sqrt(p(1-p)/n) / pdf(z)), i.e. ~1e-3 relative.
N_LOGNORMAL = 100_000
#: Relative tolerance on the lognormal percentiles: ~5x their sampling error.
PERCENTILE_RTOL = 5e-3
#: Absolute tolerance on a pull that is 0 in expectation: median error (~1e-3 M) / err (~0.2 M)
#: is ~5e-3; 0.03 is ~6 sigma.
PULL_ATOL = 0.03
#: Bootstrap errors vs sigma / sqrt(n) and sigma / sqrt(2 n): 1000 resamples fix a standard
#: deviation to ~2%, and the bootstrap is itself a finite-n approximation; 15% as in the brief.
BOOTSTRAP_RTOL = 0.15
#: An exact power law is recovered to rounding error.
EXACT_RTOL = 1e-12
#: Number of standard errors a fitted value may lie from its true value (a 4-sigma miss has
#: probability 6e-5; the draws are seeded, so the test is deterministic anyway).
N_SIGMA = 4.0


def lognormal(rng, mass, *, mu, sigma, n=N_LOGNORMAL):
    return mass * np.exp(mu + sigma * rng.standard_normal(n))


# --- per_mass_summary ---------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.0, 0.1])
def test_per_mass_summary_lognormal(mu):
    """Median, 16/84 percentiles, err, dM/M, bias, pull and mean ln ratio of lognormal draws
    match their analytic values: median M e^mu, p16/p84 M e^(mu -+ sigma z84)."""
    rng = np.random.default_rng(1)
    sigma = 0.2
    masses = [2.0, 5.0, 8.0]
    m_true = np.repeat(masses, N_LOGNORMAL)
    m_est = np.concatenate([lognormal(rng, m, mu=mu, sigma=sigma) for m in masses])
    order = rng.permutation(m_true.size)  # grouping must not rely on the input order
    table = stats.per_mass_summary(m_true=m_true[order], m_est=m_est[order])

    assert list(table.columns) == [
        "m_true",
        "n",
        "median",
        "p16",
        "p84",
        "err",
        "dm_over_m",
        "bias",
        "pull",
        "mean_ln_ratio",
        "mean_ln_ratio_err",
        "n_nonfinite",
        "n_nonpositive",
    ]
    np.testing.assert_array_equal(table["m_true"], masses)
    assert (table["n"] == N_LOGNORMAL).all()
    assert (table["n_nonfinite"] == 0).all()
    m = table["m_true"].to_numpy()
    err = m * math.exp(mu) * math.sinh(sigma * Z84)
    kw = {"rtol": PERCENTILE_RTOL}
    np.testing.assert_allclose(table["median"], m * math.exp(mu), **kw)
    np.testing.assert_allclose(table["p16"], m * math.exp(mu - sigma * Z84), **kw)
    np.testing.assert_allclose(table["p84"], m * math.exp(mu + sigma * Z84), **kw)
    np.testing.assert_allclose(table["err"], err, **kw)
    np.testing.assert_allclose(table["dm_over_m"], err / m, **kw)
    np.testing.assert_allclose(table["bias"], math.expm1(mu), atol=PERCENTILE_RTOL)
    expected_pull = math.expm1(mu) / (math.exp(mu) * math.sinh(sigma * Z84))
    np.testing.assert_allclose(table["pull"], expected_pull, atol=PULL_ATOL)
    # Mean ln ratio: mu, with standard error sigma / sqrt(n).
    sem = sigma / math.sqrt(N_LOGNORMAL)
    np.testing.assert_allclose(table["mean_ln_ratio_err"], sem, rtol=BOOTSTRAP_RTOL)
    assert np.all(np.abs(table["mean_ln_ratio"] - mu) < N_SIGMA * sem)


def test_per_mass_summary_by_hand():
    """Small arrays whose percentiles follow by hand from numpy's linear interpolation:
    position (n - 1) p between the sorted values."""
    # M = 3: estimates 1..5 -> p16 at position 0.64 (1.64), p84 at 3.36 (4.36), median 3.
    # M = 10: finite estimates -1, 0, 10, 12 (NaN and inf left out; 0 and -1 rank lowest)
    # -> median 5, p16 at position 0.48 (-0.52), p84 at 2.52 (11.04); the ln ratio uses 10, 12.
    # Slightly different copies of 3 (1e-9 relative) are the same mass.
    m_true = [10, 3, 3 * (1 + 1e-9), 10, 3, 10, 10, 3, 10, 3, 10]
    m_est = [12, 4, 1, np.nan, 5, 0.0, -1.0, 3, np.inf, 2, 10]
    table = stats.per_mass_summary(m_true=m_true, m_est=m_est).set_index("m_true")
    assert list(table.index) == pytest.approx([3.0, 10.0])

    three = table.iloc[0]
    assert three["n"] == 5 and three["n_nonfinite"] == 0
    assert three["median"] == pytest.approx(3.0)
    assert three["p16"] == pytest.approx(1.64)
    assert three["p84"] == pytest.approx(4.36)
    assert three["err"] == pytest.approx(1.36)
    assert three["dm_over_m"] == pytest.approx(1.36 / 3)
    assert three["bias"] == pytest.approx(0.0, abs=1e-9)
    assert three["pull"] == pytest.approx(0.0, abs=1e-8)
    ln = np.log(np.array([1, 2, 3, 4, 5]) / 3)
    assert three["mean_ln_ratio"] == pytest.approx(ln.mean())
    assert three["mean_ln_ratio_err"] == pytest.approx(ln.std(ddof=1) / math.sqrt(5))

    ten = table.iloc[1]
    assert ten["n"] == 4 and ten["n_nonfinite"] == 2 and ten["n_nonpositive"] == 2
    assert ten["median"] == pytest.approx(5.0)
    assert ten["p16"] == pytest.approx(-0.52)
    assert ten["p84"] == pytest.approx(11.04)
    assert ten["err"] == pytest.approx(5.78)
    assert ten["bias"] == pytest.approx(-0.5)
    assert ten["pull"] == pytest.approx(-5.0 / 5.78)
    assert ten["mean_ln_ratio"] == pytest.approx(math.log(1.2) / 2)


def test_per_mass_summary_single_estimate():
    """One estimate: err 0, so the pull is +-inf off the truth and 0 on it; the standard error
    of the mean ln ratio is inf. Nothing is NaN."""
    table = stats.per_mass_summary(m_true=[1.0, 2.0, 4.0], m_est=[1.5, 2.0, 3.0])
    assert table["err"].tolist() == [0.0, 0.0, 0.0]
    assert table["pull"].tolist() == [math.inf, 0.0, -math.inf]
    assert np.all(np.isinf(table["mean_ln_ratio_err"]))
    assert not table.isna().any().any()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m_true": [], "m_est": []}, "m_true is empty"),
        ({"m_true": [1.0, 2.0], "m_est": [1.0]}, "m_true .* m_est"),
        ({"m_true": [1.0, np.nan], "m_est": [1.0, 1.0]}, "m_true has 1 non-finite"),
        ({"m_true": [1.0, 0.0], "m_est": [1.0, 1.0]}, "m_true has 1 values <= 0"),
        ({"m_true": [1.0, 10.0, 10.0], "m_est": [1.0, np.nan, np.inf]}, "m_true=10"),
    ],
)
def test_per_mass_summary_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.per_mass_summary(**kwargs)


# --- gaussian_fit / histogram_gaussian ----------------------------------------------------


def test_gaussian_fit_recovers_gaussian():
    """Mean and width of Gaussian draws; bootstrap errors ~ sigma/sqrt(n), sigma/sqrt(2n)."""
    n, mu, sigma = 4000, 0.03, 0.2
    values = np.random.default_rng(2).normal(mu, sigma, n)
    fit = stats.gaussian_fit(values, n_boot=1000, seed=5)
    assert set(fit) == {"mean", "mean_err", "sigma", "sigma_err", "n", "n_dropped"}
    assert fit["n"] == n and fit["n_dropped"] == 0
    # ML values are the sample mean and the ddof=0 standard deviation, exactly.
    assert fit["mean"] == pytest.approx(values.mean(), rel=EXACT_RTOL)
    assert fit["sigma"] == pytest.approx(values.std(ddof=0), rel=EXACT_RTOL)
    assert abs(fit["mean"] - mu) < N_SIGMA * sigma / math.sqrt(n)
    assert abs(fit["sigma"] - sigma) < N_SIGMA * sigma / math.sqrt(2 * n)
    assert fit["mean_err"] == pytest.approx(sigma / math.sqrt(n), rel=BOOTSTRAP_RTOL)
    assert fit["sigma_err"] == pytest.approx(sigma / math.sqrt(2 * n), rel=BOOTSTRAP_RTOL)
    # Deterministic given the seed.
    assert stats.gaussian_fit(values, n_boot=1000, seed=5) == fit


def test_gaussian_fit_drops_and_counts_nonfinite():
    values = [1.0, 2.0, np.nan, 3.0, 4.0, np.inf, -np.inf]
    fit = stats.gaussian_fit(values, n_boot=50)
    assert fit["n"] == 4 and fit["n_dropped"] == 3
    assert fit["mean"] == pytest.approx(2.5)
    assert fit["sigma"] == pytest.approx(math.sqrt(1.25))
    assert all(math.isfinite(v) for v in fit.values())


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([], {}, "values is empty"),
        ([np.nan, np.nan], {}, "values has 0 finite"),
        ([1.0, np.nan], {}, "values has 1 finite"),
        ([1.0, 2.0], {"n_boot": 1}, "n_boot"),
    ],
)
def test_gaussian_fit_errors(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.gaussian_fit(values, **kwargs)


def test_histogram_gaussian():
    """The curve is n times the Gaussian's probability per bin; counts follow it."""
    n, mu, sigma = 20_000, -0.05, 0.2
    values = np.append(np.random.default_rng(3).normal(mu, sigma, n), np.nan)
    edges = np.linspace(-1.05, 0.95, 41)  # +-5 sigma
    centres, counts, curve = stats.histogram_gaussian(values, bins=edges, mean=mu, sigma=sigma)
    np.testing.assert_allclose(centres, 0.5 * (edges[1:] + edges[:-1]), rtol=EXACT_RTOL)
    assert counts.sum() == n  # the NaN is left out
    dist = NormalDist(mu, sigma)
    expected = n * np.diff([dist.cdf(e) for e in edges])
    np.testing.assert_allclose(curve, expected, rtol=1e-9, atol=1e-9)
    assert curve.sum() == pytest.approx(n, rel=1e-5)  # +-5 sigma holds all but 6e-7
    # Poisson: every bin within N_SIGMA sqrt(expected) (+1 for the near-empty tails).
    assert np.all(np.abs(counts - curve) < N_SIGMA * np.sqrt(curve) + 1)

    # Default: the ML fit of the finite values.
    _, _, default_curve = stats.histogram_gaussian(values, bins=edges)
    fitted = NormalDist(np.nanmean(values), np.nanstd(values))
    np.testing.assert_allclose(
        default_curve, n * np.diff([fitted.cdf(e) for e in edges]), rtol=1e-9, atol=1e-9
    )


def test_histogram_gaussian_errors():
    with pytest.raises(ValueError, match="values"):
        stats.histogram_gaussian([np.nan], bins=5)
    with pytest.raises(ValueError, match="sigma"):
        stats.histogram_gaussian([1.0, 2.0], bins=5, sigma=0.0)


# --- integrated_signal / log_slope / scatter_floor ---------------------------------------


def test_integrated_signal():
    maps = -np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    signal = stats.integrated_signal(maps)
    assert signal.shape == (2, 3)
    np.testing.assert_allclose(signal, -maps.sum(axis=(-2, -1)))
    assert np.all(signal >= 0)


@pytest.mark.parametrize("maps", [np.ones(4), np.ones((0, 3)), np.array([[1.0, np.nan]])])
def test_integrated_signal_errors(maps):
    with pytest.raises(ValueError, match="sz_maps"):
        stats.integrated_signal(maps)


def test_log_slope_exact_power_law():
    x = np.arange(1.0, 9.0)
    fit = stats.log_slope(x=x, y=3.0 * x**1.7)
    assert set(fit) == {"slope", "intercept", "slope_err", "scatter"}
    assert fit["slope"] == pytest.approx(1.7, rel=EXACT_RTOL)
    assert fit["intercept"] == pytest.approx(math.log(3.0), rel=EXACT_RTOL)
    assert fit["scatter"] == pytest.approx(0.0, abs=EXACT_RTOL)
    assert fit["slope_err"] == pytest.approx(0.0, abs=EXACT_RTOL)


def test_log_slope_noisy_power_law():
    """Lognormal scatter 0.1 about y = 3 x^1.7 at 8 masses, 50 maps each: the slope within its
    error, the residual rms close to the scatter (~1/sqrt(2 * 400) = 3.5% precision)."""
    x = np.repeat(np.arange(1.0, 9.0), 50)
    y = 3.0 * x**1.7 * np.exp(0.1 * np.random.default_rng(4).standard_normal(x.size))
    fit = stats.log_slope(x=x, y=y)
    assert abs(fit["slope"] - 1.7) < N_SIGMA * fit["slope_err"]
    assert fit["scatter"] == pytest.approx(0.1, rel=BOOTSTRAP_RTOL)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "x needs at least 2 distinct"),
        ([1.0, 2.0], [1.0, 2.0], "at least 3 points"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], r"x \(3,\) and y \(2,\)"),
        ([1.0, 2.0, 3.0], [1.0, -2.0, 3.0], "y has 1 values <= 0"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "x has 1 non-finite"),
        ([], [], "x is empty"),
    ],
)
def test_log_slope_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        stats.log_slope(x=x, y=y)


def test_scatter_floor():
    assert stats.scatter_floor(sigma_int=0.2, slope=1.6) == pytest.approx(0.125)
    assert stats.scatter_floor(sigma_int=0.2, slope=-1.6) == pytest.approx(0.125)
    # sqrt(0.125^2 + 0.3^2) = sqrt(0.105625) = 0.325
    assert stats.scatter_floor(sigma_int=0.2, slope=1.6, noise_floor=0.3) == pytest.approx(0.325)
    assert stats.scatter_floor(sigma_int=0.0, slope=1.6, noise_floor=0.3) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma_int": 0.2, "slope": 0.0}, "slope"),
        ({"sigma_int": 0.2, "slope": np.nan}, "slope"),
        ({"sigma_int": -0.1, "slope": 1.6}, "sigma_int"),
        ({"sigma_int": 0.2, "slope": 1.6, "noise_floor": -1.0}, "noise_floor"),
    ],
)
def test_scatter_floor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.scatter_floor(**kwargs)


# --- prior_pull / grid_attraction ---------------------------------------------------------

GRID = [4.0, 1.0, 2.0]  # order does not matter


def test_prior_pull_nearest_in_ln_m():
    # 1.45 is nearer 2 in ln M (0.322 vs 0.372), 1.4 nearer 1 (0.336 vs 0.357), 3 nearer 4.
    m_est = np.array([[1.1, 1.45, 1.4], [3.0, 5.0, 0.5]])
    nearest = np.array([[1.0, 2.0, 1.0], [4.0, 4.0, 1.0]])
    pull = stats.prior_pull(m_est=m_est, grid_masses=GRID)
    assert pull.shape == (2, 3)
    np.testing.assert_allclose(pull, np.log(m_est / nearest), rtol=EXACT_RTOL)
    np.testing.assert_allclose(stats.prior_pull(m_est=[3.0], grid_masses=[2.0]), [math.log(1.5)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m_est": [1.0, np.nan], "grid_masses": GRID}, "m_est"),
        ({"m_est": [1.0, 0.0], "grid_masses": GRID}, "m_est"),
        ({"m_est": [], "grid_masses": GRID}, "m_est"),
        ({"m_est": [1.0], "grid_masses": []}, "grid_masses"),
        ({"m_est": [1.0], "grid_masses": [1.0, -2.0]}, "grid_masses"),
    ],
)
def test_prior_pull_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.prior_pull(**kwargs)


def smooth_fraction(ln_est, grid, tol):
    """Probability that a lognormal with the sample's ML parameters puts within +-tol of a grid
    mass (windows disjoint here)."""
    dist = NormalDist(float(np.mean(ln_est)), float(np.std(ln_est)))
    return sum(dist.cdf(math.log(g * (1 + tol))) - dist.cdf(math.log(g * (1 - tol))) for g in grid)


def test_grid_attraction():
    rng = np.random.default_rng(6)
    grid = [1.0, 2.0, 3.0, 4.0, 5.0]
    # 2.5: every estimate pinned to 2 or 3 (the learned prior), plus 2 NaN.
    pinned = np.array([2.0, 3.0] * 500 + [np.nan, np.nan])
    # 4: a smooth lognormal of width 0.3, no attraction.
    smooth = lognormal(rng, 4.0, mu=0.0, sigma=0.3, n=20_000)
    # 5: every estimate exactly on the grid mass (zero width: the smooth law is a delta).
    exact = np.full(10, 5.0)
    m_true = np.repeat([2.5, 4.0, 5.0], [pinned.size, smooth.size, exact.size])
    m_est = np.concatenate([pinned, smooth, exact])
    table = stats.grid_attraction(m_true=m_true, m_est=m_est, grid_masses=grid)
    assert list(table.columns) == [
        "m_true",
        "n",
        "n_nonfinite",
        "nearest_grid",
        "frac_near_grid",
        "frac_smooth",
        "excess",
        "excess_err",
        "median_abs_grid_distance",
    ]
    assert not table.isna().any().any()
    pin, smo, exa = (table.iloc[i] for i in range(3))

    assert pin["n"] == 1000 and pin["n_nonfinite"] == 2
    assert pin["nearest_grid"] == 3.0  # ln 3 - ln 2.5 = 0.18 < ln 2.5 - ln 2 = 0.22
    assert pin["frac_near_grid"] == 1.0
    p = smooth_fraction(np.log(pinned[:-2]), grid, 0.05)
    assert pin["frac_smooth"] == pytest.approx(p, rel=1e-9)
    assert pin["excess"] == pytest.approx(1.0 - p, rel=1e-9)
    assert pin["excess"] > 10 * pin["excess_err"]
    assert pin["median_abs_grid_distance"] == 0.0

    p = smooth_fraction(np.log(smooth), grid, 0.05)
    assert smo["frac_smooth"] == pytest.approx(p, rel=1e-9)
    assert smo["excess_err"] == pytest.approx(math.sqrt(p * (1 - p) / smooth.size))
    assert abs(smo["excess"]) < N_SIGMA * smo["excess_err"]

    assert exa["frac_near_grid"] == 1.0 and exa["frac_smooth"] == 1.0
    assert exa["excess"] == 0.0 and exa["excess_err"] == 0.0


def test_grid_attraction_overlapping_windows_count_once():
    """Grid masses 4% apart: their +-5% windows overlap and are merged, so the smooth fraction
    of a narrow distribution between them is ~1, not ~2."""
    m_est = 1.02 * np.exp(0.001 * np.random.default_rng(7).standard_normal(1000))
    table = stats.grid_attraction(m_true=np.ones(1000), m_est=m_est, grid_masses=[1.0, 1.04])
    assert table["frac_near_grid"].iloc[0] == 1.0
    assert table["frac_smooth"].iloc[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"m_true": [1.0], "m_est": [1.0, 2.0], "grid_masses": GRID}, "m_true"),
        ({"m_true": [], "m_est": [], "grid_masses": GRID}, "m_true"),
        ({"m_true": [1.0], "m_est": [np.nan], "grid_masses": GRID}, "m_true=1"),
        ({"m_true": [1.0], "m_est": [1.0], "grid_masses": [np.nan]}, "grid_masses"),
        ({"m_true": [1.0], "m_est": [1.0], "grid_masses": GRID, "tolerance": 1.0}, "tolerance"),
    ],
)
def test_grid_attraction_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.grid_attraction(**kwargs)


def test_tables_are_dataframes():
    kw = {"m_true": [1.0, 1.0, 2.0, 2.0], "m_est": [0.9, 1.1, 1.8, 2.3]}
    assert isinstance(stats.per_mass_summary(**kw), pd.DataFrame)
    assert isinstance(stats.grid_attraction(**kw, grid_masses=[1.0, 2.0]), pd.DataFrame)
