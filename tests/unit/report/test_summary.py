"""The run summary on synthetic predictions with known answers: per-mass numbers, scatter fits,
the network-vs-filter comparison and the claims' verdicts."""

import json

import numpy as np
import pandas as pd
import pytest

from szmass.report import claims
from szmass.report import summary as sm

TRAINED = (1.0, 2.0, 4.0, 8.0)
N = 4000
#: Statistical tolerance on a width or a fraction estimated from N = 4000 draws (~3 sigma).
WIDTH_RTOL = 0.05


def _table(masses, ln_sigma, *, rng, bias=0.0, n=N):
    m_true = np.repeat(np.asarray(masses) * 1e14, n)
    m_est = m_true * np.exp(bias + ln_sigma * rng.standard_normal(m_true.size))
    return pd.DataFrame(
        {
            "shard": "x",
            "realization": np.arange(m_true.size),
            "cluster_id": np.arange(m_true.size),
            "z": 0.7,
            "ln_scatter": 0.0,
            "m200c_true": m_true,
            "m200c_est": m_est,
        }
    )


@pytest.fixture
def run(tmp_path):
    """Predictions of a good network (ln-width 0.1, unbiased) and a worse filter (0.3)."""
    rng = np.random.default_rng(1)
    paths, base = {}, {}
    for name, masses in (("trained", TRAINED), ("extrapolated", (0.5, 10.0))):
        for store, sigma, root in ((paths, 0.1, "net"), (base, 0.3, "mf")):
            path = tmp_path / root / f"{name}.csv"
            path.parent.mkdir(exist_ok=True)
            _table(masses, sigma, rng=rng).to_csv(path, index=False)
            store[name] = str(path)
    for name, sigma_net, sigma_mf in (("scatter0.2", 0.15, 0.25), ("scatter0", 0.05, 0.2)):
        m = rng.uniform(2, 7, N)
        for store, sigma, root in ((paths, sigma_net, "net"), (base, sigma_mf, "mf")):
            t = _table([1.0], sigma, rng=rng)
            t["m200c_true"] = t["m200c_true"] * m
            t["m200c_est"] = t["m200c_est"] * m
            path = tmp_path / root / f"{name}.csv"
            t.to_csv(path, index=False)
            store[name] = str(path)
    (tmp_path / "model.json").write_text(
        json.dumps({"best_epoch": 20, "best_val_loss": 1e-3, "stopped_early": True})
    )
    (tmp_path / "history.csv").write_text(
        "epoch,loss\n" + "".join(f"{e},0.1\n" for e in range(1, 36))
    )
    return tmp_path, _summarize(tmp_path, paths, base)


def _summarize(tmp_path, paths, base, prefix=""):
    """``summarize`` of the tables ``paths`` (network) and ``base`` (filter) in ``tmp_path``,
    its outputs named ``prefix`` + summary.json, per_mass.csv, ..."""
    return sm.summarize(
        predictions=paths,
        baseline_predictions=base,
        maps=[],
        no_scatter_shard=None,
        sigma_int=0.2,
        model_summary=str(tmp_path / "model.json"),
        history=str(tmp_path / "history.csv"),
        max_epochs=200,
        train_masses_1e14=TRAINED,
        out_json=str(tmp_path / f"{prefix}summary.json"),
        out_markdown=str(tmp_path / f"{prefix}summary.md"),
        out_per_mass=str(tmp_path / f"{prefix}per_mass.csv"),
        out_claims=str(tmp_path / f"{prefix}claims.csv"),
        n_boot=200,
    )


def _claim(summary, start):
    return next(c for c in summary["claims"] if c["claim"].startswith(start))


def test_per_mass_numbers(run):
    root, summary = run
    trained = summary["per_mass"]["trained"]
    # lognormal width 0.1: half the 16-84 range over M is sinh(0.1) = 0.1002
    assert trained["max_dm_over_m"] == pytest.approx(np.sinh(0.1), rel=WIDTH_RTOL)
    assert trained["max_abs_pull"] < 0.2
    table = pd.read_csv(root / "per_mass.csv")
    assert set(table["estimator"]) == {"network", "matched_filter"}
    assert len(table) == 2 * (len(TRAINED) + 2)


def test_scatter_fits_and_comparison(run):
    _, summary = run
    fits = summary["scatter"]["fits"]
    assert fits["scatter0.2"]["sigma"] == pytest.approx(0.15, rel=WIDTH_RTOL)
    assert fits["scatter0"]["sigma"] == pytest.approx(0.05, rel=WIDTH_RTOL)
    comp = summary["baseline"]["comparison"]
    assert comp["trained"]["lower_dm_over_m"] == "network"
    assert comp["trained"]["dm_over_m_ratio_network_to_filter"] == pytest.approx(
        np.sinh(0.1) / np.sinh(0.3), rel=WIDTH_RTOL
    )
    assert comp["scatter0.2"]["narrower"] == "network"
    assert summary["baseline"]["scatter_fits"]["scatter0"]["sigma"] == pytest.approx(
        0.2, rel=WIDTH_RTOL
    )


def test_claims_verdicts(run):
    root, summary = run
    assert _claim(summary, "training ends")["verdict"] == "agrees"
    assert _claim(summary, "dM/M on trained")["verdict"] == "agrees"
    assert _claim(summary, "no bias")["verdict"] == "agrees"
    assert _claim(summary, "scatter test, sigma_int = 0.2: width")["verdict"] == "agrees"
    assert _claim(summary, "scatter test without scatter")["verdict"] == "agrees"
    # the extrapolated set is unbiased here, so it is reported, not judged
    assert _claim(summary, "extrapolated")["verdict"] == "n/a"
    md = (root / "summary.md").read_text()
    assert "| dM/M on trained masses |" in md
    assert json.loads((root / "summary.json").read_text())["training"]["epochs_run"] == 35


def test_epoch_cap_and_bias_are_called_out(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "trained.csv"
    _table(TRAINED, 0.1, rng=rng, bias=0.3).to_csv(path, index=False)
    (tmp_path / "model.json").write_text(json.dumps({"best_epoch": 30, "stopped_early": False}))
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.1\n")
    out = sm.summarize(
        predictions={"trained": str(path)},
        maps=[],
        no_scatter_shard=None,
        sigma_int=0.2,
        model_summary=str(tmp_path / "model.json"),
        history=str(tmp_path / "history.csv"),
        max_epochs=30,
        train_masses_1e14=TRAINED,
        out_json=str(tmp_path / "s.json"),
        out_markdown=str(tmp_path / "s.md"),
        out_per_mass=str(tmp_path / "p.csv"),
        out_claims=str(tmp_path / "c.csv"),
    )
    training = _claim(out, "training ends")
    assert training["verdict"] == "differs" and "cap" in training["note"]
    assert _claim(out, "no bias")["verdict"] == "differs"


def test_too_few_positive_estimates_is_said_not_hidden():
    t = _table([2.0], 0.1, rng=np.random.default_rng(3), n=5)
    t["m200c_est"] = [-1.0, -2.0, 0.0, 3e14, -1.0]
    fit = sm.ln_ratio_fit(t, n_boot=50, seed=0)
    assert fit["n_nonpositive"] == 4 and "error" in fit and "sigma" not in fit


def test_empty_predictions_raise(tmp_path):
    path = tmp_path / "empty.csv"
    pd.DataFrame(columns=["m200c_true", "m200c_est"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="empty.csv"):
        sm.read_predictions(path)


def test_rescaling_follows_cluster_keys_not_positions():
    """Real cutouts keep their catalogue rows as keys (2, 5, 9 here): each map's r is its own
    cluster's, whatever the position of the cluster in the shard."""
    import xarray as xr

    ds = xr.Dataset(
        {"cluster_r_measured": ("cluster", [1.1, 1.2, 1.3])}, coords={"cluster": [2, 5, 9]}
    )
    table = pd.DataFrame({"cluster_id": [9, 2, 5, 9], "m200c_est": [1.0, 1.0, 2.0, 3.0]})
    np.testing.assert_allclose(sm.rescaled_estimates(table, ds), [1.3, 1.1, 2.4, 3.9])
    assert sm.cluster_rescaling(ds)[1] == "measured"


def _summarize_edited(tmp_path, edit, name):
    """The summary of the run's network tables after ``edit`` (in place, per table), written
    to ``net_<name>/``, beside the filter's; outputs prefixed ``<name>_``."""
    paths = {}
    for csv_path in sorted((tmp_path / "net").glob("*.csv")):
        t = pd.read_csv(csv_path)
        edit(t)
        out = tmp_path / f"net_{name}" / csv_path.name
        out.parent.mkdir(exist_ok=True)
        t.to_csv(out, index=False)
        paths[csv_path.stem] = str(out)
    base = {p.stem: str(p) for p in (tmp_path / "mf").glob("*.csv")}
    return _summarize(tmp_path, paths, base, prefix=f"{name}_")


def test_calibrated_network_beside_raw_and_filter(run):
    """With ``m200c_cal`` in the network's tables (here the raw estimate divided by its known
    +10% bias), the summary carries the calibrated estimator too: its scatter fits, its
    comparison with the filter and its per-mass rows; the robust widths come with the fits."""
    tmp_path, _ = run

    def edit(t):
        t["m200c_est"] = t["m200c_est"] * np.exp(0.1)
        t["m200c_cal"] = t["m200c_est"] / np.exp(0.1)

    summary = _summarize_edited(tmp_path, edit, "cal")
    raw = summary["scatter"]["fits"]["scatter0"]
    cal = summary["network_calibrated"]["scatter_fits"]["scatter0"]
    assert raw["mean"] == pytest.approx(0.1, abs=0.01)
    assert cal["mean"] == pytest.approx(0.0, abs=0.01)
    # a Gaussian's 16-84% half-width is its sigma
    assert cal["robust_half_width"] == pytest.approx(0.05, rel=WIDTH_RTOL)
    comparison = summary["network_calibrated"]["comparison"]["scatter0"]
    assert comparison["robust_half_width"]["matched_filter"] == pytest.approx(0.2, rel=WIDTH_RTOL)
    per_mass = pd.read_csv(tmp_path / "cal_per_mass.csv")
    assert set(per_mass["estimator"]) == {"network", "network_calibrated", "matched_filter"}
    width_claim = _claim(summary, "network (calibrated) vs matched filter, no scatter: 16-84%")
    assert width_claim["verdict"] == "agrees"
    bias_claim = _claim(summary, "network (calibrated), scatter0: bias")
    assert bias_claim["verdict"] == "agrees"
    assert "mResUNet (calibrated)" in (tmp_path / "cal_summary.md").read_text()


def test_template_readout_is_an_estimator_of_its_own(run):
    """``m200c_tpl`` in the network's tables (here the raw estimate 5% low) is summarised
    beside the raw estimate: its fits, its comparison with the filter, its claims and rows."""
    tmp_path, _ = run

    def edit(t):
        t["m200c_tpl"] = t["m200c_est"] * np.exp(-0.05)

    summary = _summarize_edited(tmp_path, edit, "tpl")
    raw = summary["scatter"]["fits"]["scatter0"]
    tpl = summary["network_template"]["scatter_fits"]["scatter0"]
    assert tpl["mean"] == pytest.approx(raw["mean"] - 0.05, abs=1e-9)
    assert tpl["sigma"] == pytest.approx(raw["sigma"], rel=1e-6)
    assert "scatter0" in summary["network_template"]["comparison"]
    assert "network_calibrated" not in summary  # no m200c_cal column
    per_mass = pd.read_csv(tmp_path / "tpl_per_mass.csv")
    assert set(per_mass["estimator"]) == {"network", "network_template", "matched_filter"}
    bias = _claim(summary, "network (template readout), scatter0: bias")
    assert (bias["verdict"] == "agrees") == (abs(tpl["mean"]) < 0.02)
    assert "mResUNet (template readout)" in (tmp_path / "tpl_summary.md").read_text()


def test_filter_targets_say_where_the_network_is_wider(run):
    """The dM/M-per-mass target names the masses where the network is above the filter."""
    _, summary = run
    claim = _claim(summary, "network: dM/M per mass >= 3e14 vs the filter")
    assert claim["verdict"] == "agrees" and claim["ours"] == "never above"
    sigma = _claim(summary, "network vs matched filter, no scatter: fitted sigma")
    assert sigma["verdict"] == "agrees"


def test_a_fine_tune_is_told_apart_from_the_first_phase(tmp_path):
    """With a fine-tune phase the claim names the first phase's end and the fine-tune."""
    (tmp_path / "model.json").write_text(
        json.dumps(
            {
                "best_epoch": 27,
                "stopped_early": True,
                "pretrain_best_epoch": 18,
                "finetune_epochs": 4,
            }
        )
    )
    rows = "".join(f"{k},0.1\n" for k in range(1, 28))
    (tmp_path / "history.csv").write_text("epoch,loss\n" + rows)
    outcome = sm.training_outcome(str(tmp_path / "model.json"), str(tmp_path / "history.csv"), 40)
    assert outcome["epochs_run"] == 27 and outcome["finetune_epochs"] == 4
    claim = claims.training_claims({"training": outcome})[0]
    # a fine-tune of a set length after an early-stopped first phase: not ended by a rule
    assert claim["verdict"] == "differs"
    assert claim["note"] == "the fine-tune ran its set length, not to a rule"
    assert claim["ours"] == (
        "early stopping after 23 epochs (best 18), then 4 fine-tune epochs (ended by its epoch "
        "count); best epoch 27"
    )
    info = json.loads((tmp_path / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**info, "finetune_stopped_early": True}))
    outcome = sm.training_outcome(str(tmp_path / "model.json"), str(tmp_path / "history.csv"), 40)
    claim = claims.training_claims({"training": outcome})[0]
    assert claim["verdict"] == "agrees" and claim["note"] == ""
    assert "4 fine-tune epochs (ended by early stopping)" in claim["ours"]


def test_a_fine_tune_that_stopped_early_says_so(tmp_path):
    """A first phase that ended on its cap still fails the claim when the fine-tune after it
    ended on its own early stopping: the claim names both ends."""
    (tmp_path / "model.json").write_text(
        json.dumps(
            {
                "best_epoch": 44,
                "stopped_early": False,
                "pretrain_best_epoch": 40,
                "finetune_epochs": 6,
                "finetune_stopped_early": True,
            }
        )
    )
    rows = "".join(f"{k},0.1\n" for k in range(1, 47))
    (tmp_path / "history.csv").write_text("epoch,loss\n" + rows)
    outcome = sm.training_outcome(str(tmp_path / "model.json"), str(tmp_path / "history.csv"), 40)
    claim = claims.training_claims({"training": outcome})[0]
    assert claim["verdict"] == "differs"
    assert claim["ours"] == (
        "epoch cap after 40 epochs (best 40), then 6 fine-tune epochs (ended by early "
        "stopping); best epoch 44"
    )


def test_the_training_time_comes_from_the_benchmark_file(tmp_path):
    """A Snakemake benchmark TSV (the column s) gives the training claim's wall time; 60 min
    is the target; a file without the column is refused by name."""
    (tmp_path / "model.json").write_text(json.dumps({"best_epoch": 3, "stopped_early": True}))
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.3\n2,0.2\n3,0.1\n")
    bench = tmp_path / "train_model.tsv"
    bench.write_text("s\th:m:s\tmax_rss\n2712.5\t0:45:12\t5000.1\n")
    paths = (str(tmp_path / "model.json"), str(tmp_path / "history.csv"), 40)
    outcome = sm.training_outcome(*paths, str(bench))
    assert outcome["wall_minutes"] == pytest.approx(2712.5 / 60)
    time_claim = claims.training_claims({"training": outcome})[1]
    assert (time_claim["ours"], time_claim["verdict"]) == ("45.2 min", "agrees")
    bench.write_text("s\th:m:s\n3660\t1:01:00\n")
    late = claims.training_claims({"training": sm.training_outcome(*paths, str(bench))})[1]
    assert (late["ours"], late["verdict"]) == ("61.0 min", "differs")
    assert len(claims.training_claims({"training": sm.training_outcome(*paths)})) == 1
    bench.write_text("seconds\n12\n")
    with pytest.raises(ValueError, match="train_model.tsv: no 's' column"):
        sm.training_outcome(*paths, str(bench))


def test_extrapolated_masses_name_their_edge_or_the_trained_range():
    """Below the trained range the low edge, above it the high one; a test mass inside the
    range (continuous training masses over 0.5-12e14) is not called pinned to an edge."""
    masses = [{"m_true": m * 1e14, "median": 0.9 * m * 1e14} for m in (0.5, 0.75, 9, 10)]
    summary = {"per_mass": {"extrapolated": {"masses": masses}}}
    grid = claims.extrapolated_claims(summary, train_masses_1e14=[1, 2, 8])[0]
    assert grid["ours"] == (
        "0.5 -> 0.45 (edge 1); 0.75 -> 0.68 (edge 1); 9 -> 8.10 (edge 8); 10 -> 9.00 (edge 8)"
    )
    wide = claims.extrapolated_claims(summary, train_masses_1e14=[0.5, 12])[0]
    assert wide["ours"].startswith("0.5 -> 0.45 (trained range); 0.75 -> 0.68 (trained range)")


def test_sz_residual_and_its_standard_error(tmp_path):
    """The residual ratio is max |mean pred - mean true| / max |mean true|; its standard error
    is read at the pixel of that maximum; maps written without it give none."""
    true = np.zeros((2, 5, 5))
    true[:, 2, 2] = [-40.0, -80.0]
    pred = true.copy()
    pred[0, 1, 3] = 4.0  # 0.1 of the 2e14 peak
    pred[1, 2, 2] = -78.0  # 0.025 of the 4e14 peak
    sem = np.full((2, 5, 5), 0.5)
    sem[0, 1, 3] = 0.2
    np.savez(tmp_path / "a.npz", m200c=[2e14, 4e14], sz_true=true, sz_pred=pred, sz_sem=sem)
    np.savez(tmp_path / "old.npz", m200c=[6e14], sz_true=true[:1], sz_pred=pred[:1])
    ratios, sems = sm.sz_residual_ratios([str(tmp_path / "a.npz"), str(tmp_path / "old.npz")])
    assert ratios == pytest.approx({"2": 0.1, "4": 0.025, "6": 0.1})
    assert sems == pytest.approx({"2": 0.2 / 40, "4": 0.5 / 80})
    claim = claims.sz_map_claim({"sz_residual_ratio": ratios, "sz_residual_sem_ratio": sems})[0]
    assert claim["verdict"] == "differs"
    assert claim["note"] == (
        "at 2e14 the mean residual's standard error there is 5.0e-03 of the signal: the "
        "residual is 20 of them"
    )
