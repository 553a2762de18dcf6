"""szmass.sky.maps: Fourier grid, apodization window, cropping, white-noise level."""

import numpy as np
import pytest

from szmass.sky import maps
from szmass.units import ARCMIN

# --- ell_grid -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [8, 9, 16])
def test_ell_grid_shape_and_values(n):
    pixel_rad = 0.25 * ARCMIN
    ell = maps.ell_grid(n, pixel_rad)
    assert ell.shape == (n, n // 2 + 1)
    fundamental = 2 * np.pi / (n * pixel_rad)
    assert ell[0, 0] == 0.0
    np.testing.assert_allclose(ell[0, 1], fundamental, rtol=1e-12)
    np.testing.assert_allclose(ell[1, 0], fundamental, rtol=1e-12)
    np.testing.assert_allclose(ell[-1, 0], fundamental, rtol=1e-12)  # negative frequency
    np.testing.assert_allclose(ell[1, 1], np.sqrt(2) * fundamental, rtol=1e-12)
    np.testing.assert_allclose(ell[3, 2], np.hypot(3, 2) * fundamental, rtol=1e-12)
    assert np.all(ell >= 0)


def test_ell_grid_nyquist():
    n, pixel_rad = 16, 0.5 * ARCMIN
    ell = maps.ell_grid(n, pixel_rad)
    np.testing.assert_allclose(ell[0, -1], np.pi / pixel_rad, rtol=1e-12)
    np.testing.assert_allclose(ell.max(), np.sqrt(2) * np.pi / pixel_rad, rtol=1e-12)


# --- apodization_window -------------------------------------------------------------------


@pytest.mark.parametrize(("n", "width"), [(16, 4), (40, 4), (9, 3), (8, 4), (12, 1)])
def test_apodization_window(n, width):
    w = maps.apodization_window(n, width)
    assert w.shape == (n, n)
    # symmetric: left-right, up-down, transpose
    np.testing.assert_array_equal(w, w[::-1, :])
    np.testing.assert_array_equal(w, w[:, ::-1])
    np.testing.assert_array_equal(w, w.T)
    # interior exactly 1
    np.testing.assert_array_equal(w[width : n - width, width : n - width], 1.0)
    # the 1-d taper rises monotonically from near 0 at the edge to 1
    taper = np.sqrt(np.diag(w))  # separable: w[i, i] = taper[i]^2
    edge = 0.5 * (1 - np.cos(np.pi * 0.5 / width))
    np.testing.assert_allclose(taper[0], edge, rtol=1e-12)
    assert 0 < taper[0] < 0.5
    ramp = taper[:width]
    assert np.all(np.diff(ramp) > 0) and ramp[-1] < 1
    assert np.all((w > 0) & (w <= 1))
    np.testing.assert_allclose(w, np.outer(taper, taper), rtol=1e-12)


def test_apodization_window_width_zero_is_all_ones():
    np.testing.assert_array_equal(maps.apodization_window(8, 0), np.ones((8, 8)))


@pytest.mark.parametrize(("n", "width"), [(8, -1), (8, 5), (40, 21)])
def test_apodization_window_bad_width_raises(n, width):
    with pytest.raises(ValueError, match=str(width)):
        maps.apodization_window(n, width)


# --- crop_center --------------------------------------------------------------------------


@pytest.mark.parametrize(("big", "n"), [(16, 8), (64, 16), (15, 5), (40, 40), (160, 40)])
def test_crop_center_lands_centre_on_n_half(big, n):
    image = np.zeros((3, big, big))
    image[:, big // 2, big // 2] = 1.0
    out = maps.crop_center(image, n)
    assert out.shape == (3, n, n)
    assert out.sum() == 3
    assert np.all(out[:, n // 2, n // 2] == 1.0)


def test_crop_center_keeps_pixel_values():
    image = np.arange(36.0).reshape(6, 6)
    np.testing.assert_array_equal(maps.crop_center(image, 2), image[2:4, 2:4])


@pytest.mark.parametrize(("big", "n"), [(16, 7), (15, 8)])
def test_crop_center_parity_mismatch_raises(big, n):
    with pytest.raises(ValueError, match="parity"):
        maps.crop_center(np.zeros((big, big)), n)


# --- noise --------------------------------------------------------------------------------


def test_white_noise_rms_per_pixel():
    assert maps.white_noise_rms_per_pixel(5, 0.25) == 20
    assert maps.white_noise_rms_per_pixel(5.0, 1.0) == 5.0
