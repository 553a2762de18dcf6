"""Statistics of ``simulate.simulate_maps`` at the paper's settings: white-noise level, the
intrinsic-scatter draws, the cluster term, and the one-point statistics of the CMB +
foreground field in the cutout."""

import math

import numpy as np
import pytest
from scipy import stats

from szmass.sky import cluster, maps, profiles, simulate
from szmass.units import ARCMIN

SEED = 20200313
#: 4000 maps (~5 s): 4e6 noise pixels give the rms to 0.035% (1 sigma), and 4000 scatter
#: draws their width to 1.1%.
N_NOISE_MAPS = 4000
#: The field's cutout variance is dominated by a few large-scale modes per map: 1000 maps
#: give it to ~2% (1 sigma); its neighbour-difference variance (small scales) to 1.2%, where
#: a 5% wider beam would show as -9.5%.
N_FIELD_MAPS = 1000
MASSES_1E14 = (2.0, 6.0)  # two masses, so the template look-up per map is exercised
#: Pass limit, in standard errors, of every sampled statistic below: a 1-in-16000 false alarm
#: per check (Gaussian two-sided), small enough for the ~10 such checks here, while biases of
#: a few standard errors are still caught (0.14% in the noise rms, 4.5% in sigma_int).
N_SIGMA = 4.0
#: SPEC: 5 uK-arcmin, i.e. 20 uK rms per 0.25' pixel.
SPEC_NOISE_RMS_UK = 20.0
#: SPEC's "in-cutout rms (~30 uK)": one significant figure, so +-5 uK.
SPEC_FIELD_RMS_UK = 30.0
SPEC_FIELD_RMS_ATOL_UK = 5.0
#: The padded grid (4 x 40 pixels = 40') lacks the modes below its fundamental l = 540,
#: which still leak a little power into the mean-removed cutout through the cutout window.
#: Exactly (the sums below): the grid gives 1059 uK^2 in a 40-pixel cutout, the infinite
#: sky 1153 uK^2 (-8%, i.e. -4% in rms; 8x padding: +2%, 16x: -0.2%). SPEC calls 4x
#: "converged"; we hold the grid's variance to 10% (5% in rms) of the infinite sky's.
PADDING_VAR_RTOL = 0.10
#: Float32 storage of ``sky`` and ``sz`` (7 significant digits of ~250 uK values).
FLOAT32_ATOL_UK = 1e-3


def _sky_config(config, **override):
    return {**config["sky"], **override}


def _cluster_config(config):
    return {k: config["cluster"][k] for k in ("redshift", "x_max_r500", "subpixel")}


def _simulate(config, cosmo, ell, cl, *, n, sigma_int, sky):
    m200c = np.repeat(np.asarray(MASSES_1E14) * 1e14, n // len(MASSES_1E14))
    return simulate.simulate_maps(
        m200c_msun=m200c,
        keys=np.array([simulate.mass_key(m / 1e14) for m in m200c]),
        realizations=np.arange(len(m200c)),
        set_name="grid",
        seed=SEED,
        sigma_int=sigma_int,
        spectra_ell=ell,
        spectra_cl=cl,
        cosmo=cosmo,
        sky=sky,
        cluster=_cluster_config(config),
    )


def _interior(config):
    """Slice of the cutout where the apodization window is exactly 1."""
    w = config["sky"]["apodization_width_pix"]
    n = config["sky"]["npix"]
    return slice(w, n - w)


@pytest.fixture(scope="module")
def noise_sims(config, cosmo, ell_cl):
    """Paper settings with a zero sky spectrum: sky = window (sz + noise)."""
    ell, _ = ell_cl
    sigma_int = config["cluster"]["sigma_int"]
    zero = np.zeros_like(ell)
    sky = _sky_config(config)
    return _simulate(config, cosmo, ell, zero, n=N_NOISE_MAPS, sigma_int=sigma_int, sky=sky)


@pytest.fixture(scope="module")
def field_sims(config, cosmo, ell_cl):
    """Paper settings without noise: sky = window (field + sz)."""
    ell, cl = ell_cl
    sky = _sky_config(config, noise_uk_arcmin=0.0)
    return _simulate(config, cosmo, ell, cl, n=N_FIELD_MAPS, sigma_int=0.0, sky=sky)


def _window(config):
    return maps.apodization_window(config["sky"]["npix"], config["sky"]["apodization_width_pix"])


def _templates(config, cosmo):
    sky = config["sky"]
    out = {}
    for m in MASSES_1E14:
        z = config["cluster"]["redshift"]
        m500 = float(profiles.m200c_to_m500c(m * 1e14, z=z, cosmo=cosmo))
        out[m] = cluster.sz_template_uk(
            m500_msun=m500,
            z=z,
            cosmo=cosmo,
            npix=sky["npix"],
            pixel_arcmin=sky["pixel_arcmin"],
            fwhm_arcmin=sky["beam_fwhm_arcmin"],
            freq_ghz=sky["freq_ghz"],
            subpixel=config["cluster"]["subpixel"],
            x_max=config["cluster"]["x_max_r500"],
        )
    return out


def test_white_noise_level(noise_sims, config):
    """sky - window sz in the un-apodized interior is the noise: 20 uK rms, white."""
    inner = _interior(config)
    noise = (noise_sims["sky"] - _window(config) * noise_sims["sz"])[:, inner, inner]
    noise = noise.astype(float)
    n_pix = noise.size
    sky = config["sky"]
    assert SPEC_NOISE_RMS_UK == pytest.approx(
        maps.white_noise_rms_per_pixel(sky["noise_uk_arcmin"], sky["pixel_arcmin"])
    )
    rms = math.sqrt(np.mean(noise**2))
    # Sample rms of n Gaussian values: relative standard error 1/sqrt(2n).
    assert abs(rms / SPEC_NOISE_RMS_UK - 1) < N_SIGMA / math.sqrt(2 * n_pix), rms
    assert abs(noise.mean()) < N_SIGMA * SPEC_NOISE_RMS_UK / math.sqrt(n_pix)
    # Added after the beam: neighbouring pixels uncorrelated (sample r has s.e. 1/sqrt(n);
    # noise convolved with the 1' beam would have r = 0.92 and a sixth of the rms).
    for a, b in [(noise[:, :, 1:], noise[:, :, :-1]), (noise[:, 1:, :], noise[:, :-1, :])]:
        r = np.mean(a * b) / np.mean(noise**2)
        assert abs(r) < N_SIGMA / math.sqrt(a.size), r


def test_scatter_draws_have_the_configured_width(noise_sims, config):
    sigma_int = config["cluster"]["sigma_int"]
    delta = noise_sims["ln_scatter"]
    n = len(delta)
    # Sample std of n Gaussian draws: relative standard error 1/sqrt(2(n-1)).
    assert abs(delta.std(ddof=1) / sigma_int - 1) < N_SIGMA / math.sqrt(2 * (n - 1))
    assert abs(delta.mean()) < N_SIGMA * sigma_int / math.sqrt(n)
    # Gaussian in shape too (median-preserving log-normal: delta ~ N(0, sigma_int)).
    assert stats.kstest(delta / sigma_int, "norm").pvalue > 2 * stats.norm.sf(N_SIGMA)


def test_sz_is_template_times_exp_scatter(noise_sims, config, cosmo):
    templates = _templates(config, cosmo)
    for i, m200c in enumerate(noise_sims["m200c"]):
        expected = templates[m200c / 1e14] * math.exp(noise_sims["ln_scatter"][i])
        np.testing.assert_allclose(noise_sims["sz"][i], expected, rtol=1e-6, atol=FLOAT32_ATOL_UK)


def test_no_scatter_means_exactly_zero(field_sims, config, cosmo):
    assert np.all(field_sims["ln_scatter"] == 0.0)
    templates = _templates(config, cosmo)
    for i, m200c in enumerate(field_sims["m200c"]):
        np.testing.assert_array_equal(
            field_sims["sz"][i], templates[m200c / 1e14].astype(np.float32)
        )


def _cutout_mean_window(k: np.ndarray, n: int, pixel_rad: float) -> np.ndarray:
    """|1/n sum_j e^{i k j dx}|: the transfer of a mean over n consecutive pixels."""
    half = 0.5 * k * pixel_rad
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.sin(n * half) / (n * np.sin(half))
    return np.where(np.abs(np.sin(half)) < 1e-12, 1.0, w)


def _expected_cutout_variance(ell, cl, *, fwhm_arcmin, pixel_rad, n_cut, n_grid=None, dl=20.0):
    """Expected pixel variance about the cutout's own mean, sum over modes of C_l B_l^2
    (1 - |W_cut|^2) / area: on the periodic n_grid grid, or (n_grid None) the infinite sky,
    int d^2l/(2 pi)^2 on a fine l grid."""
    sigma = fwhm_arcmin * ARCMIN / math.sqrt(8 * math.log(2))
    if n_grid is None:
        k = np.arange(-ell[-1], ell[-1] + dl, dl)
        measure = dl**2 / (2 * math.pi) ** 2
    else:
        k = 2 * math.pi * np.fft.fftfreq(n_grid, d=pixel_rad)
        measure = 1.0 / (n_grid * pixel_rad) ** 2
    kx, ky = k[None, :], k[:, None]
    l_mod = np.hypot(kx, ky)
    power = np.interp(l_mod, ell, cl, right=0.0) * np.exp(-((l_mod * sigma) ** 2))
    win2 = (
        _cutout_mean_window(kx, n_cut, pixel_rad) * _cutout_mean_window(ky, n_cut, pixel_rad)
    ) ** 2
    return float(np.sum(power) * measure), float(np.sum(power * (1.0 - win2)) * measure)


def test_field_one_point_statistics(field_sims, config, ell_cl):
    """The CMB + foreground field in the cutout's un-apodized interior: its pixel variance
    and its variance about the cutout mean, against sum_l C_l B_l^2 on the same grid, and the
    latter against the infinite sky and SPEC's ~30 uK."""
    ell, cl = ell_cl
    sky = config["sky"]
    pixel_rad = sky["pixel_arcmin"] * ARCMIN
    inner = _interior(config)
    n_cut = sky["npix"] - 2 * sky["apodization_width_pix"]
    field = (field_sims["sky"] - _window(config) * field_sims["sz"])[:, inner, inner]
    field = field.astype(float)

    total_grid, about_mean_grid = _expected_cutout_variance(
        ell,
        cl,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
        pixel_rad=pixel_rad,
        n_cut=n_cut,
        n_grid=sky["npix"] * sky["pad_factor"],
    )
    # Per-map statistics; their scatter between maps gives the standard error of the mean.
    per_map_total = np.mean(field**2, axis=(1, 2))
    per_map_about_mean = np.var(field, axis=(1, 2))
    for measured, expected in [(per_map_total, total_grid), (per_map_about_mean, about_mean_grid)]:
        se = measured.std(ddof=1) / math.sqrt(len(measured))
        assert abs(measured.mean() - expected) < N_SIGMA * se, (measured.mean(), expected, se)

    # The whole 40-pixel cutout (sky / window undoes the apodization, which is > 0.001).
    full = ((field_sims["sky"] - _window(config) * field_sims["sz"]) / _window(config)).astype(
        float
    )
    _, about_mean_grid_40 = _expected_cutout_variance(
        ell,
        cl,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
        pixel_rad=pixel_rad,
        n_cut=sky["npix"],
        n_grid=sky["npix"] * sky["pad_factor"],
    )
    per_map_40 = np.var(full, axis=(1, 2))
    se = per_map_40.std(ddof=1) / math.sqrt(len(per_map_40))
    assert abs(per_map_40.mean() - about_mean_grid_40) < N_SIGMA * se
    rms_40 = math.sqrt(per_map_40.mean())
    assert rms_40 == pytest.approx(SPEC_FIELD_RMS_UK, abs=SPEC_FIELD_RMS_ATOL_UK)
    # Padding: the 4x grid against the infinite sky.
    _, about_mean_sky = _expected_cutout_variance(
        ell, cl, fwhm_arcmin=sky["beam_fwhm_arcmin"], pixel_rad=pixel_rad, n_cut=sky["npix"]
    )
    assert about_mean_grid_40 == pytest.approx(about_mean_sky, rel=PADDING_VAR_RTOL)


def test_field_small_scales_carry_the_beam(field_sims, config, ell_cl):
    """Variance of neighbouring-pixel differences, E[(T(x + dx) - T(x))^2] = sum over the grid's
    modes of C_l B_l^2 2 (1 - cos(l_x dx)) / area: set by l ~ 5000-15000, where the 1' beam
    matters (a 5% wider beam lowers it by 9.5%), whereas the cutout variance is not."""
    ell, cl = ell_cl
    sky = config["sky"]
    pixel_rad = sky["pixel_arcmin"] * ARCMIN
    n_grid = sky["npix"] * sky["pad_factor"]
    sigma = sky["beam_fwhm_arcmin"] * ARCMIN / math.sqrt(8 * math.log(2))
    k = 2 * math.pi * np.fft.fftfreq(n_grid, d=pixel_rad)
    l_mod = np.hypot(k[None, :], k[:, None])
    power = np.interp(l_mod, ell, cl, right=0.0) * np.exp(-((l_mod * sigma) ** 2))
    kernel = 2.0 * (1.0 - np.cos(k[None, :] * pixel_rad))
    expected = float(np.sum(power * kernel)) / (n_grid * pixel_rad) ** 2

    inner = _interior(config)
    field = (field_sims["sky"] - _window(config) * field_sims["sz"])[:, inner, inner]
    field = field.astype(float)
    # Isotropy: differences along x and along y have the same expectation.
    for diff in (np.diff(field, axis=2), np.diff(field, axis=1)):
        per_map = np.mean(diff**2, axis=(1, 2))
        se = per_map.std(ddof=1) / math.sqrt(len(per_map))
        assert abs(per_map.mean() - expected) < N_SIGMA * se, (per_map.mean(), expected, se)
