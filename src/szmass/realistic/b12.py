"""The Battaglia et al. 2012 (B12, arXiv:1109.3711) pressure profile of the realistic-profile
stand-in (``szmass.realistic``): the AGN-feedback, Delta = 200 fit, its projected Compton-y
profiles and tables, the projection of a triaxial (ellipsoidal) pressure distribution, and the
painting of pixel-averaged profiles into maps (``paint_profile``, ``b12_y_map``).
"""

from typing import Any

import numpy as np
from scipy import constants as const

from ..sky import cosmology as cosmo_mod
from ..units import ARCMIN, MPC_CM, MSUN, SIGMA_T_OVER_MEC2_CM2_PER_KEV

# --- Battaglia et al. 2012 (arXiv:1109.3711) ----------------------------------------------
#: B12 Table 1, AGN feedback, Delta = 200: (A0, alpha_m, alpha_z) of
#: A = A0 (M200c / 1e14 Msun)^alpha_m (1 + z)^alpha_z (their eq. 11).
B12_P0 = (18.1, 0.154, -0.758)
B12_XC = (0.497, -0.00865, 0.731)
B12_BETA = (4.35, 0.0393, 0.415)
#: Fixed shape parameters of B12 eq. 10 (gamma = -0.3, alpha = 1).
B12_GAMMA = -0.3
B12_ALPHA = 1.0
B12_MPIVOT_MSUN = 1.0e14
#: B12's P200 scales the thermal pressure of all particles. The electrons' share in a fully
#: ionized H + He gas of hydrogen mass fraction X is n_e / (n_e + n_i) = (2X + 2) / (5X + 3)
#: (n_e = (1 + X)/2, n_i = (3X + 1)/4 per proton mass), so P_e = 0.518 P_th at X = 0.76, the
#: conversion of e.g. Hill & Pajer 2013 (arXiv:1303.4726).
HYDROGEN_MASS_FRACTION = 0.76
P_E_OVER_P_TH = (2.0 * HYDROGEN_MASS_FRACTION + 2.0) / (5.0 * HYDROGEN_MASS_FRACTION + 3.0)

#: Radial nodes of the projected profile tables (log-spaced, 1e-4 .. x_max R200).
_N_TAB = 256
_R_MIN_R200 = 1.0e-4


# --- the B12 profile ------------------------------------------------------------------------


def _b12_param(coeffs: tuple[float, float, float], m200c_msun, z) -> np.ndarray:
    a0, alpha_m, alpha_z = coeffs
    return (
        a0
        * (np.asarray(m200c_msun) / B12_MPIVOT_MSUN) ** alpha_m
        * (1.0 + np.asarray(z)) ** alpha_z
    )


def b12_shape(x: np.ndarray, *, m200c_msun: float, z: float) -> np.ndarray:
    """P_th / P200 of B12 eq. 10 at x = r / R200c:
    P0 (x/x_c)^gamma [1 + (x/x_c)^alpha]^(-beta), with P0, x_c, beta from eq. 11 and Table 1
    (AGN feedback, Delta = 200), gamma = -0.3, alpha = 1. M200c in Msun (no h)."""
    p0 = _b12_param(B12_P0, m200c_msun, z)
    xc = _b12_param(B12_XC, m200c_msun, z)
    beta = _b12_param(B12_BETA, m200c_msun, z)
    u = np.asarray(x, dtype=float) / xc
    return p0 * u**B12_GAMMA * (1.0 + u**B12_ALPHA) ** (-beta)


def r200c_mpc(m200c_msun: np.ndarray, *, z: np.ndarray, cosmo: dict[str, Any]) -> np.ndarray:
    """R200c [Mpc]: the radius enclosing 200 rho_crit(z) (arrays broadcast)."""
    c = cosmo_mod.colossus(cosmo)
    rho_c = c.rho_c(np.asarray(z, dtype=float)) * cosmo_mod.h(cosmo) ** 2 * 1e9  # Msun/Mpc^3
    return (3.0 * np.asarray(m200c_msun, dtype=float) / (4.0 * np.pi * 200.0 * rho_c)) ** (1 / 3)


def b12_p200_kev_cm3(m200c_msun: np.ndarray, *, z: np.ndarray, cosmo: dict[str, Any]) -> np.ndarray:
    """The thermal-pressure scale of B12 eq. 10: P200 = G M200 200 rho_crit(z) f_b / (2 R200),
    f_b = Omega_b / Omega_m, in keV cm^-3 (arrays broadcast)."""
    c = cosmo_mod.colossus(cosmo)
    hh = cosmo_mod.h(cosmo)
    zz = np.asarray(z, dtype=float)
    rho_c_si = c.rho_c(zz) * hh**2 * 1e9 * MSUN / (MPC_CM / 100.0) ** 3  # kg / m^3
    f_b = cosmo["ombh2"] / hh**2 / cosmo_mod.omega_m(cosmo)
    m = np.asarray(m200c_msun, dtype=float)
    r200_m = r200c_mpc(m, z=zz, cosmo=cosmo) * MPC_CM / 100.0
    p200_pa = const.G * m * MSUN * 200.0 * rho_c_si * f_b / (2.0 * r200_m)
    return p200_pa / (1.0e3 * const.electron_volt) * 1.0e-6  # J m^-3 -> keV cm^-3


def _b12_y_core(
    x_proj: np.ndarray,
    m200c: np.ndarray,
    z: np.ndarray,
    cosmo: dict[str, Any],
    x_max: float,
    n_los: int,
) -> np.ndarray:
    """y at X = R/R200c, x_proj (n_h, k), for n_h halos of M200c ``m200c`` (n_h,) at ``z``."""
    from scipy.integrate import simpson

    r200_cm = r200c_mpc(m200c, z=z, cosmo=cosmo) * MPC_CM
    amp = (
        SIGMA_T_OVER_MEC2_CM2_PER_KEV
        * P_E_OVER_P_TH
        * b12_p200_kev_cm3(m200c, z=z, cosmo=cosmo)
        * r200_cm
    )
    xp = np.minimum(np.asarray(x_proj, dtype=float), x_max)
    lam_max = np.sqrt(np.clip(x_max**2 - xp**2, 0.0, None))
    a = 12.0
    u = np.linspace(0.0, 1.0, n_los)
    g = np.expm1(a * u) / np.expm1(a)  # 0..1, dense near the plane of the sky
    dg = a * np.exp(a * u) / np.expm1(a)
    lam = lam_max[..., None] * g
    r = np.maximum(np.sqrt(xp[..., None] ** 2 + lam**2), 1e-12)
    mm, zz = (np.asarray(v, dtype=float)[:, None, None] for v in (m200c, z))
    integrand = b12_shape(r, m200c_msun=mm, z=zz)
    los = 2.0 * lam_max * simpson(integrand * dg, x=u, axis=-1)
    return amp[:, None] * los


def b12_y_profile(
    x_proj: np.ndarray,
    *,
    m200c_msun: float,
    z: float,
    cosmo: dict[str, Any],
    x_max: float = 4.0,
    n_los: int = 129,
) -> np.ndarray:
    """Compton y of the spherical B12 cluster at projected radii X = R / R200c (any shape):
    y = (sigma_T / m_e c^2) ∫ P_e dl, P_e = P_th (2X_H + 2)/(5X_H + 3), P_th = P200 b12_shape,
    truncated at r = x_max R200c (y = 0 for X >= x_max).

    The line-of-sight grid is concentrated near the plane of the sky (as in
    ``profiles.y_profile``), which resolves the r^-0.3 cusp.
    """
    xp = np.asarray(x_proj, dtype=float)
    y = _b12_y_core(xp.reshape(1, -1), np.array([m200c_msun]), np.array([z]), cosmo, x_max, n_los)
    return y.reshape(xp.shape)


def b12_y_sph_mpc2(
    *, m200c_msun: float, z: float, cosmo: dict[str, Any], x: float = 1.0, n: int = 4001
) -> float:
    """Spherical Y_sph(x R200c) = (sigma_T / m_e c^2) ∫_0^{x R200c} 4 pi r^2 P_e(r) dr [Mpc^2]
    of the B12 cluster (Simpson in ln r from 1e-8 R200c; the integrand vanishes as r^2.7)."""
    from scipy.integrate import simpson

    r200_mpc = float(r200c_mpc(m200c_msun, z=z, cosmo=cosmo))
    p_e = P_E_OVER_P_TH * float(b12_p200_kev_cm3(m200c_msun, z=z, cosmo=cosmo))  # keV cm^-3
    lnu = np.linspace(np.log(1e-8), np.log(x), n)
    u = np.exp(lnu)
    shape_integral = simpson(4.0 * np.pi * u**3 * b12_shape(u, m200c_msun=m200c_msun, z=z), x=lnu)
    # keV cm^-3 x cm^2 / keV x R^3 [Mpc^2 cm] -> Mpc^2
    return float(SIGMA_T_OVER_MEC2_CM2_PER_KEV * p_e * shape_integral * r200_mpc**3 * MPC_CM)


def b12_y_tables(
    *,
    m200c_msun: np.ndarray,
    z: np.ndarray,
    cosmo: dict[str, Any],
    x_max: float,
    n_nodes: int = _N_TAB,
    n_los: int = 129,
) -> tuple[np.ndarray, np.ndarray]:
    """Projected spherical B12 profiles tabulated for painting, for n halos at once:
    (radii [arcmin] (n, n_nodes), y (n, n_nodes)), log-spaced radii from 1e-4 to ``x_max``
    R200c; y is 0 at the last node."""
    m = np.atleast_1d(np.asarray(m200c_msun, dtype=float))
    zz = np.atleast_1d(np.asarray(z, dtype=float))
    c = cosmo_mod.colossus(cosmo)
    d_a = c.angularDiameterDistance(zz) / cosmo_mod.h(cosmo)
    theta200 = r200c_mpc(m, z=zz, cosmo=cosmo) / d_a / ARCMIN
    x = np.geomspace(_R_MIN_R200, x_max, n_nodes)
    y = _b12_y_core(np.broadcast_to(x, (len(m), n_nodes)), m, zz, cosmo, x_max, n_los)
    y[:, -1] = 0.0
    return x[None, :] * theta200[:, None], y


def b12_y_table(
    *, m200c_msun: float, z: float, cosmo: dict[str, Any], x_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """``b12_y_tables`` of one halo: (radii [arcmin], y), 256 nodes."""
    radii, y = b12_y_tables(m200c_msun=m200c_msun, z=z, cosmo=cosmo, x_max=x_max)
    return radii[0], y[0]


# --- triaxial projection and painting -------------------------------------------------------


def ellipsoid_projection(*, q: float, s: float, rotation: np.ndarray) -> tuple[np.ndarray, float]:
    """Projection of a pressure P(r_e) on the ellipsoidal radius of an ellipsoid with axis
    ratios 1 : q : s (semi-axes scaled by (q s)^(-1/3), so its volume, and the volume integral
    of P, equal the sphere's), rotated by ``rotation`` (3x3, body -> observer; observer axes
    x, y on the sky, z along the line of sight).

    With r_e^2 = v^T M v, M = R diag(1/a_i^2) R^T, the line-of-sight integral is exact:
    ∫ P(r_e) dl = y_sph(R_e) / sqrt(M_zz), R_e^2 = u^T Q u, Q = M_xy - m m^T / M_zz,
    m = (M_xz, M_yz), u = sky offset. Since det M = 1, det Q = 1 / M_zz and ∫ y d^2u = Y_sph.

    Returns:
        (Q (2x2), amplitude 1/sqrt(M_zz)).
    """
    axes = np.array([1.0, q, s]) / (q * s) ** (1.0 / 3.0)
    rot = np.asarray(rotation, dtype=float)
    m = rot @ np.diag(1.0 / axes**2) @ rot.T
    a = m[2, 2]
    q2 = m[:2, :2] - np.outer(m[:2, 2], m[:2, 2]) / a
    return q2, 1.0 / np.sqrt(a)


def paint_profile(
    out: np.ndarray,
    *,
    radii_arcmin: np.ndarray,
    y_nodes: np.ndarray,
    pixel_arcmin: float,
    subpixel: int,
    centre_arcmin: tuple[float, float] = (0.0, 0.0),
    q2: np.ndarray | None = None,
    amplitude: float = 1.0,
) -> None:
    """Add a pixel-averaged projected profile to ``out`` (n, n) in place.

    Each pixel is the mean of ``subpixel``^2 point samples (as ``cluster.cluster_y_map``)
    of amplitude x y(R_e), R_e^2 = u^T q2 u (q2 = identity: a circle), u = sky offset from
    ``centre_arcmin`` = (x, y) [arcmin], measured from pixel (n//2, n//2); x runs along the
    last axis. y is interpolated linearly in ln R between the nodes, constant inside the first,
    0 beyond the last. Only the pixels within the profile's extent are computed.
    """
    n = out.shape[-1]
    c = n // 2
    q2 = np.eye(2) if q2 is None else np.asarray(q2, dtype=float)
    r_max = radii_arcmin[-1]
    inv = np.linalg.inv(q2)
    half = r_max * np.sqrt(np.array([inv[0, 0], inv[1, 1]]))  # extent in x, y [arcmin]
    offsets = (np.arange(subpixel) + 0.5) / subpixel - 0.5
    axes = []
    for k in range(2):
        lo = int(np.floor((centre_arcmin[k] - half[k]) / pixel_arcmin + c + 0.5))
        hi = int(np.floor((centre_arcmin[k] + half[k]) / pixel_arcmin + c + 0.5)) + 1
        lo, hi = max(lo, 0), min(hi, n)
        if lo >= hi:
            return
        u = ((np.arange(lo, hi)[:, None] - c) + offsets[None, :]).reshape(-1) * pixel_arcmin
        axes.append((lo, hi, u - centre_arcmin[k]))
    (x0, x1, dx), (y0, y1, dy) = axes
    r2 = q2[0, 0] * dx[None, :] ** 2 + 2.0 * q2[0, 1] * dy[:, None] * dx[None, :]
    r2 += q2[1, 1] * dy[:, None] ** 2
    log_r = 0.5 * np.log(np.maximum(r2, radii_arcmin[0] ** 2))
    y = np.interp(log_r, np.log(radii_arcmin), y_nodes, right=0.0)
    block = y.reshape(y1 - y0, subpixel, x1 - x0, subpixel).mean(axis=(1, 3))
    out[y0:y1, x0:x1] += amplitude * block


def b12_y_map(
    *,
    m200c_msun: float,
    z: float,
    cosmo: dict[str, Any],
    n: int,
    pixel_arcmin: float,
    subpixel: int,
    x_max: float = 4.0,
    centre_arcmin: tuple[float, float] = (0.0, 0.0),
    q: float = 1.0,
    s: float = 1.0,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Pixel-averaged Compton-y map (n, n) of one B12 cluster, spherical by default, or
    triaxial (axis ratios ``q``, ``s``, ``rotation`` as in ``ellipsoid_projection``)."""
    radii, y_nodes = b12_y_table(m200c_msun=m200c_msun, z=z, cosmo=cosmo, x_max=x_max)
    q2, amp = None, 1.0
    if rotation is not None or q != 1.0 or s != 1.0:
        rot = np.eye(3) if rotation is None else rotation
        q2, amp = ellipsoid_projection(q=q, s=s, rotation=rot)
    out = np.zeros((n, n))
    paint_profile(
        out,
        radii_arcmin=radii,
        y_nodes=y_nodes,
        pixel_arcmin=pixel_arcmin,
        subpixel=subpixel,
        centre_arcmin=centre_arcmin,
        q2=q2,
        amplitude=amp,
    )
    return out
