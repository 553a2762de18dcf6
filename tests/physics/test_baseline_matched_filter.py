"""The matched-filter baseline (``szmass.baseline.matched_filter``) against the simulation it
models.

A small geometry (24 x 24 pixels at the paper's 0.25', 1' beam, 5 uK-arcmin, pad 4, window 4
px) and an analytic sky spectrum (a CMB-like power law with a damping cut-off plus Poisson and
clustered CIB-like terms), so that no CAMB run is needed. Maps come from
``simulate.simulate_maps`` itself, so the filter is checked against the real simulator.
"""

import math

import numpy as np
import pytest

from szmass.baseline import matched_filter as mf
from szmass.calibration import apply_calibration, fit_calibration
from szmass.sky import cluster as cluster_mod
from szmass.sky import maps, profiles, simulate

SEED = 20200313
NPIX = 24
SKY = {
    "freq_ghz": 150.0,
    "pixel_arcmin": 0.25,
    "npix": NPIX,
    "pad_factor": 4,
    "beam_fwhm_arcmin": 1.0,
    "noise_uk_arcmin": 5.0,
    "apodization_width_pix": 4,
}
CLUSTER = {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 8}
#: Planck 2018 sigma8 (arXiv:1807.06209, TT,TE,EE+lowE+lensing); only sets the colossus
#: concentrations, which the test needs to be those of the simulation, not exact.
SIGMA8 = 0.8111
SCALES_1E14 = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
TRUE_MASS_1E14 = 3.0  # on the scale grid, so the filter at that scale is exactly matched
SIGMA_INT = 0.2
#: 4000 maps (~10 s): the sample std of the estimates to 1.1% (1 sigma), the mean to
#: sigma_A / 63.
N_MAPS = 4000
#: Pass limit, in standard errors, of the sampled statistics (as in test_sky_simulated_maps.py):
#: a 1-in-16000 false alarm per check.
N_SIGMA = 4.0
#: The brief's limit for the unbiasedness test: the mean of A - exp(delta) within 2 standard
#: errors of 0 (fixed seeds, so the outcome is deterministic).
N_SIGMA_BIAS = 2.0
#: Noise-free recovery: the brief's 1%. What is left is float32 storage of the maps (1e-7).
NOISE_FREE_RTOL = 0.01
#: The brief allows 10% between the std of the estimates and the predicted sigma; the check
#: below uses the tighter N_SIGMA statistical limit (4.5% for 4000 maps) and asserts both.
BRIEF_SIGMA_RTOL = 0.10


def _spectrum() -> tuple[np.ndarray, np.ndarray]:
    """C_l [uK^2], l = 0..40000: D_l = 3000 (l/300)^-2 e^(-l/2000) (CMB-like) + 10 (l/3000)^2
    (Poisson) + 3 (l/3000)^0.8 (clustered), i.e. ~30 uK rms in the cutout."""
    ell = np.arange(40001.0)
    cl = np.zeros_like(ell)
    lv = ell[2:]
    dl = 3000.0 * (lv / 300.0) ** -2 * np.exp(-lv / 2000.0)
    dl += 10.0 * (lv / 3000.0) ** 2 + 3.0 * (lv / 3000.0) ** 0.8
    cl[2:] = 2.0 * np.pi * dl / (lv * (lv + 1.0))
    return ell, cl


@pytest.fixture(scope="module")
def cosmo(config):
    return {**config["cosmology"], "sigma8": SIGMA8}


@pytest.fixture(scope="module")
def spectrum():
    return _spectrum()


@pytest.fixture(scope="module")
def covariance(spectrum):
    ell, cl = spectrum
    return mf.pixel_covariance(spectra_ell=ell, spectra_cl=cl, sky=SKY)


@pytest.fixture(scope="module")
def filters(cosmo, covariance):
    templates = mf.scale_templates(
        m200c_msun=SCALES_1E14 * 1e14, z=CLUSTER["redshift"], cosmo=cosmo, sky=SKY, cluster=CLUSTER
    )
    return mf.build_filters(templates, covariance)


def _simulate(cosmo, ell, cl, *, n, sky):
    return simulate.simulate_maps(
        m200c_msun=np.full(n, TRUE_MASS_1E14 * 1e14),
        keys=np.full(n, simulate.mass_key(TRUE_MASS_1E14)),
        realizations=np.arange(n),
        set_name="grid",
        seed=SEED,
        sigma_int=SIGMA_INT,
        spectra_ell=ell,
        spectra_cl=cl,
        cosmo=cosmo,
        sky=sky,
        cluster=CLUSTER,
    )


@pytest.fixture(scope="module")
def sims(cosmo, spectrum):
    """The simulator's maps of one 3e14 cluster with 20% scatter, field and noise."""
    return _simulate(cosmo, *spectrum, n=N_MAPS, sky=SKY)


def _estimates(maps, cosmo, spectrum, **kw):
    ell, cl = spectrum
    return mf.matched_filter_estimates(
        maps,
        spectra_ell=ell,
        spectra_cl=cl,
        sky=SKY,
        cluster=CLUSTER,
        cosmo=cosmo,
        scale_m200c_msun=SCALES_1E14 * 1e14,
        **kw,
    )


def test_noise_free_maps_give_the_injected_amplitude(cosmo, spectrum):
    """sky = window x template x exp(delta): A = exp(delta) at the true scale, the best S/N
    is at the true scale (Cauchy-Schwarz in the C^-1 metric), y0 = exp(delta) y0(template)."""
    ell, _ = spectrum
    quiet = {**SKY, "noise_uk_arcmin": 0.0}
    sims = _simulate(cosmo, ell, np.zeros_like(ell), n=20, sky=quiet)
    truth = np.exp(sims["ln_scatter"])
    est = _estimates(sims["sky"], cosmo, spectrum, fixed_m200c_msun=TRUE_MASS_1E14 * 1e14)
    np.testing.assert_allclose(est["amplitude_fixed"], truth, rtol=NOISE_FREE_RTOL)
    np.testing.assert_allclose(est["amplitude"], truth, rtol=NOISE_FREE_RTOL)
    assert np.all(est["best_scale_m200c"] == TRUE_MASS_1E14 * 1e14)
    m500 = float(profiles.m200c_to_m500c(TRUE_MASS_1E14 * 1e14, z=CLUSTER["redshift"], cosmo=cosmo))
    template = cluster_mod.sz_template_uk(
        m500_msun=m500,
        z=CLUSTER["redshift"],
        cosmo=cosmo,
        npix=NPIX,
        pixel_arcmin=SKY["pixel_arcmin"],
        fwhm_arcmin=SKY["beam_fwhm_arcmin"],
        freq_ghz=SKY["freq_ghz"],
        subpixel=CLUSTER["subpixel"],
        x_max=CLUSTER["x_max_r500"],
    )
    t_cmb = cosmo["TCMB"]
    y0_true = truth * template[NPIX // 2, NPIX // 2] / (t_cmb * profiles.f_sz(150.0, t_cmb) * 1e6)
    np.testing.assert_allclose(est["y0"], y0_true, rtol=NOISE_FREE_RTOL)
    np.testing.assert_allclose(est["y0_fixed"], y0_true, rtol=NOISE_FREE_RTOL)
    # The fixed-scale filter's response to each noise-free template: 1 at its own scale,
    # rising with mass (the training-free calibration curve).
    response = est["scale_response_fixed"]
    assert response[list(SCALES_1E14).index(TRUE_MASS_1E14)] == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(response) > 0)
    # Default fixed scale: the middle trial mass.
    default = _estimates(sims["sky"][:2], cosmo, spectrum)
    assert default["fixed_m200c"] == SCALES_1E14[len(SCALES_1E14) // 2] * 1e14


def test_cluster_free_spread_matches_predicted_sigma(sims, filters, covariance):
    """On the simulator's own field + noise (sky - window sz), the std of A at every scale is
    the predicted sigma_A: the analytic covariance is the simulation's."""
    window = maps.apodization_window(NPIX, SKY["apodization_width_pix"])
    residual = sims["sky"].astype(float) - window * sims["sz"].astype(float)
    amp = mf.apply_filters(residual, filters)["amplitude"]
    ratio = amp.std(axis=0, ddof=1) / filters["sigma"]
    # Sample std of n Gaussian values: relative standard error 1/sqrt(2(n-1)).
    tol = N_SIGMA / math.sqrt(2 * (N_MAPS - 1))
    assert tol < BRIEF_SIGMA_RTOL
    assert np.all(np.abs(ratio - 1) < tol), ratio
    assert np.all(np.abs(amp.mean(axis=0)) < N_SIGMA * filters["sigma"] / math.sqrt(N_MAPS))


def test_estimates_are_unbiased(sims, cosmo, spectrum):
    """A cluster in field + noise: at the true scale, mean(A - exp(delta)) is 0 within
    N_SIGMA_BIAS standard errors of the mean."""
    est = _estimates(sims["sky"], cosmo, spectrum, fixed_m200c_msun=TRUE_MASS_1E14 * 1e14)
    diff = est["amplitude_fixed"] - np.exp(sims["ln_scatter"])
    sem = est["amplitude_fixed_err"][0] / math.sqrt(N_MAPS)
    assert abs(diff.mean()) < N_SIGMA_BIAS * sem, (diff.mean(), sem)
    # The spread of A - exp(delta) is the noise alone (the scatter is in the truth).
    assert abs(diff.std(ddof=1) / est["amplitude_fixed_err"][0] - 1) < N_SIGMA / math.sqrt(
        2 * (N_MAPS - 1)
    )


def test_empirical_covariance_gives_the_analytic_sigma(spectrum, cosmo, filters):
    """Cluster-free maps from ``cluster_free_maps``: the filter built on their sample
    covariance has sigma_A^2 = sigma^2 chi^2_{n-p}/(n-1) (Wishart), so after the factor
    (n-1)/(n-p) it matches the analytic sigma^2 to sqrt(2/(n-p)) (2.4% for 4000 maps)."""
    ell, cl = spectrum
    maps = mf.cluster_free_maps(n_maps=N_MAPS, seed=SEED, spectra_ell=ell, spectra_cl=cl, sky=SKY)
    emp = mf.empirical_covariance(maps)
    templates = mf.scale_templates(
        m200c_msun=SCALES_1E14 * 1e14, z=CLUSTER["redshift"], cosmo=cosmo, sky=SKY, cluster=CLUSTER
    )
    n, p = N_MAPS, NPIX**2
    var_ratio = (mf.build_filters(templates, emp)["sigma"] / filters["sigma"]) ** 2
    var_ratio *= (n - 1) / (n - p)
    # The scales share one sample covariance, so their errors are correlated: one limit.
    assert np.all(np.abs(var_ratio - 1) < N_SIGMA * math.sqrt(2 / (n - p))), var_ratio
    # The streams are disjoint from every simulated set.
    assert mf.CLUSTER_FREE_SET_CODE not in simulate.SET_CODES.values()


def test_calibration_fits_and_inverts():
    rng = np.random.default_rng(SEED)
    a_true, b_true, scatter_true, n = 33.0, 0.6, 0.1, 5000
    ln_amp = rng.uniform(-1.5, 1.5, n)
    # Exact power law: a and b to rounding.
    exact = fit_calibration(amplitude=np.exp(ln_amp), m200c_msun=np.exp(a_true + b_true * ln_amp))
    assert exact["a"] == pytest.approx(a_true, rel=1e-12)
    assert exact["b"] == pytest.approx(b_true, rel=1e-10)
    assert exact["n_nonpositive"] == 0 and exact["n_used"] == n
    # With scatter in ln M at fixed ln A: a, b within N_SIGMA of their errors, the width of
    # the residuals within N_SIGMA standard errors, 1/sqrt(2(n-2)).
    ln_m = a_true + b_true * ln_amp + scatter_true * rng.standard_normal(n)
    amp = np.exp(ln_amp)
    amp[:7] = [0.0, -0.5, -2.0, np.nan, -1e-9, -3.0, 0.0]
    fit = fit_calibration(amplitude=amp, m200c_msun=np.exp(ln_m))
    assert fit["n_nonpositive"] == 7 and fit["n_used"] == n - 7
    assert abs(fit["a"] - a_true) < N_SIGMA * fit["a_err"]
    assert abs(fit["b"] - b_true) < N_SIGMA * fit["b_err"]
    assert abs(fit["scatter"] / scatter_true - 1) < N_SIGMA / math.sqrt(2 * (n - 2))
    # method="forward": scatter in ln A at fixed ln M (as in the simulation) is fitted as the
    # scaling relation ln A = (ln M - a) / b and inverted; its width is reported in ln M.
    ln_m2 = rng.uniform(np.log(1e14), np.log(1e15), n)
    ln_a2 = (ln_m2 - a_true) / b_true + scatter_true * rng.standard_normal(n)
    fwd = fit_calibration(amplitude=np.exp(ln_a2), m200c_msun=np.exp(ln_m2), method="forward")
    assert abs(fwd["a"] - a_true) < N_SIGMA * fwd["a_err"]
    assert abs(fwd["b"] - b_true) < N_SIGMA * fwd["b_err"]
    assert abs(fwd["scatter"] / (scatter_true * b_true) - 1) < N_SIGMA / math.sqrt(2 * (n - 2))
    # ... where the inverse regression of the same pairs is pulled toward the mean (b lower).
    inv = fit_calibration(amplitude=np.exp(ln_a2), m200c_msun=np.exp(ln_m2))
    assert inv["b"] < b_true - N_SIGMA * inv["b_err"]
    # apply inverts the fitted law; non-positive amplitudes give NaN, flagged and counted.
    out = apply_calibration(fit, amplitude=amp, amplitude_err=0.05 * np.abs(amp))
    np.testing.assert_array_equal(np.isnan(out["m200c_est"]), np.arange(n) < 7)
    np.testing.assert_array_equal(out["nonpositive"], np.arange(n) < 7)
    assert out["n_nonpositive"] == 7
    np.testing.assert_allclose(
        np.log(out["m200c_est"][7:]), fit["a"] + fit["b"] * ln_amp[7:], rtol=1e-12
    )
    # First-order error: 5% in A is |b| x 5% in ln M; Monte Carlo of the same (1% in ln A
    # errors are second-order small: the MC std is within 1% of it, plus sampling).
    np.testing.assert_allclose(out["ln_m_err"][7:], abs(fit["b"]) * 0.05, rtol=1e-12)
    draws = apply_calibration(
        fit, amplitude=1.0 + 0.01 * rng.standard_normal(20000), amplitude_err=0.01
    )
    mc = np.log(draws["m200c_est"]).std(ddof=1)
    assert abs(mc / draws["ln_m_err"][0] - 1) < 0.01 + N_SIGMA / math.sqrt(2 * 19999)


def test_bad_input_names_the_shapes(filters, covariance):
    with pytest.raises(ValueError, match=r"\(5, 20, 20\)"):
        mf.apply_filters(np.zeros((5, 20, 20)), filters)
    with pytest.raises(ValueError, match=r"\(24, 24\)"):
        mf.apply_filters(np.zeros((NPIX, NPIX)), filters)
    with pytest.raises(ValueError, match=r"\(400, 400\).*\(3, 24, 24\)"):
        mf.build_filters(np.ones((3, NPIX, NPIX)), np.eye(400))
    with pytest.raises(ValueError, match=r"\(3, 576\)"):
        mf.build_filters(np.ones((3, NPIX * NPIX)), covariance)
    with pytest.raises(ValueError, match="576 pixels"):
        mf.empirical_covariance(np.zeros((100, NPIX, NPIX)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        fit_calibration(amplitude=np.ones(3), m200c_msun=np.ones(4))
    with pytest.raises(ValueError, match="method"):
        fit_calibration(amplitude=np.ones(5), m200c_msun=np.ones(5), method="odr")
    with pytest.raises(ValueError, match="at least 3"):
        fit_calibration(amplitude=-np.ones(5), m200c_msun=np.ones(5))
