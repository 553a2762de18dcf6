"""Flat-sky map operations: Fourier grids, Gaussian fields, beam, noise, apodization.

Maps are (..., n, n) arrays of square pixels of side ``pixel_rad``; Fourier arrays use the
``rfft2`` layout. Flat-sky conventions as in e.g. pixell / quicklens: a field with spectrum C_l
has pixel variance ∫ d^2l/(2pi)^2 C_l.
"""

import numpy as np
import scipy.fft

from ..units import ARCMIN


def ell_grid(n: int, pixel_rad: float) -> np.ndarray:
    """|l| of each mode of an n x n map in rfft2 layout, shape (n, n // 2 + 1)."""
    ly = 2.0 * np.pi * np.fft.fftfreq(n, d=pixel_rad)
    lx = 2.0 * np.pi * np.fft.rfftfreq(n, d=pixel_rad)
    return np.hypot(ly[:, None], lx[None, :])


def beam_transfer(ell: np.ndarray, fwhm_arcmin: float) -> np.ndarray:
    """Gaussian beam B_l = exp(-l^2 sigma^2 / 2), sigma = FWHM / sqrt(8 ln 2) (flat sky)."""
    sigma = fwhm_arcmin * ARCMIN / np.sqrt(8.0 * np.log(2.0))
    return np.exp(-0.5 * (np.asarray(ell) * sigma) ** 2)


def cl_on_grid(ell: np.ndarray, cl: np.ndarray, grid_ell: np.ndarray) -> np.ndarray:
    """C_l of a table (ell = 0..lmax) at the grid's |l|, linear interpolation, 0 above lmax."""
    return np.interp(grid_ell, ell, cl, right=0.0)


def field_filter(
    *, ell: np.ndarray, cl: np.ndarray, n: int, pixel_rad: float, fwhm_arcmin: float = 0.0
) -> np.ndarray:
    """Fourier filter that turns unit white noise into a field with spectrum C_l B_l^2.

    filter = sqrt(C_l) B_l / pixel_rad, shape (n, n // 2 + 1); C_l in uK^2 gives uK maps.
    """
    grid = ell_grid(n, pixel_rad)
    filt = np.sqrt(np.clip(cl_on_grid(ell, cl, grid), 0.0, None)) / pixel_rad
    if fwhm_arcmin > 0:
        filt *= beam_transfer(grid, fwhm_arcmin)
    return filt


def gaussian_fields(white: np.ndarray, filt: np.ndarray, *, workers: int = 1) -> np.ndarray:
    """Gaussian fields from unit white noise ``white`` (..., n, n) and a ``field_filter``."""
    n = white.shape[-1]
    four = scipy.fft.rfft2(white, workers=workers)
    four *= filt
    return scipy.fft.irfft2(four, s=(n, n), workers=workers)


def convolve_beam(
    maps: np.ndarray, *, pixel_rad: float, fwhm_arcmin: float, workers: int = 1
) -> np.ndarray:
    """Convolve (..., n, n) maps with a Gaussian beam in Fourier space (periodic boundaries)."""
    n = maps.shape[-1]
    four = scipy.fft.rfft2(maps, workers=workers)
    four *= beam_transfer(ell_grid(n, pixel_rad), fwhm_arcmin)
    return scipy.fft.irfft2(four, s=(n, n), workers=workers)


def crop_center(maps: np.ndarray, n: int) -> np.ndarray:
    """The central n x n pixels; the map centre (N // 2, N // 2) lands on (n // 2, n // 2)."""
    big = maps.shape[-1]
    if (big - n) % 2:
        raise ValueError(f"cannot centre a {n}-pixel crop in a {big}-pixel map (parity differs)")
    start = (big - n) // 2
    return maps[..., start : start + n, start : start + n]


def white_noise_rms_per_pixel(noise_uk_arcmin: float, pixel_arcmin: float) -> float:
    """Per-pixel rms [uK] of white noise of level ``noise_uk_arcmin`` (5 uK-arcmin -> 20 uK
    for 0.25' pixels)."""
    return noise_uk_arcmin / pixel_arcmin


def apodization_window(n: int, width_pix: int) -> np.ndarray:
    """Separable cosine taper, 0 at the outer edge rising to 1 over ``width_pix`` pixels.

    Pixel i (0-based) from the nearest edge gets 0.5 (1 - cos(pi (i + 0.5) / width)) for
    i < width, else 1; the window is the outer product of that 1-d taper with itself.
    """
    if width_pix < 0 or 2 * width_pix > n:
        raise ValueError(f"apodization width {width_pix} px does not fit a {n}-pixel map")
    taper = np.ones(n)
    i = np.arange(width_pix)
    ramp = 0.5 * (1.0 - np.cos(np.pi * (i + 0.5) / width_pix)) if width_pix else i
    taper[:width_pix] = ramp
    taper[n - width_pix :] = ramp[::-1]
    return np.outer(taper, taper)
