"""The rescaling of the realistic test set (SPEC §4; Gupta & Reichardt 2020, arXiv:2003.06135,
§4.4, eq. 2): r = M_true / M_A10(Y), the mass the training's Arnaud et al. 2010 (A10) relation
gives a cluster's integrated Compton y, either from the spherical B12 cluster of that mass
(the analytic factor) or from the cluster's own noise-free map (the measured factor).
"""

from typing import Any

import numpy as np

from ..sky import maps, profiles
from ..sky.cluster import cluster_y_map
from .b12 import b12_y_map

#: Default extent of a B12 cluster map [R200] (the realistic.x_max_r200 key).
X_MAX_R200 = 4.0
#: Inversion table of the A10 relation: M200c from 1e13 to 1e16 Msun.
_A10_TABLE_M200 = np.logspace(13.0, 16.0, 61)


def _aperture_mask(npix: int, pixel_arcmin: float, aperture_arcmin: float | None) -> np.ndarray:
    if aperture_arcmin is None:
        return np.ones((npix, npix), dtype=bool)
    u = (np.arange(npix) - npix // 2) * pixel_arcmin
    return u[None, :] ** 2 + u[:, None] ** 2 <= aperture_arcmin**2


def integrated_y_arcmin2(
    y_maps: np.ndarray, *, npix: int, pixel_arcmin: float, aperture_arcmin: float | None = None
) -> np.ndarray:
    """∫ y dOmega [arcmin^2] of (..., m, m) maps over the central npix x npix cutout (or the
    pixels of it whose centres lie within ``aperture_arcmin`` of pixel (npix//2, npix//2))."""
    cut = maps.crop_center(np.asarray(y_maps, dtype=float), npix)
    mask = _aperture_mask(npix, pixel_arcmin, aperture_arcmin)
    return (cut * mask).sum(axis=(-2, -1)) * pixel_arcmin**2


def a10_cutout_y_arcmin2(
    m200c_msun: np.ndarray,
    *,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    aperture_arcmin: float | None = None,
) -> np.ndarray:
    """The training relation: ∫ y dOmega [arcmin^2] over the cutout of the A10 cluster
    (``cluster.cluster_y_map``, no scatter, no beam) at the training redshift
    ``cluster["redshift"]``, for each M200c."""
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    m = np.atleast_1d(np.asarray(m200c_msun, dtype=float))
    m500 = np.atleast_1d(profiles.m200c_to_m500c(m, z=cluster["redshift"], cosmo=cosmo))
    ys = np.stack(
        [
            cluster_y_map(
                m500_msun=m5,
                z=cluster["redshift"],
                cosmo=cosmo,
                n=npix,
                pixel_arcmin=pixel,
                subpixel=cluster["subpixel"],
                x_max=cluster["x_max_r500"],
            )
            for m5 in m500
        ]
    )
    return integrated_y_arcmin2(ys, npix=npix, pixel_arcmin=pixel, aperture_arcmin=aperture_arcmin)


def a10_mass_at_training_z(
    y_arcmin2: np.ndarray,
    *,
    z: np.ndarray,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    aperture_arcmin: float | None = None,
) -> np.ndarray:
    """M_A10(Y) of each cluster (``a10_mass_from_y``) at the redshift the network was trained
    at: the fixed ``cluster["redshift"]``, or, where the training drew redshifts from a
    distribution (issue 16), each cluster's own z (one A10 table per distinct z)."""
    y = np.atleast_1d(np.asarray(y_arcmin2, dtype=float))
    if not isinstance(cluster["redshift"], dict):
        return a10_mass_from_y(
            y, cosmo=cosmo, sky=sky, cluster=cluster, aperture_arcmin=aperture_arcmin
        )
    zz = np.broadcast_to(np.asarray(z, dtype=float), y.shape)
    out = np.empty(y.shape)
    for zi in np.unique(zz):
        at = zz == zi
        out[at] = a10_mass_from_y(
            y[at],
            cosmo=cosmo,
            sky=sky,
            cluster={**cluster, "redshift": float(zi)},
            aperture_arcmin=aperture_arcmin,
        )
    return out


def a10_mass_from_y(
    y_arcmin2: np.ndarray,
    *,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    aperture_arcmin: float | None = None,
) -> np.ndarray:
    """M_A10(Y): the M200c [Msun] whose A10 cluster at the training redshift has cutout
    signal Y [arcmin^2] (``a10_cutout_y_arcmin2`` inverted, interpolated in ln Y - ln M on
    61 masses 1e13..1e16 Msun). Raises ValueError outside that range."""
    y_tab = a10_cutout_y_arcmin2(
        _A10_TABLE_M200, cosmo=cosmo, sky=sky, cluster=cluster, aperture_arcmin=aperture_arcmin
    )
    if np.any(np.diff(y_tab) <= 0):
        raise ValueError("the A10 cutout Y is not increasing with mass; cannot invert it")
    y = np.asarray(y_arcmin2, dtype=float)
    if np.any(y <= y_tab[0]) or np.any(y >= y_tab[-1]):
        raise ValueError(
            f"Y = {y.min():.3g}..{y.max():.3g} arcmin^2 lies outside the A10 table "
            f"({y_tab[0]:.3g}..{y_tab[-1]:.3g}, M200c 1e13..1e16 Msun)"
        )
    return np.exp(np.interp(np.log(y), np.log(y_tab), np.log(_A10_TABLE_M200)))


def rescale_factor_analytic(
    *,
    m200c_msun: np.ndarray,
    z: np.ndarray,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    x_max_r200: float = X_MAX_R200,
    aperture_arcmin: float | None = None,
) -> np.ndarray:
    """r = M_true / M_A10(Y_B12(M_true, z)) (SPEC §4; paper eq. 2), per cluster.

    Y_B12 is the integrated Compton y [arcmin^2] over the npix x npix cutout (or a circular
    ``aperture_arcmin``) of the spherical, centred B12 cluster of that M200c at the cluster's
    own z (no beam); M_A10 inverts the same quantity of the training A10 cluster at the
    training redshift ``cluster["redshift"]`` (``a10_mass_from_y``). Pass z = 0.7 for all
    clusters to follow the paper, which fixed the redshift to the training one.
    """
    m = np.atleast_1d(np.asarray(m200c_msun, dtype=float))
    zz = np.broadcast_to(np.asarray(z, dtype=float), m.shape)
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    y_b12 = np.array(
        [
            integrated_y_arcmin2(
                b12_y_map(
                    m200c_msun=mi,
                    z=zi,
                    cosmo=cosmo,
                    n=npix,
                    pixel_arcmin=pixel,
                    subpixel=cluster["subpixel"],
                    x_max=x_max_r200,
                ),
                npix=npix,
                pixel_arcmin=pixel,
                aperture_arcmin=aperture_arcmin,
            )
            for mi, zi in zip(m, zz, strict=True)
        ]
    )
    return m / a10_mass_at_training_z(
        y_b12, z=zz, cosmo=cosmo, sky=sky, cluster=cluster, aperture_arcmin=aperture_arcmin
    )


def rescale_factor_measured(
    *,
    y_cluster: np.ndarray,
    m200c_msun: np.ndarray,
    z: np.ndarray | None = None,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    aperture_arcmin: float | None = None,
) -> np.ndarray:
    """r = M_true / M_A10(Y_map) per cluster, with Y_map the integrated noise-free Compton y
    [arcmin^2] of each cluster's own map ``y_cluster`` (n, m, m), m >= npix (cropped to the
    central npix x npix, or a circular ``aperture_arcmin``), inverted with the A10 relation
    at the training redshift (``a10_mass_at_training_z``: with a training redshift
    distribution, at each cluster's own ``z``, which is then needed)."""
    if isinstance(cluster["redshift"], dict) and z is None:
        raise ValueError("a training redshift distribution needs each cluster's z")
    y = integrated_y_arcmin2(
        y_cluster,
        npix=sky["npix"],
        pixel_arcmin=sky["pixel_arcmin"],
        aperture_arcmin=aperture_arcmin,
    )
    m = np.asarray(m200c_msun, dtype=float)
    z = cluster["redshift"] if z is None else z
    return m / a10_mass_at_training_z(
        y, z=z, cosmo=cosmo, sky=sky, cluster=cluster, aperture_arcmin=aperture_arcmin
    )
