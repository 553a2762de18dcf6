"""``szmass predict`` end to end on the survey-like test map (the README's worked example): the
committed CPU model and its matched filter recover the truth catalogue's masses as well as the
model card's evaluation says they should.

The map: 100 clusters (M200c log-uniform in 2-7e14, the scatter test's range; z = 0.7; 20%
scatter) on 4 x 4 deg of the paper's sky (CMB + George et al. 2015 foregrounds, 1' beam,
5 uK-arcmin), centred on RA 0 so that it straddles the 0/360 wrap.
"""

import numpy as np
import pandas as pd
import pytest
import yaml

from szmass.cli import DEFAULT_MODEL, main
from szmass.sky.spectra import compute_spectra, write_spectra
from szmass.survey.card import read_model_dir
from szmass.survey.testmap import make_survey_map

ROOT = DEFAULT_MODEL.parents[2]
N_CLUSTERS = 100
#: Tolerance, in standard errors, of the recovered mean and spread against the card's.
N_SIGMA = 3.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    spectra = config["spectra"] | {"lmax_camb": 3000}  # the tiny config's: CMB to l = 3000
    table = compute_spectra(
        cosmology=config["cosmology"],
        lmax_camb=spectra["lmax_camb"],
        lmax=spectra["lmax"],
        foregrounds=spectra["foregrounds"],
    )
    write_spectra(table, root / "spectra.ecsv")
    make_survey_map(
        spectra_path=root / "spectra.ecsv",
        sky=config["sky"],
        cosmo=None,
        cluster=config["cluster"],
        out_map=root / "map.fits",
        out_catalogue=root / "truth.csv",
        size_deg=4.0,
        n_clusters=N_CLUSTERS,
        mass_range_1e14=(2.0, 7.0),
        min_separation_arcmin=12.0,
        seed=11,
    )
    truth = pd.read_csv(root / "truth.csv")
    truth[["name", "ra", "dec", "z"]].to_csv(root / "catalogue.csv", index=False)
    out = root / "masses.csv"
    argv = ["predict", "--map", str(root / "map.fits"), "--catalogue", str(root / "catalogue.csv")]
    assert main([*argv, "--out", str(out)]) == 0
    return truth, pd.read_csv(out)


def test_the_map_straddles_ra_zero(survey):
    truth, _ = survey
    assert (truth["ra"] < 10).any() and (truth["ra"] > 350).any()


def test_every_cluster_is_measured(survey):
    truth, masses = survey
    assert list(masses["name"]) == list(truth["name"])
    assert set(masses["flag"]) <= {"ok", "mass_outside_training"}
    assert (masses["flag"] == "ok").mean() > 0.9


@pytest.mark.parametrize(
    ("estimator", "column"), [("network", "m200c"), ("matched_filter", "mf_m200c")]
)
def test_recovered_masses_agree_with_the_card(survey, estimator, column):
    """Mean and spread of ln(M_est / M_true) within N_SIGMA standard errors of the model
    card's scatter0.2 set (1000 maps of the same sky with 20% scatter, M uniform in 2-7e14)."""
    truth, masses = survey
    card = read_model_dir(DEFAULT_MODEL)["card"]["evaluation"]["scatter0.2"][estimator]
    ln_ratio = np.log(masses[column].to_numpy() / truth["m200c"].to_numpy())
    assert np.all(np.isfinite(ln_ratio))
    n = len(ln_ratio)
    mean_err = np.hypot(card["sigma"] / np.sqrt(n), card["mean_err"])
    assert abs(ln_ratio.mean() - card["mean"]) < N_SIGMA * mean_err, (ln_ratio.mean(), card)
    std_err = card["sigma"] / np.sqrt(2 * (n - 1))  # the spread of a Gaussian sample's std
    assert abs(ln_ratio.std(ddof=1) - card["sigma"]) < N_SIGMA * std_err, (ln_ratio.std(), card)


def test_m500c_follows_m200c(survey):
    _, masses = survey
    ratio = masses["m500c"] / masses["m200c"]
    assert ratio.between(0.6, 0.75).all()  # NFW, c200c ~ 4 (diemer15 at z = 0.7): ~0.68


def test_filter_intervals_hold_the_true_masses(survey):
    """The matched filter's 68% and 95% intervals (its noise model's belt) hold the truth of
    the map's 100 clusters at their nominal rates, within 3 binomial standard errors; the
    network's are NaN where the model directory's calibration has no belt."""
    truth, masses = survey
    m = truth["m200c"].to_numpy()
    for level, lo, hi in ((0.6827, "mf_m200c_lo16", "mf_m200c_hi84"),
                          (0.9545, "mf_m200c_lo2p5", "mf_m200c_hi97p5")):  # fmt: skip
        inside = ((masses[lo] <= m) & (m <= masses[hi])).mean()
        assert abs(inside - level) < N_SIGMA * np.sqrt(level * (1 - level) / len(m)), inside
    assert (masses["mf_m200c_lo16"] < masses["mf_m200c_hi84"]).all()
    if read_model_dir(DEFAULT_MODEL)["belt"] is None:
        assert masses["m200c_lo16"].isna().all()
    else:
        assert (masses["m200c_lo16"] <= masses["m200c_hi84"]).all()
