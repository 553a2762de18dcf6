"""The realistic set's summary on small synthetic shards (issue 13, items 1 and 3): a FITS run
with one, two or three usable clusters still gets a summary that says which statistics it could
not compute and why, and the words follow the source of the clusters (stand-in or FITS)."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from szmass.io import write_zarr_atomic
from szmass.report import summary as sm

#: Maps per cluster: enough for a Gaussian fit of the rescaled estimates.
N_MAPS = 20


def _shard(path, *, masses_1e14, y_cyl, source, r_analytic=None):
    """A realistic shard holding only what the summary reads (per-cluster variables)."""
    n = len(masses_1e14)
    data = {
        "cluster_m200c": ("cluster", np.asarray(masses_1e14, float) * 1e14),
        "cluster_y_cyl": ("cluster", np.asarray(y_cyl, float)),
        "cluster_r_measured": ("cluster", np.full(n, 0.9)),
    }
    if r_analytic is not None:
        data["cluster_r_analytic"] = ("cluster", np.full(n, r_analytic))
    keys = np.arange(3, 3 + n, dtype=np.int64)  # catalogue rows, not positions
    ds = xr.Dataset(data, coords={"cluster": keys}, attrs={"realistic_source": source})
    write_zarr_atomic(ds, path)
    return keys


def _predictions(path, keys, masses_1e14, *, n_maps, rng):
    cluster = np.repeat(keys, n_maps)
    m_true = np.repeat(np.asarray(masses_1e14, float) * 1e14, n_maps)
    m_est = m_true / 0.9 * np.exp(0.1 * rng.standard_normal(m_true.size))
    pd.DataFrame({"cluster_id": cluster, "m200c_true": m_true, "m200c_est": m_est}).to_csv(
        path, index=False
    )


def _summarize(tmp_path, masses_1e14, y_cyl, *, source="fits", n_maps=N_MAPS, **shard_kw):
    """``summarize`` of a trained set and a realistic set of ``masses_1e14`` clusters."""
    rng = np.random.default_rng(5)
    keys = _shard(
        tmp_path / "real.zarr", masses_1e14=masses_1e14, y_cyl=y_cyl, source=source, **shard_kw
    )
    _predictions(tmp_path / "realistic.csv", keys, masses_1e14, n_maps=n_maps, rng=rng)
    trained = np.repeat([1e14, 2e14, 4e14], 50)
    pd.DataFrame(
        {"m200c_true": trained, "m200c_est": trained * np.exp(0.1 * rng.standard_normal(150))}
    ).to_csv(tmp_path / "trained.csv", index=False)
    (tmp_path / "model.json").write_text(json.dumps({"best_epoch": 5, "stopped_early": True}))
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.1\n2,0.1\n")
    return sm.summarize(
        predictions={
            "trained": str(tmp_path / "trained.csv"),
            "realistic": str(tmp_path / "realistic.csv"),
        },
        maps=[],
        no_scatter_shard=None,
        sigma_int=0.2,
        model_summary=str(tmp_path / "model.json"),
        history=str(tmp_path / "history.csv"),
        max_epochs=200,
        train_masses_1e14=(1, 2, 4),
        out_json=str(tmp_path / "summary.json"),
        out_markdown=str(tmp_path / "summary.md"),
        out_per_mass=str(tmp_path / "per_mass.csv"),
        out_claims=str(tmp_path / "claims.csv"),
        realistic_shard=str(tmp_path / "real.zarr"),
        n_boot=50,
    )


def _realistic_claims(summary):
    return [c for c in summary["claims"] if c["claim"].startswith("realistic")]


@pytest.mark.parametrize(
    ("masses_1e14", "y_cyl", "reason"),
    [
        ([4.0], [1e-4], "2 distinct"),  # one good cluster
        ([3.0, 5.0], [1e-4, 2e-4], "3 points"),  # two
        ([2.0, 4.0, 6.0], [1e-4, 1e-4, 1e-4], "consistent with zero"),  # Y flat in M
    ],
    ids=["one cluster", "two clusters", "flat Y-M"],
)
def test_too_few_clusters_still_give_a_summary(tmp_path, masses_1e14, y_cyl, reason):
    """The Y-M slope cannot be fitted: the summary is written, the relation carries an error
    string, and the claims table says "not assessed: <why>" instead of a NaN."""
    summary = _summarize(tmp_path, masses_1e14, y_cyl)
    relation = summary["realistic"]["y_m_relation"]
    assert reason in relation["error"] and "intrinsic_scatter_ln_m" not in summary["realistic"]
    written = json.loads((tmp_path / "summary.json").read_text())["realistic"]
    assert written["y_m_relation"]["error"] == relation["error"]
    # the rescaled fit over the maps is still made and judged
    assert "sigma" in written["fit_scaled"]
    fit_claim = _realistic_claims(summary)[-1]
    assert fit_claim["verdict"] in ("agrees", "differs")
    assert f"not assessed: {relation['error']}" in fit_claim["note"]
    md = (tmp_path / "summary.md").read_text()
    assert "not assessed:" in md and "nan" not in md.lower()


def test_one_map_is_not_assessed_not_differs(tmp_path):
    """One cluster seen once: no Gaussian fit of the realistic set, and that is said as "not
    assessed", not as a failure of the network."""
    summary = _summarize(tmp_path, [4.0], [1e-4], n_maps=1)
    assert "error" in summary["realistic"]["fit_scaled"]
    fit_claim = _realistic_claims(summary)[-1]
    assert fit_claim["verdict"] == "not assessed"
    assert fit_claim["ours"].startswith("not assessed: ")
    assert "| not assessed |" in (tmp_path / "summary.md").read_text()


def test_enough_clusters_give_the_intrinsic_scatter(tmp_path):
    masses = [2.0, 3.0, 4.0, 5.0, 6.0]
    y = 1e-4 * np.array(masses) ** 1.6 * np.exp([0.05, -0.05, 0.1, 0.0, -0.1])
    summary = _summarize(tmp_path, masses, y)
    real = summary["realistic"]
    assert real["y_m_relation"]["slope"] == pytest.approx(1.6, abs=0.3)
    assert real["intrinsic_scatter_ln_m"] > 0
    assert "error" not in real["y_m_relation"]


def test_fits_wording(tmp_path):
    """Real maps are not called a stand-in, and a measured r is printed once."""
    summary = _summarize(tmp_path, [2.0, 4.0, 6.0], [1e-4, 2.2e-4, 3.5e-4])
    md = (tmp_path / "summary.md").read_text()
    assert "stand-in" not in md and "measured; measured" not in md
    r_claim = _realistic_claims(summary)[0]
    assert r_claim["ours"] == "0.900 (measured)"
    assert "FITS" in r_claim["note"]
    assert summary["realistic"]["source"] == "fits"


def test_standin_wording(tmp_path):
    summary = _summarize(
        tmp_path, [2.0, 4.0, 6.0], [1e-4, 2.2e-4, 3.5e-4], source="standin", r_analytic=1.2
    )
    r_claim = _realistic_claims(summary)[0]
    assert r_claim["ours"] == "1.200 (analytic; measured 0.900)"
    assert "stand-in, not Magneticum" in r_claim["note"]
    assert summary["realistic"]["source"] == "standin"
