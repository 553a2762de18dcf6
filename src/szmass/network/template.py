"""A mass readout from more than the central pixel (issue 12; beyond the paper).

The paper reads M200c from the predicted mass map's central pixel. ``template_readout`` fits
the label's own template instead (the pixel-averaged projected NFW of ``dataset.mass_map``,
whose central pixel is M200c / M_norm) by least squares over the pixels within
``TEMPLATE_RADIUS_PIX`` of the centre: its amplitude is the estimate. The template's shape
changes slowly with mass (the concentration and the angular R200), so it is tabulated on
``TEMPLATE_MASSES`` and followed from the central pixel's estimate for a few rounds.
"""

from typing import Any

import numpy as np

from .dataset import mass_map

#: Pixels within this radius (pixels) of the centre enter the template readout: 13 pixels.
TEMPLATE_RADIUS_PIX = 2
#: Masses [Msun] the template's shape is tabulated at (interpolated in ln M between them).
TEMPLATE_MASSES = np.geomspace(1e13, 5e15, 25)


def central_disk(npix: int) -> np.ndarray:
    """Boolean (npix, npix) mask of the pixels within ``TEMPLATE_RADIUS_PIX`` of pixel
    (npix // 2, npix // 2)."""
    yy, xx = np.indices((npix, npix)) - npix // 2
    return yy**2 + xx**2 <= TEMPLATE_RADIUS_PIX**2


def template_shapes(
    *, z: float, cosmo: dict[str, Any], npix: int, pixel_arcmin: float
) -> np.ndarray:
    """The label's shape (1 at the centre) on ``central_disk(npix)`` at each of
    ``TEMPLATE_MASSES``: (n_masses, n_disk_pixels)."""
    disk = central_disk(npix)
    return np.stack(
        [
            mass_map(
                m200c_msun=m, m_norm_msun=m, z=z, cosmo=cosmo, npix=npix, pixel_arcmin=pixel_arcmin
            )[disk]
            for m in TEMPLATE_MASSES
        ]
    )


def template_readout(
    mass_pred: np.ndarray, shapes: np.ndarray, *, m_norm: float, iterations: int = 3
) -> np.ndarray:
    """M200c [Msun] of each predicted mass map (n, H, W), normalised as the labels, from the
    least-squares amplitude of ``shapes`` (``template_shapes``) over the central disk."""
    npix = mass_pred.shape[1]
    pix = mass_pred[:, central_disk(npix)].astype(float)  # (n, k)
    m = mass_pred[:, npix // 2, npix // 2].astype(float) * m_norm
    ln_grid = np.log(TEMPLATE_MASSES)
    for _ in range(iterations):
        at = np.interp(
            np.log(np.clip(m, TEMPLATE_MASSES[0], TEMPLATE_MASSES[-1])),
            ln_grid,
            np.arange(len(ln_grid)),
        )
        lo = np.minimum(at.astype(int), len(ln_grid) - 2)
        w = (at - lo)[:, None]
        shape = (1 - w) * shapes[lo] + w * shapes[lo + 1]
        m = np.sum(pix * shape, axis=1) / np.sum(shape * shape, axis=1) * m_norm
    return m
