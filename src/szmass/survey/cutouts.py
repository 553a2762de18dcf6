"""Cutouts of a user's map on the training grid: npix x npix pixels of the model's pixel size
on the gnomonic (TAN) tangent plane centred on each cluster, north up and east left, with the
cluster at pixel (npix // 2, npix // 2) as in the simulated shards.

The resampling is ``reproject.reproject_interp`` (astropy WCS on both sides, so any projection
astropy reads works and RA wraps at 0/360 by construction). Its ``order`` is chosen by
measurement (``bench/bench_predict.py``): ``nearest-neighbor`` keeps the white noise the
network was trained on when the map's pixels are the model's (interpolation averages
neighbouring pixels: bilinear at a half-pixel offset cuts the noise rms by ~2), at the price of
a sub-pixel offset of the cluster (at most half a pixel on each axis); ``bilinear`` or
``bicubic`` resample maps of other pixel sizes.
"""

from typing import Any

import numpy as np

#: Resampling orders ``reproject_interp`` offers.
ORDERS = ("nearest-neighbor", "bilinear", "bicubic")
#: Per-cutout flags, from the most to the least severe.
OUTSIDE, EDGE, MASKED = "outside_map", "edge", "masked"


def tangent_wcs(ra_deg: float, dec_deg: float, *, npix: int, pixel_arcmin: float):
    """The WCS of a cutout: TAN, centred on (ra, dec) at 0-based pixel (npix // 2, npix // 2),
    RA increasing to the left."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [npix // 2 + 1, npix // 2 + 1]  # FITS pixels are 1-based
    wcs.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    return wcs


def position_inside(sky_map, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    """Whether each position falls on a pixel of the map (finite or not)."""
    x, y = sky_map.wcs.world_to_pixel_values(ra_deg, dec_deg)
    ny, nx = sky_map.data_uk.shape
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(x)
            & np.isfinite(y)
            & (x > -0.5)
            & (x < nx - 0.5)
            & (y > -0.5)
            & (y < ny - 0.5)
        )


def cutouts(
    sky_map,
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    *,
    npix: int,
    pixel_arcmin: float,
    order: str = "nearest-neighbor",
) -> tuple[np.ndarray, list[str]]:
    """Cutouts (n, npix, npix) [uK] at the positions, and a flag per position: ``ok``,
    ``outside_map`` (the position is not on the map; the cutout is all zero), ``edge`` (part
    of the cutout falls off the map) or ``masked`` (part of it is on masked pixels). Missing
    pixels are 0, which the model's taper weights least at the edges; a flagged estimate is
    not to be trusted.
    """
    from reproject import reproject_interp

    if order not in ORDERS:
        raise ValueError(f"resampling order {order!r}; expected one of {ORDERS}")
    ra, dec = np.atleast_1d(ra_deg).astype(float), np.atleast_1d(dec_deg).astype(float)
    inside = position_inside(sky_map, ra, dec)
    out = np.zeros((len(ra), npix, npix))
    flags = []
    data = sky_map.data_uk
    finite = np.isfinite(data)
    filled = np.where(finite, data, 0.0)
    mask = (~finite).astype(float)
    for i in range(len(ra)):
        if not inside[i]:
            flags.append(OUTSIDE)
            continue
        wcs = tangent_wcs(ra[i], dec[i], npix=npix, pixel_arcmin=pixel_arcmin)
        values, footprint = reproject_interp(
            (filled, sky_map.wcs), wcs, shape_out=(npix, npix), order=order
        )
        on_map = footprint > 0
        values = np.where(on_map, values, 0.0)
        if not np.all(on_map):
            flags.append(EDGE)
        else:
            masked, _ = reproject_interp(
                (mask, sky_map.wcs), wcs, shape_out=(npix, npix), order="nearest-neighbor"
            )
            flags.append(MASKED if np.any(masked > 0) else "ok")
        out[i] = np.nan_to_num(values)
    return out, flags


def cutout_geometry(card: dict[str, Any]) -> dict[str, Any]:
    """npix and pixel of the cutouts a model card's network takes."""
    return {"npix": int(card["sky"]["npix"]), "pixel_arcmin": float(card["sky"]["pixel_arcmin"])}
