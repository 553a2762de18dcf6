"""Unrelated halos along the line of sight of the realistic-profile stand-in
(``szmass.realistic``): expected counts in a cone from the Tinker et al. 2008 (arXiv:0803.2706)
mass function (colossus) and a Poisson draw of halos (mass, redshift, sky position) from them.
"""

from functools import lru_cache
from typing import Any

import numpy as np
from scipy import constants as const

from ..sky import cosmology as cosmo_mod
from ..units import ARCMIN

#: Upper mass of the line-of-sight draw [Msun]; the mass function is negligible above.
LOS_M_MAX_MSUN = 1.0e16
#: Number of cells of the (z, ln M) table the line-of-sight halos are drawn from.
_LOS_NZ, _LOS_NM = 160, 256


@lru_cache(maxsize=4)
def _los_table(
    z_range: tuple[float, float], m_range: tuple[float, float], cosmo_items: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z edges, ln M edges, expected number per arcmin^2 in each (z, ln M) cell)."""
    from colossus.lss import mass_function

    cosmo = dict(cosmo_items)
    c = cosmo_mod.colossus(cosmo)
    hh = cosmo_mod.h(cosmo)
    z_edges = np.linspace(z_range[0], z_range[1], _LOS_NZ + 1)
    lnm_edges = np.linspace(np.log(m_range[0]), np.log(m_range[1]), _LOS_NM + 1)
    z_mid = 0.5 * (z_edges[1:] + z_edges[:-1])
    m_mid = np.exp(0.5 * (lnm_edges[1:] + lnm_edges[:-1]))
    arcmin2_sr = ARCMIN**2
    hubble_dist = const.c / 1e3 / 100.0  # c / (100 km/s/Mpc) in Mpc/h
    counts = np.empty((_LOS_NZ, _LOS_NM))
    for i, z in enumerate(z_mid):
        dn = mass_function.massFunction(
            m_mid * hh, z, mdef="200c", model="tinker08", q_out="dndlnM"
        )  # (Mpc/h)^-3 comoving
        dv = hubble_dist / c.Ez(z) * c.comovingDistance(0.0, z) ** 2  # (Mpc/h)^3 / sr / dz
        counts[i] = dn * dv * arcmin2_sr
    counts *= np.diff(z_edges)[:, None] * np.diff(lnm_edges)[None, :]
    return z_edges, lnm_edges, counts


def los_expected_counts(
    *,
    area_arcmin2: float,
    z_range: tuple[float, float],
    m_range: tuple[float, float],
    cosmo: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected number of halos in a cone of ``area_arcmin2``: (z edges, ln M200c [Msun] edges,
    counts per (z, ln M) cell), from dN = dn/dlnM(M, z) dV_c/dz/dOmega dz dlnM dOmega with the
    Tinker et al. 2008 (arXiv:0803.2706) mass function for M200c (colossus ``tinker08``) and
    dV_c/dz/dOmega = (c/H0) D_c^2 / E(z) (flat). Midpoint rule on a 160 x 256 grid."""
    z_edges, lnm_edges, counts = _los_table(
        (float(z_range[0]), float(z_range[1])),
        (float(m_range[0]), float(m_range[1])),
        tuple(sorted(cosmo.items())),
    )
    return z_edges, lnm_edges, counts * area_arcmin2


def draw_los_halos(
    *,
    rng: np.random.Generator,
    area_arcmin2: float,
    z_range: tuple[float, float],
    m_range: tuple[float, float],
    cosmo: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Unrelated halos in a square cone of ``area_arcmin2`` centred on the map: a Poisson
    number with the mean of ``los_expected_counts``, each in a (z, ln M) cell drawn with its
    expected count as weight, uniform in z and ln M within the cell, and uniform on the square.

    Returns:
        dict with ``m200c`` [Msun], ``z``, ``x_arcmin``, ``y_arcmin`` (offsets from the centre).
    """
    z_edges, lnm_edges, counts = los_expected_counts(
        area_arcmin2=area_arcmin2, z_range=z_range, m_range=m_range, cosmo=cosmo
    )
    n = rng.poisson(counts.sum())
    cell = rng.choice(counts.size, size=n, p=(counts / counts.sum()).ravel())
    iz, im = np.unravel_index(cell, counts.shape)
    z = z_edges[iz] + rng.uniform(size=n) * np.diff(z_edges)[iz]
    lnm = lnm_edges[im] + rng.uniform(size=n) * np.diff(lnm_edges)[im]
    side = np.sqrt(area_arcmin2)
    xy = (rng.uniform(size=(2, n)) - 0.5) * side
    return {"m200c": np.exp(lnm), "z": z, "x_arcmin": xy[0], "y_arcmin": xy[1]}


# --- the stand-in clusters ------------------------------------------------------------------
