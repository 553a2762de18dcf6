"""The matched filter across redshifts (``szmass.baseline.redshift``, issue 16): templates per
z group, a fixed z computed exactly as before, and the calibration across z."""

import numpy as np
import pandas as pd
import pytest

from szmass.baseline import calibration as bc
from szmass.baseline import matched_filter as mf
from szmass.baseline import redshift as zr
from szmass.calibration import apply_calibration, fit_calibration
from szmass.intervals import INTERVAL_COLUMNS, calibrated_masses, coverage, filter_intervals
from szmass.io import open_shard
from szmass.sky.simulate import simulate_shard

from ..conftest import CLUSTER, COSMO, TRAIN, VAL, sky, write_spectra

SKY = sky(16)
ELL = np.arange(40001.0)
CL = np.zeros_like(ELL)
CL[2:] = 2 * np.pi * 100.0 / (ELL[2:] * (ELL[2:] + 1))
SCALES = np.geomspace(0.5, 10, 5) * 1e14
BASELINE = {"scale_mass_range": [0.5, 10], "n_scales": 5, "fixed_mass": 4.5}


@pytest.fixture(scope="module")
def banks():
    cov = mf.pixel_covariance(spectra_ell=ELL, spectra_cl=CL, sky=SKY)
    return zr.BankCache(
        scale_m200c_msun=SCALES,
        fixed_m200c_msun=4.5e14,
        covariance=cov,
        sky=SKY,
        cluster=CLUSTER,
        cosmo=COSMO,
    )


def _single(maps, z):
    return mf.matched_filter_estimates(
        maps,
        spectra_ell=ELL,
        spectra_cl=CL,
        sky=SKY,
        cluster=CLUSTER,
        cosmo=COSMO,
        scale_m200c_msun=SCALES,
        fixed_m200c_msun=4.5e14,
        z=z,
    )


def test_template_redshifts_round_only_with_a_step():
    z = np.array([0.7, 0.7, 0.2049, 0.2051, 1.4999])
    np.testing.assert_array_equal(zr.template_redshifts(z, step=None), z)
    np.testing.assert_array_equal(zr.template_redshifts(z, step=0.01), [0.7, 0.7, 0.2, 0.21, 1.5])
    assert zr.template_redshifts(np.array([0.7]), step=0.01)[0] == 0.7  # not 0.7000000000000001
    with pytest.raises(ValueError, match="positive"):
        zr.template_redshifts(np.array([0.5, np.nan]), step=None)


def test_one_redshift_is_the_single_z_filter_bit_for_bit(banks):
    rng = np.random.default_rng(1)
    maps = rng.normal(0, 20, (7, 16, 16)).astype(np.float32)
    grouped = zr.estimates_by_z(maps, np.full(7, 0.7), banks)
    single = _single(maps, 0.7)
    for key in zr.PER_MAP:
        np.testing.assert_array_equal(grouped[key], single[key], err_msg=key)
    np.testing.assert_array_equal(grouped["template_z"], 0.7)


def test_each_z_group_gets_its_own_templates(banks):
    rng = np.random.default_rng(2)
    maps = rng.normal(0, 20, (9, 16, 16))
    z = np.array([0.3, 1.2, 0.3, 0.3, 1.2, 0.7, 1.2, 0.3, 0.7])
    grouped = zr.estimates_by_z(maps, z, banks)
    for value in (0.3, 0.7, 1.2):
        pick = z == value
        single = _single(maps[pick], value)
        for key in zr.PER_MAP:
            np.testing.assert_array_equal(grouped[key][pick], single[key], err_msg=key)
    # sigma_A differs between the redshifts (templates of another size and brightness)
    assert np.unique(grouped["amplitude_fixed_err"]).size == 3
    assert sorted(banks.banks) == [0.3, 0.7, 1.2]  # one bank per z, reused
    with pytest.raises(ValueError, match="does not match 9 maps"):
        zr.estimates_by_z(maps, z[:4], banks)


def test_calibration_cells():
    fixed = np.full(40, 0.7)
    (cell,) = zr.cell_split(fixed)
    np.testing.assert_array_equal(cell, np.arange(40))
    two = np.repeat([0.3, 1.2], 20)
    assert [c.size for c in zr.cell_split(two)] == [20, 20]
    many = np.random.default_rng(3).uniform(0.2, 1.5, 420)
    cells = zr.cell_split(many)
    assert len(cells) == zr.Z_CELLS and sum(c.size for c in cells) == 420
    assert all(many[a].max() <= many[b].min() for a, b in zip(cells, cells[1:], strict=False))


def _law(m, t, *, alpha=0.01, beta=1.4, gamma=0.02, delta=-0.2, pivot=0.5):
    """ln A of the calibration's form for masses m [Msun] and template sizes t."""
    x, dt = np.log(m / 4.5e14), t - pivot
    return alpha + beta * x + gamma * dt + delta * x * dt


def test_calibration_across_z_recovers_a_known_law():
    m = np.tile(np.arange(1, 9) * 1e14, 3)
    t = np.repeat([0.2, 0.5, 0.9], 8)
    cal = zr.fit_redshift_calibration(
        amplitude=np.exp(_law(m, t)), m200c_msun=m, ln_theta=t, fixed_m200c_msun=4.5e14
    )
    terms = cal["redshift_terms"]
    assert terms["ln_theta_pivot"] == 0.5 and terms["ln_theta_range"] == [0.2, 0.9]
    for key, value in {"alpha": 0.01, "beta": 1.4, "gamma": 0.02, "delta": -0.2}.items():
        assert terms[key] == pytest.approx(value, abs=1e-10)
    assert cal == zr.calibration_at(cal, 0.5) | {"redshift_terms": terms}
    for t_value in (0.2, 0.7, 0.9):  # the inverse at each z returns the true masses
        at = zr.calibration_at(cal, t_value)
        amp = np.exp(_law(m[:8], np.full(8, t_value)))
        est = apply_calibration(at, amplitude=amp, amplitude_err=0.0)["m200c_est"]
        np.testing.assert_allclose(est, m[:8], rtol=1e-9)
    # one template size: exactly the forward fit of one z, and no z terms to apply
    one = zr.fit_redshift_calibration(
        amplitude=np.exp(_law(m[:8], np.full(8, 0.5))),
        m200c_msun=m[:8],
        ln_theta=np.full(8, 0.5),
        fixed_m200c_msun=4.5e14,
    )
    assert one == fit_calibration(
        amplitude=np.exp(_law(m[:8], np.full(8, 0.5))), m200c_msun=m[:8], method="forward"
    )
    assert zr.calibration_at(one, 3.0) is one


def test_too_few_cells_fall_back_to_one_z(caplog):
    m, t = np.arange(1, 9) * 1e14, np.linspace(0.4, 0.6, 8)  # one cell per mass
    cal = zr.fit_redshift_calibration(
        amplitude=np.exp(_law(m, t)), m200c_msun=m, ln_theta=t, fixed_m200c_msun=4.5e14
    )
    assert "redshift_terms" not in cal and "fitted as if at one z" in caplog.text


def _reference(shards, realizations, fit_realizations):
    """The filter as it was before templates followed each map's z (commit ce56a65): every
    template at cluster.redshift, one median per training shard, one calibration."""
    setup = {"spectra_ell": ELL, "spectra_cl": CL, "cosmo": COSMO}
    scales = np.geomspace(0.5, 10, 5) * 1e14
    est = {}
    for path in shards:
        ds = open_shard(path)
        est[path] = (ds, mf.matched_filter_estimates(
            ds.sky.values, sky=SKY, cluster=CLUSTER, scale_m200c_msun=scales,
            fixed_m200c_msun=4.5e14, **setup,
        ))  # fmt: skip
    train = slice(*fit_realizations)
    cal = fit_calibration(
        amplitude=np.array([np.median(e["amplitude_fixed"][train]) for _, e in est.values()]),
        m200c_msun=np.array([float(np.median(ds.m200c.values)) for ds, _ in est.values()]),
        method="forward",
    )
    rows = []
    for ds, e in est.values():
        pick = slice(*realizations)
        amp, err = e["amplitude_fixed"][pick], e["amplitude_fixed_err"][pick]
        iv = filter_intervals(amp, err, cal, sigma_int=0.2, m200c_true=ds.m200c.values[pick])
        mass = apply_calibration(cal, amplitude=amp, amplitude_err=err)
        rows.append({"m200c_est": np.where(mass["nonpositive"], 0.0, mass["m200c_est"]), **iv})
    return cal, {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}


def test_fixed_z_calibration_and_masses_are_those_of_before(shards16, tmp_path):
    spectra = str(write_spectra(tmp_path / "spectra.ecsv"))
    kw = {"spectra_path": spectra, "shard_paths": shards16, "sky": SKY, "cluster": CLUSTER}
    result = bc.calibrate_baseline(
        **kw, realizations=list(TRAIN), baseline=BASELINE, out_path=str(tmp_path / "cal.json")
    )
    table = bc.baseline_set(
        **kw,
        calibration_path=str(tmp_path / "cal.json"),
        realizations=list(VAL),
        baseline=BASELINE,
        out_predictions=str(tmp_path / "pred.csv"),
        sigma_int=0.2,
    )
    cal, ref = _reference(shards16, VAL, TRAIN)
    assert result["calibration"] == cal and "cell_z_range" not in result
    for key, values in ref.items():
        np.testing.assert_array_equal(table[key].to_numpy(), values, err_msg=key)


UNIFORM = {**CLUSTER, "redshift": {"distribution": "uniform", "range": [0.5, 0.9]}}


@pytest.fixture(scope="module")
def uniform_shards(tmp_path_factory):
    """16-px grid shards at 1, 2, 4e14 whose 110 maps each draw z uniform in [0.5, 0.9]."""
    root = tmp_path_factory.mktemp("uniform_z")
    spectra = write_spectra(root / "spectra.ecsv")
    paths = []
    for mass in (1, 2, 4):
        path = root / f"M{mass}.zarr"
        simulate_shard(
            spectra_path=str(spectra),
            out_path=str(path),
            set_name="grid",
            seed=5,
            sky=SKY,
            cluster=UNIFORM,
            sigma_int=0.2,
            mass_1e14=mass,
            n_realizations=110,
        )
        paths.append(str(path))
    return str(spectra), paths


def test_a_z_distribution_is_calibrated_and_applied_per_z(uniform_shards, tmp_path):
    spectra, shards = uniform_shards
    kw = {"spectra_path": spectra, "shard_paths": shards, "sky": SKY, "cluster": UNIFORM}
    result = bc.calibrate_baseline(
        **kw, realizations=[0, 100], baseline=BASELINE, out_path=str(tmp_path / "cal.json")
    )
    cal = result["calibration"]
    # two cells of 50 maps per mass, each its own z range, the fit across z
    assert result["cell_n_maps"] == [50] * 6 and "redshift_terms" in cal
    assert all(0.5 <= lo < hi <= 0.9 for lo, hi in result["cell_z_range"])
    table = bc.baseline_set(
        **kw,
        calibration_path=str(tmp_path / "cal.json"),
        realizations=[100, 110],
        baseline=BASELINE,
        out_predictions=str(tmp_path / "pred.csv"),
        sigma_int=0.2,
    )
    assert len(table) == 30 and table["z"].nunique() == 30
    # each map: its template at its z to 0.01, the calibration at that z
    setup = bc._filter_setup(spectra, SKY, UNIFORM, BASELINE)
    ds = open_shard(shards[2]).isel(realization=slice(100, 110))
    rows = table[table["shard"] == "M4"]
    for i, z in enumerate(ds.z.values):
        tz = round(z, 2)
        one = mf.bank_estimates(ds.sky.values[i : i + 1], setup["banks"](tz))
        at = zr.calibration_at(cal, setup["ln_theta"](tz))
        mass = apply_calibration(at, amplitude=one["amplitude_fixed"], amplitude_err=0.0)
        assert rows["amplitude"].iloc[i] == pytest.approx(one["amplitude_fixed"][0], rel=1e-12)
        assert rows["m200c_est"].iloc[i] == pytest.approx(mass["m200c_est"][0], rel=1e-12)
    assert np.all(table["m200c_lo16"] <= table["m200c_hi84"])


#: Two redshifts' template sizes ln(theta500 / arcmin) and filter noise sigma_A: a large,
#: noisier template (low z) and a small one (high z), so that both the belt's noise and its
#: calibration differ between them.
TWO_Z = {0.3: (1.2, 0.12), 1.2: (0.15, 0.07)}


def _binomial_tol(p, n, k=3.5):
    return k * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("m", [2e14, 6e14])
def test_intervals_cover_at_two_redshifts(m):
    """Synthetic amplitudes A = mu(M, z) e^d + n of the calibration's form, at two z with
    their own sigma_A: the per-z intervals cover at 68 and 95% at both, the PIT is flat."""
    terms = {"alpha": 0.0, "beta": 1.4, "gamma": 0.0, "delta": -0.2, "m_pivot": 4.5e14}
    terms |= {"ln_theta_pivot": 0.5, "ln_theta_range": [0.15, 1.2], "rms_ln_a": 0.01}
    terms["covariance"] = np.diag([1e-4] * 4).tolist()
    calibration = {"redshift_terms": terms, "n_used": 16, "n_nonpositive": 0}
    rng = np.random.default_rng(7)
    n = 3000
    z = np.repeat(list(TWO_Z), n)
    t = np.array([TWO_Z[v][0] for v in z])
    sigma = np.array([TWO_Z[v][1] for v in z])
    mu = np.exp(_law(np.full(z.size, m), t, alpha=0.0, gamma=0.0, delta=-0.2, pivot=0.5))
    amp = mu * np.exp(rng.normal(0, 0.2, z.size)) + rng.normal(0, sigma)
    est = {"template_z": z, "amplitude_fixed": amp, "amplitude_fixed_err": sigma}
    setup = {"ln_theta": lambda value: TWO_Z[value][0]}
    out, _ = bc.masses_by_z(
        est, calibration, setup, sigma_int=0.2, m_true=np.full(z.size, m), belts={}
    )
    for value in TWO_Z:
        pick = z == value
        table = pd.DataFrame({k: out[k][pick] for k in INTERVAL_COLUMNS})
        table["m200c_true"] = m
        cov = coverage(table, pit=out["pit"][pick])
        assert cov["coverage_68"] == pytest.approx(0.6827, abs=_binomial_tol(0.68, n)), value
        assert cov["coverage_95"] == pytest.approx(0.9545, abs=_binomial_tol(0.95, n)), value
        assert cov["pit_ks"] < 0.05, value  # KS at 3000 draws 0.025, plus the belt's steps
    # the two calibrations differ (A = 2 is 8% apart in mass), and the belt of the pivot's
    # calibration at z = 0.3 is off: its PIT is not flat (KS 0.11 at 2e14)
    high = zr.calibration_at(calibration, TWO_Z[1.2][0])
    low = zr.calibration_at(calibration, TWO_Z[0.3][0])
    assert abs(np.log(calibrated_masses(2.0, high) / calibrated_masses(2.0, low))) > 0.07
    pick = z == 0.3
    pivot = zr.calibration_at(calibration, terms["ln_theta_pivot"])
    wrong = filter_intervals(amp[pick], 0.12, pivot, sigma_int=0.2, m200c_true=np.full(n, m))
    table = pd.DataFrame({k: wrong[k] for k in INTERVAL_COLUMNS}).assign(m200c_true=m)
    assert coverage(table, pit=wrong["pit"])["pit_ks"] > 0.06
