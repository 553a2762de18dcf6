"""szmass.network.template: the template readout recovers the amplitude of a label map, and
on noisy maps its spread is the least-squares one, sigma / sqrt(sum of the shape squared)."""

import numpy as np
import pytest

from szmass.network.dataset import mass_map
from szmass.network.template import (
    TEMPLATE_MASSES,
    central_disk,
    template_readout,
    template_shapes,
)

from ..conftest import COSMO

NPIX, PIXEL, Z, M_NORM = 40, 0.25, 0.7, 4.5e14
#: Interpolating the shape in ln M between tabulated masses (25 from 1e13 to 5e15) moves the
#: amplitude by less than this (measured: < 1e-4 at 1-9e14).
SHAPE_RTOL = 1e-3


@pytest.fixture(scope="module")
def shapes():
    return template_shapes(z=Z, cosmo=COSMO, npix=NPIX, pixel_arcmin=PIXEL)


def _label(m):
    return mass_map(
        m200c_msun=m, m_norm_msun=M_NORM, z=Z, cosmo=COSMO, npix=NPIX, pixel_arcmin=PIXEL
    )


def test_disk_is_the_13_central_pixels():
    disk = central_disk(NPIX)
    assert disk.sum() == 13 and disk[20, 20] and disk[18, 20] and not disk[18, 19]


def test_shapes_are_one_at_the_centre(shapes):
    assert shapes.shape == (len(TEMPLATE_MASSES), 13)
    np.testing.assert_allclose(shapes[:, 6], 1.0, rtol=1e-12)  # disk order: the 7th pixel
    assert np.all(shapes[:, [0, 1, 11, 12]] < 1.0)


@pytest.mark.parametrize("m", [1e14, 3.3e14, 8e14])
def test_label_maps_read_their_mass(shapes, m):
    est = template_readout(_label(m)[None], shapes, m_norm=M_NORM)
    assert est[0] == pytest.approx(m, rel=SHAPE_RTOL)


def test_a_scaled_label_reads_the_scaled_mass(shapes):
    """A map 20% above a 4e14 label reads ~4.8e14: the template follows the amplitude."""
    est = template_readout(1.2 * _label(4e14)[None], shapes, m_norm=M_NORM)
    # the 4.8e14 template is a little broader than the 4e14 map, so not exactly 1.2
    assert est[0] == pytest.approx(4.8e14, rel=0.02)


def test_noise_spread_is_the_least_squares_one(shapes):
    """With one shape at every mass the readout is linear least squares: its spread on white
    noise is sigma / sqrt(sum shape^2), against sigma for the centre pixel alone."""
    rng = np.random.default_rng(4)
    sigma, m = 0.05, 5e14
    maps = _label(m)[None] + sigma * rng.standard_normal((4000, NPIX, NPIX))
    shape = _label(m)[central_disk(NPIX)] / _label(m)[20, 20]
    fixed = np.repeat(shape[None], len(TEMPLATE_MASSES), axis=0)
    est = template_readout(maps, fixed, m_norm=M_NORM)
    expected = sigma / np.sqrt(np.sum(shape**2)) * M_NORM
    assert np.std(est) == pytest.approx(expected, rel=0.05)  # 4000 draws: ~1.1% error
    assert np.mean(est) == pytest.approx(m, rel=0.01)
    # the template following the estimate (its shape broadens with mass) stays as narrow
    following = template_readout(maps, shapes, m_norm=M_NORM)
    # 13 pixels whose shape squared sums to ~3 at 5e14: ~0.57 of the centre pixel's spread
    assert expected < 0.6 * sigma * M_NORM
    assert np.std(following) < 1.05 * expected
    assert np.mean(following) == pytest.approx(m, rel=0.01)
