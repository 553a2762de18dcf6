"""The cluster's redshift dependence against astropy.cosmology (issue 16): the A10 pressure
normalisation P500 ∝ E(z)^(8/3) (Arnaud et al. 2010, arXiv:0910.1234, eq. 5), its effect on
the projected y profile, and the angular size theta500 = R500 / D_A(z).

The reference is astropy's FlatLambdaCDM with the config's cosmology (one 0.06 eV neutrino,
N_eff = 3.046, T_CMB from the config), independent of colossus, which szmass uses for E(z),
rho_crit(z) and D_A. It shares only the A10 constants, typed again from SPEC §1.
"""

from typing import Any

import astropy.units as u
import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM

from szmass.sky import profiles

# A10 eq. 5 as SPEC states it: P500 = 1.65e-3 E(z)^(8/3) (M500 / 3e14 h70^-1 Msun)^(2/3) h70^2.
P500_NORM_KEV_CM3 = 1.65e-3
M_PIVOT_H70 = 3.0e14
M500_MSUN = 3.0e14
Z_PRESSURE = (0.3, 1.2)
Z_ANGLE = (0.3, 0.7, 1.2)
#: sigma8 sets colossus's power spectrum only, which none of E(z), rho_crit(z), D_A uses; the
#: value is CAMB's for this cosmology (tests/unit/conftest.py), so no CAMB run is needed here.
SIGMA8 = 0.8119

#: How close szmass's cosmology should be to astropy's. CAMB (the spectra) treats the 0.06 eV
#: neutrino as astropy does: measured, CAMB's D_A and E(z) agree with astropy's to < 7e-6 at
#: z <= 1.2. colossus (E(z), rho_crit(z), D_A, haloes) counts that neutrino's mass in Omega_m
#: and also keeps all N_eff = 3.046 neutrinos massless in Omega_r (9.23e-5), one neutrino's
#: radiation (1.26e-5) too many; that raises E(z) by ~dOmega_r (1+z)^4 / 2E^2. Measured,
#: colossus against astropy at z = 0.3, 0.7, 1.2: E(z) +0.6e-5, +1.6e-5, +2.8e-5; D_A -0.3e-5,
#: -0.7e-5, -1.1e-5; rho_crit +1.2e-5, +3.1e-5, +5.5e-5 (colossus's G and Msun agree with
#: astropy's to 1e-8: the whole difference is this radiation). For scale: leaving radiation out
#: altogether moves E(z) by 2.6e-4 and D_A by 1.1e-4 at z = 1.2, and an exponent 7/3 for 8/3
#: moves the P500 ratio by 20%.
#:
#: The P500 ratio between z = 1.2 and 0.3 carries 8/3 x the difference of the E(z) offsets:
#: measured 5.8e-5. 2e-4 allows three times that (radiation left out: 5e-4).
P500_RATIO_RTOL = 2e-4
#: P500 itself: 8/3 x the E(z) offset, measured 1.6e-5 (z = 0.3) and 7.4e-5 (z = 1.2).
P500_RTOL = 2e-4
#: The y profile at fixed X = R/R500 scales as P500 R500 ∝ E(z)^(8/3) rho_crit(z)^(-1/3): twice
#: the E(z) offsets (measured 4.3e-5); the line-of-sight integral is the same at both z and
#: cancels. 2e-4 as for P500.
Y_RATIO_RTOL = 2e-4
#: theta500 = R500 / D_A: the rho_crit^(-1/3) (<= 1.8e-5) and D_A (<= 1.1e-5) offsets partly
#: cancel (measured theta500 <= 7.4e-6, D_A <= 1.1e-5). 5e-5 allows a few times the larger and
#: still resolves D_A without radiation (7e-5 at z = 0.7, 1.1e-4 at 1.2); a comoving distance
#: for D_A (a factor 1 + z), a lost h or R200 for R500 (~30%) would be far outside.
THETA500_RTOL = 5e-5


@pytest.fixture(scope="module")
def cosmo(config) -> dict[str, Any]:
    """The config's cosmology as szmass passes it on, with the derived sigma8."""
    return {**config["cosmology"], "sigma8": SIGMA8}


@pytest.fixture(scope="module")
def astropy_cosmo(config) -> FlatLambdaCDM:
    """astropy's flat LCDM of the config: Omega_m = (ombh2 + omch2) / h^2 for baryons + CDM,
    and the neutrino density from one 0.06 eV neutrino (omnuh2 = 6.45e-4 is CAMB's value for
    0.06 eV) among N_eff = 3.046."""
    c = config["cosmology"]
    h = c["H0"] / 100.0
    assert c["omnuh2"] == pytest.approx(0.06 / 93.01, rel=0.01)  # the 0.06 eV neutrino
    return FlatLambdaCDM(
        H0=c["H0"],
        Om0=(c["ombh2"] + c["omch2"]) / h**2,
        Ob0=c["ombh2"] / h**2,
        Tcmb0=c["TCMB"],
        Neff=3.046,
        m_nu=[0.06, 0.0, 0.0] * u.eV,
    )


def _h70(cosmo) -> float:
    return cosmo["H0"] / 70.0


def _p500_reference(z: float, cosmo, astropy_cosmo) -> float:
    """A10 eq. 5 [keV cm^-3] with astropy's E(z)."""
    ez = float(astropy_cosmo.efunc(z))
    h70 = _h70(cosmo)
    return P500_NORM_KEV_CM3 * ez ** (8 / 3) * (M500_MSUN * h70 / M_PIVOT_H70) ** (2 / 3) * h70**2


def test_p500_scales_as_e_of_z_to_the_8_thirds(cosmo, astropy_cosmo):
    lo, hi = Z_PRESSURE
    got = {z: profiles.p500_kev_cm3(M500_MSUN, z=z, cosmo=cosmo) for z in Z_PRESSURE}
    expected_ratio = (astropy_cosmo.efunc(hi) / astropy_cosmo.efunc(lo)) ** (8 / 3)
    np.testing.assert_allclose(got[hi] / got[lo], expected_ratio, rtol=P500_RATIO_RTOL)
    for z in Z_PRESSURE:
        np.testing.assert_allclose(
            got[z], _p500_reference(z, cosmo, astropy_cosmo), rtol=P500_RTOL, err_msg=z
        )


def test_y_profile_carries_the_pressure_and_r500_scaling(cosmo, astropy_cosmo):
    """At the same M500 and X = R/R500 the profile's shape and mass terms are the same at
    both z, so y(z_hi) / y(z_lo) = [P500 R500](z_hi) / [P500 R500](z_lo), with
    R500 ∝ rho_crit(z)^(-1/3): (E_hi / E_lo)^(8/3) x (rho_lo / rho_hi)^(1/3)."""
    lo, hi = Z_PRESSURE
    x = np.array([0.05, 0.3, 1.0, 2.5])
    y = {z: profiles.y_profile(x, m500_msun=M500_MSUN, z=z, cosmo=cosmo) for z in Z_PRESSURE}
    e_ratio = astropy_cosmo.efunc(hi) / astropy_cosmo.efunc(lo)
    rho_ratio = astropy_cosmo.critical_density(lo) / astropy_cosmo.critical_density(hi)
    expected = e_ratio ** (8 / 3) * float(rho_ratio.decompose()) ** (1 / 3)
    np.testing.assert_allclose(y[hi] / y[lo], expected, rtol=Y_RATIO_RTOL)


@pytest.mark.parametrize("z", Z_ANGLE)
def test_theta500_is_r500_over_the_angular_diameter_distance(z, cosmo, astropy_cosmo):
    """theta500 = R500 / D_A(z), R500 = (3 M500 / (4 pi 500 rho_crit(z)))^(1/3), both from
    astropy (rho_crit = 3 H(z)^2 / 8 pi G)."""
    rho_c = astropy_cosmo.critical_density(z).to_value(u.Msun / u.Mpc**3)
    r500_mpc = (3.0 * M500_MSUN / (4.0 * np.pi * 500.0 * rho_c)) ** (1 / 3)
    d_a_mpc = astropy_cosmo.angular_diameter_distance(z).to_value(u.Mpc)
    got = float(profiles.theta500_rad(M500_MSUN, z=z, cosmo=cosmo))
    np.testing.assert_allclose(got, r500_mpc / d_a_mpc, rtol=THETA500_RTOL)
    np.testing.assert_allclose(
        profiles.angular_diameter_distance_mpc(z, cosmo), d_a_mpc, rtol=THETA500_RTOL
    )
