"""The claims' verdicts on meaningless estimates (issue 13, item 8): a smoke-test run assesses
nothing, and a negative or non-finite median estimate is never an agreement."""

import json

import numpy as np
import pandas as pd
import pytest

from szmass.report import summary as sm
from szmass.report.claims import claims

TRAINED = (1.0, 2.0, 4.0)
N = 200


def _write(path, masses, *, scale, rng, spread=0.05):
    """Estimates ``scale`` x M_true with a narrow spread: tiny dM/M and pulls whatever the
    sign of ``scale``."""
    m_true = np.repeat(np.asarray(masses) * 1e14, N)
    m_est = scale * m_true * (1 + spread * rng.standard_normal(m_true.size))
    pd.DataFrame({"m200c_true": m_true, "m200c_est": m_est}).to_csv(path, index=False)
    return str(path)


def _summarize(tmp_path, *, scale, smoke_test=False):
    rng = np.random.default_rng(11)
    paths = {"trained": _write(tmp_path / "trained.csv", TRAINED, scale=scale, rng=rng)}
    m = rng.uniform(2, 7, N)
    t = pd.DataFrame({"m200c_true": m * 1e14})
    t["m200c_est"] = scale * t["m200c_true"] * np.exp(0.01 * rng.standard_normal(N))
    t.to_csv(tmp_path / "scatter0.2.csv", index=False)
    paths["scatter0.2"] = str(tmp_path / "scatter0.2.csv")
    (tmp_path / "model.json").write_text(json.dumps({"best_epoch": 2, "stopped_early": True}))
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.1\n2,0.1\n")
    return sm.summarize(
        predictions=paths,
        maps=[],
        no_scatter_shard=None,
        sigma_int=0.2,
        model_summary=str(tmp_path / "model.json"),
        history=str(tmp_path / "history.csv"),
        max_epochs=2,
        train_masses_1e14=TRAINED,
        out_json=str(tmp_path / "summary.json"),
        out_markdown=str(tmp_path / "summary.md"),
        out_per_mass=str(tmp_path / "per_mass.csv"),
        out_claims=str(tmp_path / "claims.csv"),
        n_boot=20,
        smoke_test=smoke_test,
    )


def _claim(summary, start):
    return next(c for c in summary["claims"] if c["claim"].startswith(start))


def test_negative_medians_never_agree(tmp_path):
    """Estimates of -M_true: a narrow spread gives dM/M far below 0.2, which must not read as
    an agreement (as a 2-epoch network's did in config/test.yaml's summary)."""
    summary = _summarize(tmp_path, scale=-1.0)
    assert summary["per_mass"]["trained"]["max_dm_over_m"] < 0.2
    for start in ("dM/M on trained", "no bias on trained"):
        claim = _claim(summary, start)
        assert claim["verdict"] == "not assessed", claim
        assert "median estimate" in claim["note"]
    verdicts = {c["verdict"] for c in summary["claims"] if not c["claim"].startswith("training")}
    assert "agrees" not in verdicts


def test_non_finite_median_is_not_assessed():
    """The guard on medians also holds for a claim built from a hand-made summary."""
    summary = {
        "training": {"stopped_by": "early stopping", "epochs_run": 3, "best_epoch": 2},
        "per_mass": {
            "trained": {
                "max_dm_over_m": 0.05,
                "max_abs_pull": 0.1,
                "masses": [
                    {"m_true": 1e14, "median": float("nan"), "dm_over_m": 0.05, "pull": 0.1}
                ],
            }
        },
        "scatter": {"fits": {}, "floor_sigma_int": None},
        "sz_residual_ratio": {},
    }
    rows = claims(summary, sigma_int=0.2, train_masses_1e14=TRAINED)
    assert {r["verdict"] for r in rows if r["claim"].endswith("trained masses")} == {"not assessed"}


def test_good_estimates_still_agree(tmp_path):
    summary = _summarize(tmp_path, scale=1.0)
    assert _claim(summary, "dM/M on trained")["verdict"] == "agrees"
    assert _claim(summary, "scatter test, sigma_int = 0.2: width")["verdict"] == "agrees"


@pytest.mark.parametrize("scale", [1.0, -1.0])
def test_smoke_test_assesses_nothing(tmp_path, scale):
    """``evaluation.smoke_test``: every claim is "not assessed", and the summary says why."""
    summary = _summarize(tmp_path, scale=scale, smoke_test=True)
    assert {c["verdict"] for c in summary["claims"]} == {"not assessed"}
    assert all("smoke test" in c["note"] for c in summary["claims"])
    assert json.loads((tmp_path / "summary.json").read_text())["smoke_test"] is True
    md = (tmp_path / "summary.md").read_text()
    assert "smoke test" in md and "| agrees |" not in md
    assert set(pd.read_csv(tmp_path / "claims.csv")["verdict"]) == {"not assessed"}
