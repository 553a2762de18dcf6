"""szmass.intervals: the belt and the filter's intervals on estimators with a known answer."""

import numpy as np
import pandas as pd
import pytest

from szmass.intervals import (
    belt_intervals,
    belt_pit,
    coverage,
    filter_intervals,
    fit_belt,
)

GRID = np.arange(1, 9) * 1e14  # the training masses
SIGMA = 0.2  # ln M_est scatter of the synthetic estimator


def _estimator(m_true, rng, *, slope=1.0, offset=0.0):
    """ln M_est = offset + slope ln(M / 4e14) + ln 4e14 + N(0, SIGMA): biased and compressed
    when slope != 1, offset != 0."""
    ln = np.log(4e14) + offset + slope * np.log(m_true / 4e14)
    return np.exp(ln + rng.normal(0, SIGMA, m_true.size))


def _binomial_tol(p, n, k=3.5):
    return k * np.sqrt(p * (1 - p) / n)


def _table(m_true, intervals):
    return pd.DataFrame({"m200c_true": m_true, **intervals})


@pytest.mark.parametrize("slope, offset", [(1.0, 0.0), (0.8, -0.1)])
def test_belt_covers_at_trained_and_interpolated_masses(slope, offset):
    rng = np.random.default_rng(1)
    val = np.repeat(GRID, 400)
    belt = fit_belt(val, _estimator(val, rng, slope=slope, offset=offset))
    for masses in (GRID[1:-1], GRID[1:-2] + 0.5e14):  # trained, interpolated: inside the belt
        test = np.repeat(masses, 1000)
        est = _estimator(test, rng, slope=slope, offset=offset)
        table = _table(test, belt_intervals(belt, est))
        cov = coverage(table, pit=belt_pit(belt, test, est))
        assert cov["coverage_68"] == pytest.approx(0.6827, abs=_binomial_tol(0.68, test.size))
        assert cov["coverage_95"] == pytest.approx(0.9545, abs=_binomial_tol(0.95, test.size))
        assert cov["pit_ks"] < 0.03
        # the 68% interval is the estimator's width mapped by 1/slope
        assert np.median(table["sigma_ln"]) == pytest.approx(SIGMA / slope, rel=0.1)


def test_belt_over_covers_at_its_edge_masses_where_a_bound_is_open():
    """At the lowest (highest) belt mass nothing below (above) was measured: an estimate low
    in its band gets an open lower bound, so the 68% interval covers ~84% there."""
    rng = np.random.default_rng(7)
    val = np.repeat(GRID, 400)
    belt = fit_belt(val, _estimator(val, rng))
    val = np.repeat(GRID, 4000)
    belt = fit_belt(val, _estimator(val, rng))
    for m in (GRID[0], GRID[-1]):
        test = np.full(4000, m)
        cov = coverage(_table(test, belt_intervals(belt, _estimator(test, rng))))
        assert cov["coverage_68"] == pytest.approx(0.84, abs=_binomial_tol(0.84, test.size))
        assert cov["open_fraction"] == pytest.approx(0.84, abs=_binomial_tol(0.84, test.size))


def test_belt_median_unbiases_a_compressed_estimator():
    rng = np.random.default_rng(2)
    val = np.repeat(GRID, 400)
    belt = fit_belt(val, _estimator(val, rng, slope=0.8, offset=-0.1))
    test = np.repeat(np.array([3e14, 6e14]), 2000)
    est = _estimator(test, rng, slope=0.8, offset=-0.1)
    raw_bias = np.log(est[test == 6e14] / 6e14).mean()
    median = belt_intervals(belt, est)["m200c_belt"]
    for m in (3e14, 6e14):
        assert np.nanmedian(np.log(median[test == m] / m)) == pytest.approx(0.0, abs=0.03)
    assert raw_bias < -0.15  # the raw estimate was biased, so the check can fail


def test_belt_columns_are_ordered_positive_and_open_beyond_the_range():
    rng = np.random.default_rng(3)
    val = np.repeat(GRID, 200)
    belt = fit_belt(val, _estimator(val, rng))
    est = np.array([0.0, -1e13, 3e13, 1e14, 4e14, 8e14, 2e15, np.nan])
    iv = belt_intervals(belt, est)
    order = ["m200c_lo2p5", "m200c_lo16", "m200c_belt", "m200c_hi84", "m200c_hi97p5"]
    inside = np.isfinite(iv["m200c_belt"])
    for lo, hi in zip(order[:-1], order[1:], strict=True):
        assert np.all(iv[lo][inside] <= iv[hi][inside])
    assert np.all(iv["m200c_lo16"][:7] <= iv["m200c_hi84"][:7])
    assert all(np.all(iv[c][:7] >= 0) for c in order if c != "m200c_belt")
    # far above the largest calibrated mass: the upper bounds are open
    assert np.isinf(iv["m200c_hi84"][6]) and np.isinf(iv["m200c_hi97p5"][6])
    assert iv["m200c_lo16"][6] > 7e14
    # an estimate <= 0 (or NaN): below every band: only an upper bound
    assert iv["m200c_lo2p5"][0] == 0 and iv["m200c_lo16"][1] == 0
    assert 0 < iv["m200c_hi97p5"][0] < 2e14 and np.isnan(iv["m200c_belt"][0])
    assert all(np.isnan(iv[c][7]) for c in order)  # no estimate, no interval


def test_belt_refuses_too_few_masses_or_maps():
    with pytest.raises(ValueError, match="2 or more masses"):
        fit_belt(np.full(50, 1e14), np.full(50, 1e14))
    with pytest.raises(ValueError, match="has 2"):
        fit_belt(np.repeat([1e14, 2e14], [50, 2]), np.ones(52) * 1e14)


def _filter_maps(m_true, rng, *, sigma_int, snr_at_4e14=6.0):
    """Amplitudes of a filter with the calibration ln M = a + b ln A: A(M) e^d + noise."""
    calibration = {"a": np.log(4e14), "b": 0.6}
    mean = np.exp((np.log(m_true) - calibration["a"]) / calibration["b"])  # A(4e14) = 1
    amp = mean * np.exp(rng.normal(0, sigma_int, m_true.size))
    sigma = 1.0 / snr_at_4e14
    return amp + rng.normal(0, sigma, m_true.size), sigma, calibration


@pytest.mark.parametrize("sigma_int", [0.2, 0.0])
@pytest.mark.parametrize("m", [1.5e14, 4e14, 9e14])  # S/N ~1.2, 6, 23 at sigma_int 0
def test_filter_intervals_cover_at_every_mass(sigma_int, m):
    rng = np.random.default_rng(4)
    m_true = np.full(3000, m)
    amp, sigma, cal = _filter_maps(m_true, rng, sigma_int=sigma_int)
    iv = filter_intervals(amp, sigma, cal, sigma_int=sigma_int, m200c_true=m_true)
    cov = coverage(_table(m_true, iv), pit=iv["pit"])
    assert cov["coverage_68"] == pytest.approx(0.6827, abs=_binomial_tol(0.68, m_true.size))
    tol = _binomial_tol(0.95, m_true.size)
    # at S/N ~1 a tenth of the amplitudes are <= 0, one outcome: the belt is conservative there
    over = 0.03 if m < 2e14 else 0.0
    assert 0.9545 - tol <= cov["coverage_95"] <= 0.9545 + tol + over
    # KS at 3000 draws: 0.025 (95%), plus the belt's linear steps between its levels
    assert cov["pit_ks"] < 0.05
    assert np.all(iv["m200c_lo16"] >= 0) and not np.isnan(iv["m200c_hi84"]).any()


def test_filter_interval_at_high_snr_is_the_scatter_mapped_by_b():
    """S/N 1000 at 4e14: the interval's half-width in ln M is b sigma_int."""
    rng = np.random.default_rng(5)
    m_true = np.full(400, 4e14)
    amp, sigma, cal = _filter_maps(m_true, rng, sigma_int=0.2, snr_at_4e14=1000.0)
    iv = filter_intervals(amp, sigma, cal, sigma_int=0.2)
    assert np.median(iv["sigma_ln"]) == pytest.approx(0.6 * 0.2, rel=0.05)
    assert "pit" not in iv


def test_a_non_detection_gets_an_upper_limit():
    cal = {"a": np.log(4e14), "b": 0.6}
    iv = filter_intervals(np.array([-0.1, 0.0]), 1 / 6, cal, sigma_int=0.2)
    assert np.all(iv["m200c_lo2p5"] == 0) and np.all(iv["m200c_lo16"] == 0)
    assert np.all((iv["m200c_hi84"] > 1e14) & (iv["m200c_hi84"] < 4e14))


def test_coverage_of_gaussian_intervals_with_a_known_sigma():
    rng = np.random.default_rng(6)
    m_true = np.full(20000, 3e14)
    ln_est = np.log(m_true) + rng.normal(0, 0.3, m_true.size)
    table = pd.DataFrame(
        {
            "m200c_true": m_true,
            "m200c_lo16": np.exp(ln_est - 0.3),
            "m200c_hi84": np.exp(ln_est + 0.3),
            "m200c_lo2p5": np.exp(ln_est - 1.96 * 0.3),
            "m200c_hi97p5": np.exp(ln_est + 1.96 * 0.3),
            "sigma_ln": np.full(m_true.size, 0.3),
        }
    )
    cov = coverage(table, pit=rng.uniform(size=m_true.size))
    assert cov["coverage_68"] == pytest.approx(0.6827, abs=0.012)
    assert cov["coverage_95"] == pytest.approx(0.95, abs=0.006)
    assert cov["median_width_68_ln"] == pytest.approx(0.6)
    assert cov["pit_ks"] < 0.015 and sum(cov["pit_histogram"]) == m_true.size
    # a PIT piled at 0.5 is far from flat
    assert coverage(table, pit=np.full(100, 0.5))["pit_ks"] == pytest.approx(0.5, abs=0.01)
