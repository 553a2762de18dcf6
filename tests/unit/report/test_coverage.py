"""The intervals' coverage in the summary, its claims and Figure 8, on synthetic tables whose
intervals are right (or wrong) by construction."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from szmass.report.claims import NOT_ASSESSED, coverage_claims
from szmass.report.coverage import coverage_summary, has_intervals, markdown_lines, set_coverage
from szmass.report.figures import figure_coverage


def _table(m_true, rng, *, sigma=0.2, claimed=0.2):
    """Estimates with ln scatter ``sigma`` and Gaussian intervals that claim ``claimed``."""
    ln_est = np.log(m_true) + rng.normal(0, sigma, m_true.size)
    pit = ndtr((ln_est - np.log(m_true)) / claimed)
    return pd.DataFrame(
        {
            "m200c_true": m_true,
            "m200c_est": np.exp(ln_est),
            "m200c_lo2p5": np.exp(ln_est - 1.96 * claimed),
            "m200c_lo16": np.exp(ln_est - claimed),
            "m200c_hi84": np.exp(ln_est + claimed),
            "m200c_hi97p5": np.exp(ln_est + 1.96 * claimed),
            "sigma_ln": np.full(m_true.size, claimed),
            "pit": pit,
        }
    )


def test_set_coverage_per_grid_mass_and_per_bin():
    rng = np.random.default_rng(0)
    grid = set_coverage(_table(np.repeat([2e14, 4e14], 3000), rng), grid=True)
    assert [b["bin"] for b in grid["bins"]] == ["2", "4"]
    assert grid["coverage_68"] == pytest.approx(0.6827, abs=0.015)
    assert grid["coverage_95"] == pytest.approx(0.9545, abs=0.01)
    assert grid["pit_ks"] < 0.02 and grid["median_width_68_ln"] == pytest.approx(0.4)
    m = np.concatenate([np.full(10, 2.5e14), np.full(500, 4.5e14)])  # 10 < MIN_BIN_MAPS
    binned = set_coverage(_table(m, rng), grid=False)
    assert [b["bin"] for b in binned["bins"]] == ["4-5"]


def test_overconfident_intervals_under_cover():
    cov = set_coverage(
        _table(np.full(4000, 3e14), np.random.default_rng(1), claimed=0.1), grid=True
    )
    assert cov["coverage_68"] == pytest.approx(0.383, abs=0.02)  # P(|z| < 0.5)
    assert cov["pit_ks"] > 0.1


def test_tables_without_intervals_are_left_out():
    rng = np.random.default_rng(2)
    with_iv = _table(np.full(100, 3e14), rng)
    without = with_iv[["m200c_true", "m200c_est"]]
    assert has_intervals(with_iv) and not has_intervals(without)
    block = coverage_summary({"network": {"a": with_iv, "b": without}, "matched_filter": {}}, ())
    assert list(block) == ["network"] and list(block["network"]) == ["a"]
    assert any("| network | a |" in line for line in markdown_lines(block))


def _summary(rng, *, claimed):
    sets = {
        "trained": _table(np.repeat([2e14, 4e14], 2000), rng, claimed=claimed),
        "interpolated": _table(np.repeat([3e14], 2000), rng, claimed=claimed),
        "extrapolated": _table(np.repeat([9e14], 2000), rng, sigma=0.1, claimed=claimed),
        "scatter0.2": _table(rng.uniform(2e14, 7e14, 3000), rng, claimed=claimed),
        "scatter0": _table(rng.uniform(2e14, 7e14, 3000), rng, sigma=0.1, claimed=claimed),
    }
    block = coverage_summary({"network": sets}, ("trained", "interpolated", "extrapolated"))
    return {
        "coverage": block,
        "scatter": {"fits": {"scatter0": {"robust_half_width": 0.1}}},
    }


def test_coverage_claims_agree_for_right_intervals_and_differ_for_wrong_ones():
    rng = np.random.default_rng(3)
    right = {r["claim"]: r for r in coverage_claims(_summary(rng, claimed=0.2))}
    for level in (68, 95):
        assert right[f"mResUNet: {level}% intervals, scatter sets"]["verdict"] == "differs"
        bins = right[f"mResUNet: {level}% intervals, every trained and interpolated mass"]
        assert bins["verdict"] == "agrees", bins
        assert "binomial noise of a 2000-map bin" in bins["note"]
    # the no-scatter set (its estimates spread 0.1, the intervals claim 0.2) over-covers, and
    # its intervals are twice its spread
    width = right["mResUNet: 68% interval width, no-scatter set"]
    assert width["verdict"] == "differs" and "+100%" in width["ours"]
    assert right["mResUNet: 68% intervals at extrapolated masses"]["verdict"] == "agrees"
    wrong = {r["claim"]: r for r in coverage_claims(_summary(rng, claimed=0.1))}
    bins = wrong["mResUNet: 68% intervals, every trained and interpolated mass"]
    assert bins["verdict"] == "differs" and "0 of 3 bins within" in bins["ours"]
    assert wrong["mResUNet: 68% intervals at extrapolated masses"]["verdict"] == "agrees"


def test_a_zero_spread_is_not_assessed():
    summary = _summary(np.random.default_rng(4), claimed=0.2)
    summary["scatter"]["fits"]["scatter0"]["robust_half_width"] = 0.0
    rows = {r["claim"]: r for r in coverage_claims(summary)}
    assert rows["mResUNet: 68% interval width, no-scatter set"]["verdict"] == NOT_ASSESSED


def test_figure_8_is_drawn_from_the_summary(tmp_path):
    summary = _summary(np.random.default_rng(5), claimed=0.2)
    out = tmp_path / "fig8.png"
    figure_coverage(summary=summary, out_paths=[str(out)], dpi=50)
    assert out.stat().st_size > 10_000
