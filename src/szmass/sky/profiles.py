"""Cluster thermal SZ signal from the Arnaud et al. 2010 (A10, arXiv:0910.1234) pressure profile.

Masses are in Msun (no h), lengths in Mpc, angles in radians, y dimensionless, temperatures in K.
"""

from typing import Any

import numpy as np
from colossus.halo import mass_adv

from ..units import BOLTZMANN_K, MPC_CM, PLANCK_H, SIGMA_T_OVER_MEC2_CM2_PER_KEV
from . import cosmology as cosmo_mod

# A10 universal profile, eq. 12 and Appendix (P0 in units of h70^-3/2).
A10_P0 = 8.403
A10_C500 = 1.177
A10_GAMMA = 0.3081
A10_ALPHA = 1.0510
A10_BETA = 5.4905
A10_ALPHA_P = 0.12
A10_P500_KEV_CM3 = 1.65e-3  # times E(z)^(8/3) (M500 / 3e14 h70^-1 Msun)^(2/3) h70^2, eq. 5
A10_MPIVOT_MSUN_H70 = 3.0e14  # pivot mass, h70^-1 Msun
#: A10 eq. 25 normalisation of Y_sph(R500) / I(1), h70^-1 Mpc^2, used as an independent check.
A10_YSPH_NORM_MPC2 = 2.925e-5


def a10_shape(x: np.ndarray) -> np.ndarray:
    """Generalised NFW shape p(x), x = r/R500 (A10 eq. 11), for h70 = 1."""
    cx = A10_C500 * np.asarray(x, dtype=float)
    return A10_P0 / (cx**A10_GAMMA * (1.0 + cx**A10_ALPHA) ** ((A10_BETA - A10_GAMMA) / A10_ALPHA))


def a10_alpha_p_prime(x: np.ndarray) -> np.ndarray:
    """Running of the mass slope, alpha'_p(x) (A10 eq. 9)."""
    u = (np.asarray(x, dtype=float) / 0.5) ** 3
    return 0.10 - (A10_ALPHA_P + 0.10) * u / (1.0 + u)


def a10_shape_integral(x_max: float, n: int = 20001) -> float:
    """I(x) = ∫_0^x 3 p(u) u^2 du (A10 eq. 26; I(1) = 0.6145, I(5) = 1.1037 for h70 = 1).

    The integrand vanishes as u^(2-gamma) at 0; integrated in ln u with Simpson's rule.
    """
    from scipy.integrate import simpson

    lnu = np.linspace(np.log(1e-8), np.log(x_max), n)
    u = np.exp(lnu)
    return float(simpson(3.0 * a10_shape(u) * u**3, x=lnu))


def m200c_to_m500c(m200c_msun: np.ndarray, *, z: float, cosmo: dict[str, Any]) -> np.ndarray:
    """M500c [Msun] from M200c with the Diemer & Kravtsov 2015 concentrations (colossus).

    The NFW profile with c200c from ``diemer15`` is integrated to 500 x rho_crit(z).
    """
    hh = cosmo_mod.h(cosmo)
    cosmo_mod.colossus(cosmo)
    m = np.atleast_1d(np.asarray(m200c_msun, dtype=float))
    m500, _, _ = mass_adv.changeMassDefinitionCModel(m * hh, z, "200c", "500c", c_model="diemer15")
    m500 = np.asarray(m500, dtype=float) / hh
    return m500 if np.ndim(m200c_msun) else m500[0]


def concentration_200c(m200c_msun: np.ndarray, *, z: float, cosmo: dict[str, Any]) -> np.ndarray:
    """c200c of the Diemer & Kravtsov 2015 model (colossus), for the NFW mass maps."""
    from colossus.halo import concentration

    cosmo_mod.colossus(cosmo)
    return concentration.concentration(
        np.asarray(m200c_msun, dtype=float) * cosmo_mod.h(cosmo), "200c", z, model="diemer15"
    )


def r500_mpc(m500_msun: np.ndarray, *, z: float, cosmo: dict[str, Any]) -> np.ndarray:
    """R500 [Mpc]: the radius enclosing 500 rho_crit(z)."""
    c = cosmo_mod.colossus(cosmo)
    rho_c = c.rho_c(z) * cosmo_mod.h(cosmo) ** 2 * 1e9  # Msun h^2/kpc^3 -> Msun/Mpc^3
    return (3.0 * np.asarray(m500_msun, dtype=float) / (4.0 * np.pi * 500.0 * rho_c)) ** (1 / 3)


def angular_diameter_distance_mpc(z: float, cosmo: dict[str, Any]) -> float:
    """D_A(z) [Mpc] (colossus, flat)."""
    return float(cosmo_mod.colossus(cosmo).angularDiameterDistance(z) / cosmo_mod.h(cosmo))


def theta500_rad(m500_msun: np.ndarray, *, z: float, cosmo: dict[str, Any]) -> np.ndarray:
    """Angular R500 [rad]."""
    return r500_mpc(m500_msun, z=z, cosmo=cosmo) / angular_diameter_distance_mpc(z, cosmo)


def p500_kev_cm3(m500_msun: float, *, z: float, cosmo: dict[str, Any]) -> float:
    """Characteristic pressure P500 [keV cm^-3] (A10 eq. 5)."""
    hh70 = cosmo_mod.h70(cosmo)
    ez = float(cosmo_mod.colossus(cosmo).Ez(z))
    mfac = m500_msun * hh70 / A10_MPIVOT_MSUN_H70
    return A10_P500_KEV_CM3 * ez ** (8 / 3) * mfac ** (2 / 3) * hh70**2


def y_profile(
    x_proj: np.ndarray,
    *,
    m500_msun: float,
    z: float,
    cosmo: dict[str, Any],
    x_max: float = 5.0,
    n_los: int = 129,
) -> np.ndarray:
    """Compton y at projected radii X = R/R500, integrating the A10 pressure along the line of
    sight out to r = x_max R500 (A10 eq. 13 with the alpha'_p running of eq. 9).

    Args:
        x_proj: projected radii in units of R500, any shape; y = 0 for X >= x_max.
        n_los: points of the line-of-sight grid, concentrated near the plane of the sky
            (l = L (e^{a u} - 1)/(e^a - 1), Simpson in u), which resolves the r^-0.31 cusp.
    Returns:
        y, same shape as ``x_proj``.
    """
    from scipy.integrate import simpson

    hh70 = cosmo_mod.h70(cosmo)
    mfac = m500_msun * hh70 / A10_MPIVOT_MSUN_H70
    r500_cm = float(r500_mpc(m500_msun, z=z, cosmo=cosmo)) * MPC_CM
    amp = SIGMA_T_OVER_MEC2_CM2_PER_KEV * p500_kev_cm3(m500_msun, z=z, cosmo=cosmo) * r500_cm
    amp *= hh70 ** (-1.5)  # P0 is in units of h70^-3/2

    xp = np.asarray(x_proj, dtype=float)
    flat = xp.reshape(-1)
    inside = flat < x_max
    lam_max = np.sqrt(np.clip(x_max**2 - flat[inside] ** 2, 0.0, None))
    a = 12.0
    u = np.linspace(0.0, 1.0, n_los)
    g = np.expm1(a * u) / np.expm1(a)  # 0..1, dense near 0
    dg = a * np.exp(a * u) / np.expm1(a)
    lam = lam_max[:, None] * g[None, :]
    r = np.sqrt(flat[inside][:, None] ** 2 + lam**2)
    r = np.maximum(r, 1e-12)
    integrand = a10_shape(r) * mfac ** (A10_ALPHA_P + a10_alpha_p_prime(r))
    los = 2.0 * lam_max * simpson(integrand * dg[None, :], x=u, axis=1)
    out = np.zeros_like(flat)
    out[inside] = amp * los
    return out.reshape(xp.shape)


def f_sz(freq_ghz: float, t_cmb_k: float) -> float:
    """Non-relativistic tSZ spectral function f(x) = x coth(x/2) - 4, x = h nu / k T_CMB
    (Sunyaev & Zel'dovich 1972); dT/T_CMB = f(x) y. f = -0.9533 at 150 GHz."""
    x = PLANCK_H * freq_ghz * 1e9 / (BOLTZMANN_K * t_cmb_k)
    return float(x / np.tanh(x / 2.0) - 4.0)


def y_sph_r500_a10(m500_msun: float, *, z: float, cosmo: dict[str, Any]) -> float:
    """Y_sph(R500) [Mpc^2] from the A10 scaling (eq. 25): 2.925e-5 I(1) h70^-1 E(z)^(2/3)
    (M500 / 3e14 h70^-1)^(5/3 + alpha_p) Mpc^2, where I(1) = 0.6145 h70^-3/2 carries the units
    of P0, so Y ∝ h70^-5/2 overall. Independent of the profile integration here (it neglects
    the alpha'_p running, a few per cent)."""
    hh70 = cosmo_mod.h70(cosmo)
    ez = float(cosmo_mod.colossus(cosmo).Ez(z))
    mfac = m500_msun * hh70 / A10_MPIVOT_MSUN_H70
    i1 = 0.6145 * hh70**-1.5  # A10's published I(1), for P0 in units of h70^-3/2
    return A10_YSPH_NORM_MPC2 * i1 / hh70 * ez ** (2 / 3) * mfac ** (5 / 3 + A10_ALPHA_P)
