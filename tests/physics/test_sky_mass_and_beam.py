"""M200c -> M500c against colossus and an NFW integral, and the Gaussian beam against its
analytic form."""

import math

import numpy as np
import pytest
from colossus.cosmology import cosmology as colossus_cosmology
from colossus.halo import concentration, mass_adv
from scipy.optimize import brentq

from szmass.sky import maps, profiles
from szmass.units import ARCMIN

Z = 0.7
#: The code calls the same colossus function with the same inputs: only float round-off
#: (and the h conversion) may differ.
COLOSSUS_RTOL = 1e-10
#: Our own NFW integral (brentq to 1e-14) vs colossus's iterative solution: colossus solves
#: for the radius to ~1e-7 relative (measured 8e-8 in mass); 1e-6 is ten times that.
NFW_RTOL = 1e-6
#: SPEC: "M200c/M500c is about 1.45-1.48 at z = 0.7" (diemer15, Planck 2018). Measured
#: 1.451 (0.5e14) to 1.475 (2e14) over the grid: the range itself is the test.
SPEC_RATIO_RANGE = (1.45, 1.48)

PIXEL_ARCMIN = 0.25
FWHM_ARCMIN = 1.0
N_BEAM = 64  # 16' periodic grid: the Gaussian's periodic images are e^-(8'/0.42')^2/2 away
#: The FFT beam is the continuous Gaussian's transform sampled on the grid and cut at the
#: Nyquist l = 43200, where B_l = e^-14 ~ 7e-7: relative to the peak the sampled kernel can
#: differ from the analytic one only at that level. 1e-5 of the peak leaves a margin.
BEAM_KERNEL_ATOL_REL = 1e-5
#: B_l at l sigma = 1 is e^-1/2 exactly, up to round-off.
BEAM_TRANSFER_RTOL = 1e-12


def _set_colossus_directly(cosmo):
    h = cosmo["H0"] / 100.0
    params = dict(
        flat=True,
        H0=cosmo["H0"],
        Om0=(cosmo["ombh2"] + cosmo["omch2"] + cosmo["omnuh2"]) / h**2,
        Ob0=cosmo["ombh2"] / h**2,
        sigma8=cosmo["sigma8"],
        ns=cosmo["ns"],
        Tcmb0=cosmo["TCMB"],
    )
    colossus_cosmology.setCosmology("physics-test-direct", params=params, persistence="")
    return h


@pytest.fixture(scope="module")
def grid_masses(config):
    return np.asarray(config["grid"]["masses"], dtype=float) * 1e14


def test_m500c_vs_colossus_directly(grid_masses, cosmo):
    code = np.asarray(profiles.m200c_to_m500c(grid_masses, z=Z, cosmo=cosmo))
    h = _set_colossus_directly(cosmo)  # colossus masses are Msun/h
    m500_h, _, _ = mass_adv.changeMassDefinitionCModel(
        grid_masses * h, Z, "200c", "500c", c_model="diemer15"
    )
    np.testing.assert_allclose(code, m500_h / h, rtol=COLOSSUS_RTOL)


def test_m500c_vs_nfw_integral(grid_masses, cosmo):
    """NFW with c200c(M) from diemer15: mean density 500 rho_c inside x r200, i.e.
    mu(c x) / (mu(c) x^3) = 500/200, mu(y) = ln(1+y) - y/(1+y); M500 = M200 mu(cx)/mu(c)."""
    code = np.asarray(profiles.m200c_to_m500c(grid_masses, z=Z, cosmo=cosmo))
    h = _set_colossus_directly(cosmo)
    c200 = concentration.concentration(grid_masses * h, "200c", Z, model="diemer15")

    def mu(y):
        return math.log1p(y) - y / (1.0 + y)

    expected = []
    for c, m200 in zip(c200, grid_masses, strict=True):
        x = brentq(lambda x, c=c: mu(c * x) / (mu(c) * x**3) - 2.5, 0.1, 1.0, xtol=1e-14)
        expected.append(m200 * mu(c * x) / mu(c))
    np.testing.assert_allclose(code, expected, rtol=NFW_RTOL)


def test_m200c_over_m500c_in_spec_range(grid_masses, cosmo):
    ratio = grid_masses / np.asarray(profiles.m200c_to_m500c(grid_masses, z=Z, cosmo=cosmo))
    lo, hi = SPEC_RATIO_RANGE
    assert np.all((ratio >= lo) & (ratio <= hi)), dict(zip(grid_masses / 1e14, ratio, strict=True))


def test_beam_of_a_delta_is_the_sampled_gaussian():
    pixel_rad = PIXEL_ARCMIN * ARCMIN
    delta = np.zeros((N_BEAM, N_BEAM))
    c = N_BEAM // 2
    delta[c, c] = 1.0
    kernel = maps.convolve_beam(delta, pixel_rad=pixel_rad, fwhm_arcmin=FWHM_ARCMIN)

    sigma = FWHM_ARCMIN * ARCMIN / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    offsets = (np.arange(N_BEAM) - c) * pixel_rad
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    analytic = pixel_rad**2 / (2.0 * math.pi * sigma**2) * np.exp(-r2 / (2.0 * sigma**2))
    peak = pixel_rad**2 / (2.0 * math.pi * sigma**2)
    assert kernel[c, c] == pytest.approx(peak, rel=BEAM_KERNEL_ATOL_REL)
    np.testing.assert_allclose(kernel, analytic, rtol=0, atol=BEAM_KERNEL_ATOL_REL * peak)
    # The beam conserves the signal: its transfer is 1 at l = 0.
    assert kernel.sum() == pytest.approx(1.0, rel=1e-12)


def test_beam_transfer_at_one_sigma():
    sigma = FWHM_ARCMIN * ARCMIN / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    b = maps.beam_transfer(np.array([0.0, 1.0 / sigma, 2.0 / sigma]), FWHM_ARCMIN)
    np.testing.assert_allclose(
        b, [1.0, math.exp(-0.5), math.exp(-2.0)], rtol=BEAM_TRANSFER_RTOL, atol=0
    )
