"""Evaluation by redshift (issue 16) on synthetic predictions with a known answer: a network
biased +0.05 in ln M at z > 1 only, beside an unbiased filter whose S/N drops below 5 at
z >= 1.2. The noise comes in antithetic pairs (two maps of one z and mass, ln ratios
bias +- e), so every bin's mean ln ratio is its bias exactly; and a fixed-z run's summary is
what it was before the block existed."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from szmass.report import claims as cl
from szmass.report import figures_redshift
from szmass.report import redshift as rz
from szmass.report import summary as sm

BIAS = 0.05  # the network's ln-M bias at z > Z_BIASED
Z_BIASED = 1.0
Z_LOW_SNR = 1.2  # the filter's S/N is 3 from here up, 8 below
SIGMA_NET, SIGMA_MF = 0.15, 0.16
#: A fitted width of ~900 maps is within ~2.4% of its sigma (1 / sqrt(2 n)); 3 sigma.
WIDTH_RTOL = 0.075
#: Coverage of a z bin's ~460 map pairs (a pair's two maps are inside or outside together)
#: scatters by sqrt(0.68 * 0.32 / 460) = 0.022; 3 sigma.
COVERAGE_TOL = 0.07
FIT = functools.partial(sm.ln_ratio_fit, n_boot=50, seed=0)


def _table(z, m, ln_ratio, *, sigma, snr=None):
    """A predictions table with intervals of ln-width ``sigma`` about each estimate."""
    est = m * np.exp(ln_ratio)
    t = pd.DataFrame(
        {
            "shard": "x",
            "realization": np.arange(z.size),
            "cluster_id": np.arange(z.size),
            "z": z,
            "ln_scatter": 0.0,
            "m200c_true": m,
            "m200c_est": est,
            "m200c_lo2p5": est * np.exp(-1.96 * sigma),
            "m200c_lo16": est * np.exp(-sigma),
            "m200c_hi84": est * np.exp(sigma),
            "m200c_hi97p5": est * np.exp(1.96 * sigma),
            "sigma_ln": sigma,
        }
    )
    if snr is not None:
        t["snr"] = snr
    return t


def _pairs(rng, n_pairs, masses=None, z=(0.2, 1.5)):
    """(z, M, e) of ``n_pairs`` map pairs: each pair shares z and M and has noise +e, -e."""
    zz = rng.uniform(*z, n_pairs)
    if masses is None:
        m = rng.uniform(2e14, 7e14, n_pairs)
    else:
        m = np.repeat(np.asarray(masses) * 1e14, n_pairs // len(masses))
    e = rng.standard_normal(n_pairs)
    return np.repeat(zz, 2), np.repeat(m, 2), np.concatenate([e, -e]).reshape(2, -1).T.ravel()


def _set(rng, n_pairs, masses=None, z=(0.2, 1.5)):
    """The network's and the filter's tables of one set (the same maps)."""
    zz, m, e = _pairs(rng, n_pairs, masses, z)
    e_mf = _pairs(rng, n_pairs, masses, z)[2]
    net = _table(zz, m, np.where(zz > Z_BIASED, BIAS, 0.0) + SIGMA_NET * e, sigma=SIGMA_NET)
    snr = np.where(zz >= Z_LOW_SNR, 3.0, 8.0)
    mf = _table(zz, m, SIGMA_MF * e_mf, sigma=SIGMA_MF, snr=snr)
    return net, mf


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(3)
    net, mf = {}, {}
    net["scatter0.2"], mf["scatter0.2"] = _set(rng, 3000)
    net["trained"], mf["trained"] = _set(rng, 2000, masses=(2, 4))
    return {"network": net, "matched_filter": mf}


@pytest.fixture(scope="module")
def block(tables):
    return rz.redshift_summary(tables, sm.GRID_SETS, fit=FIT)


def test_default_edges_are_round_and_merge_a_thin_end_bin():
    np.testing.assert_allclose(
        rz.redshift_edges([0.2003, 0.9, 1.4995]), [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5]
    )
    np.testing.assert_allclose(rz.redshift_edges([0.3, 1.0]), [0.3, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(rz.redshift_edges([0.65, 0.75]), [0.65, 0.75])
    np.testing.assert_allclose(rz.redshift_edges([0.2, 1.5], width=0.5), [0.2, 0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="width"):
        rz.redshift_edges([0.2, 1.5], width=0)


def test_the_block_covers_each_set_in_every_z_and_mass_bin(block):
    assert block["edges"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5])
    assert set(block["sets"]) == {"scatter0.2", "trained"}
    scatter = block["sets"]["scatter0.2"]["bins"]
    assert {b["mass_bin"] for b in scatter} == {"all", "2-3", "3-4", "4-5", "5-6", "6-7"}
    assert {b["z_bin"] for b in scatter} == {"0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1", "1-1.2"} | {
        "1.2-1.5"
    }
    trained = block["sets"]["trained"]["bins"]
    assert {b["mass_bin"] for b in trained} == {"all", "2", "4"}
    for b in scatter + trained:
        assert b["network"]["n"] == b["matched_filter"]["n"] == b["n"] >= 20


def test_the_bias_is_found_at_z_above_1_and_nowhere_else(block):
    for name in ("scatter0.2", "trained"):
        for b in block["sets"][name]["bins"]:
            want = BIAS if b["z_lo"] >= Z_BIASED else 0.0
            assert b["network"]["mean"] == pytest.approx(want, abs=1e-9), (name, b["z_bin"])
            assert b["matched_filter"]["mean"] == pytest.approx(0.0, abs=1e-9)


def test_widths_coverage_and_snr_per_bin(block):
    for b in block["sets"]["scatter0.2"]["bins"]:
        net, mf = b["network"], b["matched_filter"]
        if b["mass_bin"] == "all":
            assert net["sigma"] == pytest.approx(SIGMA_NET, rel=WIDTH_RTOL)
            assert mf["sigma"] == pytest.approx(SIGMA_MF, rel=WIDTH_RTOL)
            assert net["robust_half_width"] == pytest.approx(SIGMA_NET, rel=2 * WIDTH_RTOL)
            assert mf["coverage_68"] == pytest.approx(0.683, abs=COVERAGE_TOL)
            assert mf["coverage_95"] == pytest.approx(0.954, abs=COVERAGE_TOL)
        assert 0 <= net["coverage_68"] <= net["coverage_95"] <= 1
        assert mf["median_snr"] == (3.0 if b["z_lo"] >= Z_LOW_SNR else 8.0)
        assert "median_snr" not in net


def test_target_bins_flag_the_biased_bin_and_skip_the_faint_one(block):
    bins = {b["z_bin"]: b for b in rz.target_bins(block["sets"]["scatter0.2"]["bins"])}
    assert list(bins) == ["0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1", "1-1.2", "1.2-1.5"]
    assert not bins["1.2-1.5"]["assessed"]  # S/N 3: biased too, but not judged
    assert [z for z, b in bins.items() if b["assessed"] and not b["bias_ok"]] == ["1-1.2"]
    assert all(b["width_ok"] for b in bins.values())


def _summary(block):
    return {"redshift": block}


def test_claim_differs_on_the_biased_bin_and_names_it(block):
    (row,) = cl.redshift_claims(_summary(block))
    assert row["verdict"] == "differs"
    assert "4 of 5 z bins within" in row["ours"] and "1-1.2 (bias +0.050)" in row["ours"]
    assert "1.2-1.5 (S/N 3.0)" in row["note"]


def test_claim_agrees_without_the_bias_and_differs_on_a_wide_bin(tables):
    rng = np.random.default_rng(4)
    net, mf = _set(rng, 3000, z=(0.2, 0.95))  # no map above z = 1: no bias
    fair = {"network": {"scatter0": net}, "matched_filter": {"scatter0": mf}}
    (row,) = cl.redshift_claims(_summary(rz.redshift_summary(fair, sm.GRID_SETS, fit=FIT)))
    assert row["verdict"] == "agrees", row
    wide = net.assign(m200c_est=net["m200c_true"] * (net["m200c_est"] / net["m200c_true"]) ** 2)
    worse = {"network": {"scatter0": wide}, "matched_filter": {"scatter0": mf}}
    (row,) = cl.redshift_claims(_summary(rz.redshift_summary(worse, sm.GRID_SETS, fit=FIT)))
    assert row["verdict"] == "differs" and "outside: " in row["ours"], row
    assert all("width ratio" in part for part in row["ours"].split("outside: ")[1].split("), "))


def test_claim_not_assessed_where_the_filter_sees_nothing(tables):
    faint = tables["matched_filter"]["scatter0.2"].assign(snr=2.0)
    block = rz.redshift_summary(
        {"network": tables["network"], "matched_filter": {"scatter0.2": faint}},
        sm.GRID_SETS,
        fit=FIT,
    )
    (row,) = cl.redshift_claims(_summary(block))
    assert row["verdict"] == cl.NOT_ASSESSED and "S/N > 5" in row["note"]


def test_snr_from_amplitude_and_its_noise():
    t = pd.DataFrame({"amplitude": [2.0, 9.0], "amplitude_err": [1.0, 1.5]})
    np.testing.assert_allclose(rz.signal_to_noise(t), [2.0, 6.0])
    assert rz.signal_to_noise(t.assign(snr=[1.0, 1.0]))[1] == 1.0
    assert rz.signal_to_noise(pd.DataFrame({"m200c_est": [1.0]})) is None


def test_no_block_for_fixed_z_or_the_realistic_set(tables):
    fixed = {e: {n: t.assign(z=0.7) for n, t in by.items()} for e, by in tables.items()}
    assert rz.redshift_summary(fixed, sm.GRID_SETS, fit=FIT) is None
    real = {"network": {"realistic": tables["network"]["scatter0.2"]}, "matched_filter": {}}
    assert rz.redshift_summary(real, sm.GRID_SETS, fit=FIT) is None
    assert rz.markdown_lines(None) == []


def _write_run(tmp_path, tables):
    """The predictions of ``tables`` and a training record in ``tmp_path``; summarize's
    keyword arguments for them."""
    paths = {}
    for estimator, by_set in tables.items():
        paths[estimator] = {}
        for name, t in by_set.items():
            path = tmp_path / estimator / f"{name}.csv"
            path.parent.mkdir(exist_ok=True)
            t.to_csv(path, index=False)
            paths[estimator][name] = str(path)
    (tmp_path / "model.json").write_text(json.dumps({"best_epoch": 5, "stopped_early": True}))
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.1\n2,0.1\n")
    return {
        "predictions": paths["network"],
        "baseline_predictions": paths["matched_filter"],
        "maps": [],
        "no_scatter_shard": None,
        "sigma_int": 0.2,
        "model_summary": str(tmp_path / "model.json"),
        "history": str(tmp_path / "history.csv"),
        "max_epochs": 100,
        "train_masses_1e14": (2, 4),
        "n_boot": 50,
    }


def _outputs(tmp_path, prefix):
    return {
        f"out_{k}": str(tmp_path / f"{prefix}{name}")
        for k, name in (
            ("json", "summary.json"),
            ("markdown", "summary.md"),
            ("per_mass", "per_mass.csv"),
            ("claims", "claims.csv"),
        )
    }


def test_summary_gains_the_block_its_table_and_claim(tmp_path, tables):
    summary = sm.summarize(**_write_run(tmp_path, tables), **_outputs(tmp_path, ""))
    assert set(summary["redshift"]["sets"]) == {"scatter0.2", "trained"}
    row = next(c for c in summary["claims"] if c["claim"].startswith("scatter0.2: bias and"))
    assert row["verdict"] == "differs"
    md = (tmp_path / "summary.md").read_text()
    assert "## scatter0.2: ln(M_est/M_true) by redshift" in md
    assert "| 1-1.2 | all |" in md and "| +0.050 ± " in md
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["redshift"]["edges"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5])


def test_fixed_z_summary_is_unchanged(tmp_path, tables, monkeypatch):
    """At one z the summary's files are byte for byte those of a summary without the block."""
    fixed = {e: {n: t.assign(z=0.7) for n, t in by.items()} for e, by in tables.items()}
    args = _write_run(tmp_path, fixed)
    with_block = sm.summarize(**args, **_outputs(tmp_path, "a_"))
    monkeypatch.setattr(cl, "CLAIMS", tuple(c for c in cl.CLAIMS if c is not cl.redshift_claims))
    monkeypatch.setattr(sm, "redshift_summary", lambda *a, **k: None)
    monkeypatch.setattr(sm, "redshift_markdown_lines", lambda block: [])
    without = sm.summarize(**args, **_outputs(tmp_path, "b_"))
    assert "redshift" not in with_block
    assert with_block["claims"] == without["claims"]
    for name in ("summary.json", "summary.md", "per_mass.csv", "claims.csv"):
        assert (tmp_path / f"a_{name}").read_bytes() == (tmp_path / f"b_{name}").read_bytes()


def test_figure_writes_its_files(tmp_path, block):
    out = [str(tmp_path / "fig9.png"), str(tmp_path / "fig9.pdf")]
    figures_redshift.figure_redshift(summary={"redshift": block}, out_paths=out, dpi=40)
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("fig9.png", "fig9.pdf"))
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(sm._plain({"redshift": block})))
    figures_redshift.figure_redshift(summary=str(path), out_paths=out[:1], dpi=40)
    with pytest.raises(ValueError, match="one z"):
        figures_redshift.figure_redshift(summary={}, out_paths=out, dpi=40)


def test_a_set_too_small_for_a_z_bin_gets_no_rows_and_an_empty_panel(tmp_path, tables):
    rng = np.random.default_rng(5)
    few = dict(zip(("network", "matched_filter"), _set(rng, 8), strict=True))
    both = {e: {**tables[e], "scatter0": few[e]} for e in tables}
    block = rz.redshift_summary(both, sm.GRID_SETS, fit=FIT)
    assert block["sets"]["scatter0"]["bins"] == []
    assert [r["ours"] for r in cl.redshift_claims(_summary(block))][0].startswith("4 of 5")
    out = [str(tmp_path / "fig9.png")]
    figures_redshift.figure_redshift(summary={"redshift": block}, out_paths=out, dpi=40)
    assert (tmp_path / "fig9.png").stat().st_size > 1000
