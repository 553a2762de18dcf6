"""The cluster SZ signal against independent A10 calculations (Arnaud et al. 2010,
arXiv:0910.1234): shape integrals, the line-of-sight y profile, integrated Y of the simulated
map, the tSZ spectral function, and SPEC's beam-convolved peak decrements.

The reference here uses scipy.integrate.quad, CODATA constants from scipy and astropy's solar
mass, and a colossus cosmology built in conftest; it shares only the A10 parameter values
(typed again below from SPEC) with ``szmass.sky.profiles``.
"""

import math

import numpy as np
import pytest
from astropy import constants as astro_const
from scipy import constants as const
from scipy.integrate import quad

from szmass.sky import cluster, profiles

# A10 parameters as SPEC states them (P0 in h70^-3/2, P500 in h70^2 keV cm^-3).
P0, C500, GAMMA, ALPHA, BETA = 8.403, 1.177, 0.3081, 1.0510, 5.4905
ALPHA_P = 0.12
P500_NORM_KEV_CM3 = 1.65e-3
M_PIVOT_H70 = 3.0e14
X_MAX = 5.0
Z = 0.7

MPC_CM = const.parsec * 1e6 * 1e2
MSUN_KG = astro_const.M_sun.value
SIGMA_T_CM2 = const.physical_constants["Thomson cross section"][0] * 1e4
ME_C2_KEV = const.physical_constants["electron mass energy equivalent in MeV"][0] * 1e3
ARCMIN_RAD = math.radians(1.0 / 60.0)

# Paper settings of the cutout (SPEC §1).
NPIX, PIXEL_ARCMIN, FWHM_ARCMIN, FREQ_GHZ, SUBPIXEL = 40, 0.25, 1.0, 150.0, 8
CENTRE = (20, 20)

#: SPEC's A10 shape integrals (A10 §6: I(1) = 0.6145, I(5) = 1.1037).
SPEC_I1, SPEC_I5 = 0.6145, 1.1037
#: A10 computed I(x) from their parameters before rounding them to four digits for
#: publication. Shifting each published parameter by half its last digit moves I(1) by
#: 9e-4 (c500), 1.5e-4 (alpha), 6e-5 (P0), 5e-5 (gamma), 2e-5 (beta): 1.2e-3 in all (I(5):
#: 1.5e-3). So the published I(x) can be met only to ~2e-3 from the rounded parameters.
A10_ROUNDING_RTOL = 2e-3
#: The code's Simpson rule in ln u (20001 points) against adaptive quad (epsrel 1e-10):
#: both are converged far below this; 1e-6 still catches any change of formula.
INTEGRAL_QUADRATURE_RTOL = 1e-6
#: y(X) of the code (Simpson with 257 points on a stretched line-of-sight grid) against quad.
#: Measured 4e-8. The constants may legitimately differ by up to ~3e-5 (solar mass: 1.98847e30
#: kg in szmass.units vs astropy's 1.98841e30; G and the Mpc in colossus vs CODATA), which
#: moves R500 and P500; 1e-4 allows that, while a line-of-sight error, a lost factor of h70
#: or E(z), or a truncation at the wrong radius would be far larger.
Y_PROFILE_RTOL = 1e-4
#: Y_cyl(R500) from a fine-pixel (0.05') map against the quad integral over the cylinder.
#: Each pixel averages 8x8 samples (the cusp error, ~1e-3, sits in the central pixel only,
#: which is ~1/1500 of the disc) and the disc's edge is weighted by the pixel's area fraction
#: from 16x16 samples; y itself is tabulated at 256 log-spaced radii. Measured <= 1.5e-4;
#: the limit is 2e-3, the size of the smallest physical factor we would want to catch
#: (e.g. the alpha'_p running changes Y by ~1%).
YCYL_MAP_RTOL = 2e-3
#: Total Y of a paper-pixel (0.25', subpixel 8) map that contains the whole 5 R500 disc,
#: against the quad Y_sph(5 R500): pixel averaging conserves the flux up to the midpoint
#: rule's error on the few pixels around the cusp and the 5 R500 truncation edge. 2e-3
#: as for YCYL_MAP_RTOL.
YTOT_MAP_RTOL = 2e-3
#: A10 quote Y_cyl(R500)/Y_sph(R500) ~ 1.20 to two decimals: +-0.005 is the rounding.
A10_CYL_RATIO = 1.20
CYL_RATIO_ATOL = 0.005
#: The A10 scaling relation (eq. 25; with P0's h70^-3/2, see the test) and SPEC's 1.20 for
#: the cylinder ignore the running alpha'_p(x) of the mass slope, which the profile has:
#: exactly (quad below) Y_cyl(R500) / (1.20 Y_sph^A10) = 1.049 at M200c = 1e14 down to 0.990
#: at 8e14. 8% is the largest of these departures (4.9%) plus 3% for a relation that is meant
#: as an approximate check (1.20 and I(1) are rounded; A10 fit the slope 1.78 to data).
A10_RELATION_RTOL = 0.08
#: SPEC's f(x) = -0.9533 at 150 GHz, four decimals: +-5e-5 is the rounding.
SPEC_F_SZ = -0.9533
F_SZ_ATOL = 5e-5
#: SPEC: dT = -2.598 K x y at 150 GHz (three decimals).
SPEC_DT_PER_Y_K = -2.598
DT_PER_Y_ATOL_K = 5e-4
#: SPEC's beam-convolved peak decrements without scatter [uK] at z = 0.7, "about": the issue
#: asks for 10%, which also absorbs the rounding of these two-significant-digit values.
SPEC_PEAKS_UK = {1.0: -12.0, 2.0: -33.0, 4.0: -90.0, 8.0: -241.0}
PEAK_RTOL = 0.10
#: Pixel averaging with 8x8 vs 32x32 samples per pixel: the cusp's midpoint-rule error falls
#: ~ subpixel^-2, so 8 vs 32 measures it. ``cluster_y_map`` promises "well below 1%";
#: we hold the beam-free map (the worst case: the central pixel, all cusp) to half of that.
SUBPIXEL_RTOL_NO_BEAM = 5e-3
#: After the 1' beam (4x the pixel) the cusp error is spread over ~16 pixels: 10x tighter.
SUBPIXEL_RTOL_BEAM = 5e-4


# --- independent reference -----------------------------------------------------------------


def shape(x):
    """A10 p(x) at h70 = 1."""
    cx = C500 * x
    return P0 / (cx**GAMMA * (1.0 + cx**ALPHA) ** ((BETA - GAMMA) / ALPHA))


def alpha_p_prime(x):
    u = (x / 0.5) ** 3
    return 0.10 - (ALPHA_P + 0.10) * u / (1.0 + u)


class A10Reference:
    """A10 pressure of one cluster, from scratch: R500, P500, y(X), Y_cyl and Y_sph."""

    def __init__(self, m500_msun, *, z, cosmo, colossus_cosmo):
        self.h70 = cosmo["H0"] / 70.0
        ez = float(colossus_cosmo.Ez(z))
        h0_si = cosmo["H0"] * 1e3 / (const.parsec * 1e6)
        rho_c = 3.0 * (h0_si * ez) ** 2 / (8.0 * np.pi * const.G)  # kg m^-3
        self.r500_cm = (3.0 * m500_msun * MSUN_KG / (4.0 * np.pi * 500.0 * rho_c)) ** (1 / 3)
        self.r500_cm *= 1e2
        chi = quad(lambda zz: 1.0 / float(colossus_cosmo.Ez(zz)), 0.0, z, epsrel=1e-10)[0]
        self.d_a_cm = const.c / h0_si * chi / (1.0 + z) * 1e2
        self.theta500_rad = self.r500_cm / self.d_a_cm
        self.mfac = m500_msun * self.h70 / M_PIVOT_H70
        self.p500 = P500_NORM_KEV_CM3 * ez ** (8 / 3) * self.mfac ** (2 / 3) * self.h70**2

    def pressure(self, x):
        """P(x) / P500, including P0's h70^-3/2 and the running mass slope."""
        return self.h70**-1.5 * shape(x) * self.mfac ** (ALPHA_P + alpha_p_prime(x))

    def y(self, x_proj):
        """Compton y at projected radius X = R/R500, line of sight truncated at r = 5 R500."""
        if x_proj >= X_MAX:
            return 0.0
        half = math.sqrt(X_MAX**2 - x_proj**2)
        integral = quad(
            lambda lam: self.pressure(math.hypot(x_proj, lam)),
            0.0,
            half,
            epsabs=0.0,
            epsrel=1e-10,
            limit=400,
            points=[min(x_proj, half / 2)] if x_proj > 0 else None,
        )[0]
        return SIGMA_T_CM2 / ME_C2_KEV * self.p500 * self.r500_cm * 2.0 * integral

    def _volume_integral(self, weight, x_split):
        """4 pi int P(x) x^2 w(x) dx over 0..5 in Mpc^2 of Y (times D_A^2)."""
        f = lambda x: self.pressure(x) * x**2 * weight(x)  # noqa: E731
        total = sum(
            quad(f, a, b, epsrel=1e-11, limit=400)[0] for a, b in [(0.0, x_split), (x_split, X_MAX)]
        )
        scale = SIGMA_T_CM2 / ME_C2_KEV * self.p500 * self.r500_cm**3 / MPC_CM**2
        return 4.0 * np.pi * total * scale

    def y_sph(self, x_r):
        """Y_sph(x_r R500) D_A^2 [Mpc^2]."""
        return self._volume_integral(lambda x: 1.0 if x <= x_r else 0.0, x_r)

    def y_cyl(self, x_r):
        """Y_cyl(x_r R500) D_A^2 [Mpc^2]: a shell of radius x > x_r lies inside the cylinder
        for a fraction 1 - sqrt(1 - (x_r/x)^2) of its surface."""
        return self._volume_integral(
            lambda x: 1.0 if x <= x_r else 1.0 - math.sqrt(1.0 - (x_r / x) ** 2), x_r
        )


def _shape_integral(x_max, weight=lambda u: 1.0):
    f = lambda u: 3.0 * u**2 * shape(u) * weight(u)  # noqa: E731
    split = min(1.0, x_max)
    parts = [(0.0, split)] + ([(split, x_max)] if x_max > split else [])
    return sum(quad(f, a, b, epsabs=0.0, epsrel=1e-11, limit=400)[0] for a, b in parts)


@pytest.fixture(scope="module")
def m500_of(cosmo):
    """M500c [Msun] of an M200c [1e14 Msun] at z = 0.7 (the code's conversion; it is checked
    against colossus and an NFW integral in test_sky_mass_and_beam.py)."""
    return lambda m200c_1e14: float(profiles.m200c_to_m500c(m200c_1e14 * 1e14, z=Z, cosmo=cosmo))


def _disc_fraction(n, pixel_arcmin, radius_arcmin, samples=16):
    """Fraction of each pixel's area within radius of the map centre (n // 2, n // 2)."""
    off = (np.arange(samples) + 0.5) / samples - 0.5
    u = ((np.arange(n)[:, None] - n // 2) + off[None, :]).reshape(-1) * pixel_arcmin
    inside = np.hypot(u[:, None], u[None, :]) < radius_arcmin
    return inside.reshape(n, samples, n, samples).mean(axis=(1, 3))


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("x", "spec"), [(1.0, SPEC_I1), (5.0, SPEC_I5)])
def test_a10_shape_integral(x, spec):
    """I(x) = int_0^x 3 p(u) u^2 du: the code vs quad, and both vs A10's published values."""
    code = profiles.a10_shape_integral(x)
    ref = _shape_integral(x)
    assert code == pytest.approx(ref, rel=INTEGRAL_QUADRATURE_RTOL)
    assert ref == pytest.approx(spec, rel=A10_ROUNDING_RTOL)


def test_cylinder_to_sphere_ratio_of_the_a10_shape():
    """Y_cyl(R500)/Y_sph(R500) of the self-similar shape (truncated at 5 R500) vs A10's 1.20."""
    cyl = _shape_integral(X_MAX, lambda u: 1.0 if u <= 1 else 1.0 - math.sqrt(1.0 - 1.0 / u**2))
    ratio = cyl / _shape_integral(1.0)
    assert ratio == pytest.approx(A10_CYL_RATIO, abs=CYL_RATIO_ATOL)


@pytest.mark.parametrize("m200c_1e14", [1.0, 8.0])
def test_y_profile_vs_line_of_sight_quad(m200c_1e14, m500_of, cosmo, reference_colossus):
    m500 = m500_of(m200c_1e14)
    ref = A10Reference(m500, z=Z, cosmo=cosmo, colossus_cosmo=reference_colossus)
    x_proj = np.array([1e-3, 0.01, 0.05, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0, 4.5, 4.95])
    code = profiles.y_profile(x_proj, m500_msun=m500, z=Z, cosmo=cosmo, x_max=X_MAX)
    expected = np.array([ref.y(x) for x in x_proj])
    np.testing.assert_allclose(code, expected, rtol=Y_PROFILE_RTOL)
    beyond = profiles.y_profile(np.array([5.0, 6.0]), m500_msun=m500, z=Z, cosmo=cosmo)
    assert np.all(beyond == 0.0)


def test_theta500_vs_reference(m500_of, cosmo, reference_colossus):
    """The angular R500 that places the profile on the map (rho_crit(z), D_A)."""
    m500 = m500_of(4.0)
    ref = A10Reference(m500, z=Z, cosmo=cosmo, colossus_cosmo=reference_colossus)
    code = float(profiles.theta500_rad(m500, z=Z, cosmo=cosmo))
    assert code == pytest.approx(ref.theta500_rad, rel=Y_PROFILE_RTOL)


@pytest.mark.parametrize("m200c_1e14", [1.0, 2.0, 4.0, 8.0])
def test_ycyl_of_the_map(m200c_1e14, m500_of, cosmo, reference_colossus):
    """Y_cyl(R500) of the simulated (beam-free, noise-free) y map: sum y dOmega within
    theta500, times D_A^2, vs (a) the exact quad over the cylinder, (b) A10's relation x 1.20.
    """
    m500 = m500_of(m200c_1e14)
    ref = A10Reference(m500, z=Z, cosmo=cosmo, colossus_cosmo=reference_colossus)
    theta500_arcmin = ref.theta500_rad / ARCMIN_RAD
    pixel = 0.05
    n = 2 * math.ceil(1.2 * theta500_arcmin / pixel)
    y_map = cluster.cluster_y_map(
        m500_msun=m500, z=Z, cosmo=cosmo, n=n, pixel_arcmin=pixel, subpixel=SUBPIXEL, x_max=X_MAX
    )
    weight = _disc_fraction(n, pixel, theta500_arcmin)
    d_a_mpc = ref.d_a_cm / MPC_CM
    y_cyl_map = float((y_map * weight).sum()) * (pixel * ARCMIN_RAD) ** 2 * d_a_mpc**2

    assert y_cyl_map == pytest.approx(ref.y_cyl(1.0), rel=YCYL_MAP_RTOL)
    # y_sph_r500_a10 includes P0's h70^-3/2 in I(1) (CCL: P0_hexp = -3/2 for X-ray-based
    # normalisations like A10); without it the relation would be 6% off at h = 0.673.
    a10_cyl = A10_CYL_RATIO * profiles.y_sph_r500_a10(m500, z=Z, cosmo=cosmo)
    assert y_cyl_map == pytest.approx(a10_cyl, rel=A10_RELATION_RTOL)


@pytest.mark.parametrize("m200c_1e14", [1.0, 8.0])
def test_total_y_of_the_map_is_ysph_5r500(m200c_1e14, m500_of, cosmo, reference_colossus):
    """A paper-pixel map that holds the whole 5 R500 disc sums to Y_sph(5 R500) (= Y_cyl(5 R500)
    for a profile truncated at 5 R500): the pixel averaging conserves the signal."""
    m500 = m500_of(m200c_1e14)
    ref = A10Reference(m500, z=Z, cosmo=cosmo, colossus_cosmo=reference_colossus)
    n = 2 * math.ceil(X_MAX * ref.theta500_rad / ARCMIN_RAD / PIXEL_ARCMIN) + 4
    y_map = cluster.cluster_y_map(
        m500_msun=m500,
        z=Z,
        cosmo=cosmo,
        n=n,
        pixel_arcmin=PIXEL_ARCMIN,
        subpixel=SUBPIXEL,
        x_max=X_MAX,
    )
    d_a_mpc = ref.d_a_cm / MPC_CM
    y_tot = float(y_map.sum()) * (PIXEL_ARCMIN * ARCMIN_RAD) ** 2 * d_a_mpc**2
    assert y_tot == pytest.approx(ref.y_sph(X_MAX), rel=YTOT_MAP_RTOL)


def test_f_sz_at_150ghz():
    x = const.h * 150e9 / (const.k * 2.7255)
    assert profiles.f_sz(150.0, 2.7255) == pytest.approx(x / math.tanh(x / 2) - 4, rel=1e-12)
    assert profiles.f_sz(150.0, 2.7255) == pytest.approx(SPEC_F_SZ, abs=F_SZ_ATOL)
    dt_per_y = 2.7255 * profiles.f_sz(150.0, 2.7255)
    assert dt_per_y == pytest.approx(SPEC_DT_PER_Y_K, abs=DT_PER_Y_ATOL_K)


def _template(m500, cosmo, *, subpixel=SUBPIXEL, fwhm=FWHM_ARCMIN):
    return cluster.sz_template_uk(
        m500_msun=m500,
        z=Z,
        cosmo=cosmo,
        npix=NPIX,
        pixel_arcmin=PIXEL_ARCMIN,
        fwhm_arcmin=fwhm,
        freq_ghz=FREQ_GHZ,
        subpixel=subpixel,
        x_max=X_MAX,
    )


@pytest.mark.parametrize("m200c_1e14", sorted(SPEC_PEAKS_UK))
def test_peak_decrement_vs_spec(m200c_1e14, m500_of, cosmo):
    """Beam-convolved central decrement at the paper's settings, no scatter."""
    template = _template(m500_of(m200c_1e14), cosmo)
    assert np.unravel_index(np.argmin(template), template.shape) == CENTRE
    assert template[CENTRE] == pytest.approx(SPEC_PEAKS_UK[m200c_1e14], rel=PEAK_RTOL)


@pytest.mark.parametrize("m200c_1e14", [1.0, 8.0])
def test_pixel_averaging_converges(m200c_1e14, m500_of, cosmo):
    """Sub-pixel sampling 8 vs 32 per side, with and without the beam."""
    m500 = m500_of(m200c_1e14)
    no_beam = [_template(m500, cosmo, subpixel=s, fwhm=0.0) for s in (SUBPIXEL, 32)]
    peak = np.abs(no_beam[1]).max()
    assert np.abs(no_beam[0] - no_beam[1]).max() < SUBPIXEL_RTOL_NO_BEAM * peak
    beam = [_template(m500, cosmo, subpixel=s) for s in (SUBPIXEL, 32)]
    peak = np.abs(beam[1]).max()
    assert np.abs(beam[0] - beam[1]).max() < SUBPIXEL_RTOL_BEAM * peak
