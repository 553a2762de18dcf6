"""Cluster SZ maps: the A10 y profile (``profiles``) pixel-averaged on the map grid, convolved
with the beam and converted to temperature (Gupta & Reichardt 2020, arXiv:2003.06135, §2.2).

The profile is computed once per distinct (M200c, z) pair and reused for all its realizations.
"""

import logging
from functools import lru_cache
from typing import Any

import numpy as np

from ..logs import Progress
from ..units import ARCMIN
from . import profiles
from .maps import convolve_beam, crop_center

log = logging.getLogger("szmass.simulate")

#: Nodes of the radial tabulation, log-spaced over the sub-pixel radii of the map.
_N_TAB = 256


@lru_cache(maxsize=8)
def subpixel_log_radius_arcmin(n: int, pixel_arcmin: float, subpixel: int) -> np.ndarray:
    """ln of the distance [arcmin] of every sub-pixel sample from the map centre (n//2, n//2),
    shape (n * subpixel, n * subpixel)."""
    c = n // 2
    offsets = (np.arange(subpixel) + 0.5) / subpixel - 0.5
    u = ((np.arange(n)[:, None] - c) + offsets[None, :]).reshape(-1) * pixel_arcmin
    # Floor at a tiny radius: an odd subpixel samples the centre itself.
    out = 0.5 * np.log(np.maximum(u[:, None] ** 2 + u[None, :] ** 2, 1e-30))
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def pixel_average_operator(
    n: int, pixel_arcmin: float, subpixel: int
) -> tuple[np.ndarray, np.ndarray]:
    """Radial nodes r_k [arcmin] and the matrix W (n*n, _N_TAB) such that W @ f(r_k) is the
    pixel average of ``subpixel``^2 point samples of a radial profile f, interpolated linearly
    in ln r between the nodes. Built once per geometry; then a cluster costs one mat-vec.

    A sample at the centre itself (odd ``subpixel``) takes f at the smallest other radius.
    """
    log_r = subpixel_log_radius_arcmin(n, pixel_arcmin, subpixel)
    lo = log_r[log_r > -30].min()
    hi = log_r.max()
    nodes = np.linspace(lo, hi, _N_TAB)
    t = (np.clip(log_r, lo, hi) - lo) / (hi - lo) * (_N_TAB - 1)
    k = np.minimum(t.astype(int), _N_TAB - 2)
    w = t - k
    pix = np.arange(n * subpixel) // subpixel
    pixel_index = (pix[:, None] * n + pix[None, :]).ravel()
    op = np.zeros((n * n, _N_TAB))
    np.add.at(op, (pixel_index, k.ravel()), (1.0 - w).ravel())
    np.add.at(op, (pixel_index, k.ravel() + 1), w.ravel())
    op /= subpixel**2
    radii = np.exp(nodes)
    radii.setflags(write=False)
    op.setflags(write=False)
    return radii, op


def cluster_y_map(
    *,
    m500_msun: float,
    z: float,
    cosmo: dict[str, Any],
    n: int,
    pixel_arcmin: float,
    subpixel: int,
    x_max: float = 5.0,
) -> np.ndarray:
    """Pixel-averaged Compton-y map, shape (n, n), cluster at pixel (n//2, n//2).

    Each pixel is the mean of ``subpixel``^2 point samples of the projected A10 profile
    (truncated at ``x_max`` R500), which integrates the central cusp to well below 1%.
    """
    if subpixel < 1:
        raise ValueError(f"subpixel must be >= 1, got {subpixel}")
    theta500_arcmin = float(profiles.theta500_rad(m500_msun, z=z, cosmo=cosmo)) / ARCMIN
    radii_arcmin, op = pixel_average_operator(n, pixel_arcmin, subpixel)
    y_nodes = profiles.y_profile(
        radii_arcmin / theta500_arcmin, m500_msun=m500_msun, z=z, cosmo=cosmo, x_max=x_max
    )
    return (op @ y_nodes).reshape(n, n)


def beam_margin_pix(fwhm_arcmin: float, pixel_arcmin: float) -> int:
    """Extra pixels around the cutout so that beam convolution of the cluster sees its
    surroundings and the FFT's wrap-around stays outside the cutout (>= 4 FWHM, >= 8 px)."""
    return max(8, int(np.ceil(4.0 * fwhm_arcmin / pixel_arcmin)))


def sz_template_uk(
    *,
    m500_msun: float,
    z: float,
    cosmo: dict[str, Any],
    npix: int,
    pixel_arcmin: float,
    fwhm_arcmin: float,
    freq_ghz: float,
    subpixel: int,
    x_max: float = 5.0,
) -> np.ndarray:
    """Beam-convolved tSZ temperature map [uK] of one cluster without scatter, (npix, npix).

    dT = T_CMB f(x_nu) y (non-relativistic; -2.598 K x y at 150 GHz).
    """
    margin = beam_margin_pix(fwhm_arcmin, pixel_arcmin)
    big = npix + 2 * margin
    y_map = cluster_y_map(
        m500_msun=m500_msun,
        z=z,
        cosmo=cosmo,
        n=big,
        pixel_arcmin=pixel_arcmin,
        subpixel=subpixel,
        x_max=x_max,
    )
    if fwhm_arcmin > 0:
        y_map = convolve_beam(y_map, pixel_rad=pixel_arcmin * ARCMIN, fwhm_arcmin=fwhm_arcmin)
    t_cmb = cosmo["TCMB"]
    return crop_center(y_map, npix) * (t_cmb * profiles.f_sz(freq_ghz, t_cmb) * 1e6)


def cluster_templates(
    *,
    m200c_msun: np.ndarray,
    z: np.ndarray,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The SZ template [uK] of every distinct (M200c, z) pair of the maps (n,), computed once
    and reused for all the pair's realizations; M500c from M200c with the diemer15
    concentrations at the pair's z (``profiles.m200c_to_m500c``), then the A10 profile at that
    z (Arnaud et al. 2010, arXiv:0910.1234; ``cluster.sz_template_uk``).

    Returns:
        ``templates`` (n_pairs, npix, npix), ``m500c`` (n_pairs,) [Msun] and ``inverse`` (n,),
        the pair of each map. With one z the pairs are the distinct masses, in increasing order.
    """
    pairs, inverse = np.unique(
        np.stack([np.asarray(m200c_msun, dtype=float), z], axis=1), axis=0, return_inverse=True
    )
    m500c = np.empty(len(pairs))
    for z_value in np.unique(pairs[:, 1]):  # colossus converts many masses at one z at once
        at_z = pairs[:, 1] == z_value
        m500c[at_z] = np.atleast_1d(
            profiles.m200c_to_m500c(pairs[at_z, 0], z=float(z_value), cosmo=cosmo)
        )
    npix = sky["npix"]
    templates = np.empty((len(pairs), npix, npix))
    progress = Progress(len(pairs), "cluster profiles", log)
    for i, (m500, z_value) in enumerate(zip(m500c, pairs[:, 1], strict=True)):
        templates[i] = sz_template_uk(
            m500_msun=m500,
            z=float(z_value),
            cosmo=cosmo,
            npix=npix,
            pixel_arcmin=sky["pixel_arcmin"],
            fwhm_arcmin=sky["beam_fwhm_arcmin"],
            freq_ghz=sky["freq_ghz"],
            subpixel=cluster["subpixel"],
            x_max=cluster["x_max_r500"],
        )
        progress.update(1)
    return templates, m500c, inverse.reshape(-1)
