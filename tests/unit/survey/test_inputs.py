"""szmass.survey: the user's catalogue, map and cutouts, on small synthetic maps with known
geometry (no network)."""

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from szmass.survey.catalogue import InputError, read_catalogue
from szmass.survey.cutouts import cutouts, position_inside, tangent_wcs
from szmass.survey.skymap import read_sky_map, white_noise_uk_arcmin

PIXEL = 0.25  # arcmin, the model's


def car_header(n: int, *, ra0=0.0, dec0=0.0, pixel=PIXEL, bunit="uK") -> fits.Header:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    wcs.wcs.cdelt = [-pixel / 60, pixel / 60]
    header = wcs.to_header()
    if bunit is not None:
        header["BUNIT"] = bunit
    return header


def write_map(path, data, header):
    fits.PrimaryHDU(np.asarray(data, np.float32), header=header).writeto(path, overwrite=True)
    return path


# --- catalogue --------------------------------------------------------------------------------


def test_catalogue_columns_case_and_wrap(tmp_path):
    path = tmp_path / "cat.csv"
    pd.DataFrame(
        {"Name": ["a", "b"], "RA": [-0.5, 359.0], "Dec": [1.0, -2.0], "richness": [3, 4]}
    ).to_csv(path, index=False)
    table = read_catalogue(path)
    assert list(table["ra"]) == [359.5, 359.0]  # -0.5 wraps to 359.5
    assert list(table["richness"]) == [3, 4]  # passes through


def test_catalogue_as_fits_table(tmp_path):
    from astropy.table import Table

    path = tmp_path / "cat.fits"
    Table({"name": ["x"], "ra": [10.0], "dec": [-5.0], "z": [0.7]}).write(path)
    table = read_catalogue(path)
    assert table.loc[0, "z"] == 0.7 and table.loc[0, "name"] == "x"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"name": ["a"], "ra": [1.0]}, "lacks the column.*dec"),
        ({"name": ["a", "b"], "ra": [1.0, "x"], "dec": [0.0, 0.0]}, r"row 2: ra = 'x' is not"),
        ({"name": ["a"], "ra": [1.0], "dec": [91.0]}, "row 1: dec = 91.0 lies outside"),
        ({"name": ["a"], "ra": [1.0], "dec": [0.0], "z": [-0.1]}, "row 1: z = -0.1"),
    ],
)
def test_bad_catalogues_name_the_column_or_row(tmp_path, frame, message):
    path = tmp_path / "cat.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        read_catalogue(path)


def test_missing_catalogue(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_catalogue(tmp_path / "nope.csv")


# --- map --------------------------------------------------------------------------------------


def test_map_units_and_weights(tmp_path):
    data = np.ones((20, 20)) * 2e-6
    path = write_map(tmp_path / "k.fits", data, car_header(20, bunit="K_CMB"))
    ivar = np.ones((20, 20))
    ivar[3, 4] = 0
    write_map(tmp_path / "ivar.fits", ivar, car_header(20, bunit=None))
    sky_map = read_sky_map(path, weights_path=tmp_path / "ivar.fits")
    assert np.nanmax(sky_map.data_uk) == pytest.approx(2.0, rel=1e-6)  # K -> uK
    assert np.isnan(sky_map.data_uk[3, 4]) and np.isfinite(sky_map.data_uk).sum() == 399
    assert sky_map.pixel_arcmin == pytest.approx((PIXEL, PIXEL))


def test_bad_maps_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_sky_map(tmp_path / "none.fits")
    header = car_header(8, bunit="Jy/beam")
    with pytest.raises(InputError, match="'Jy/beam' is not a CMB temperature unit"):
        read_sky_map(write_map(tmp_path / "jy.fits", np.zeros((8, 8)), header))
    with pytest.raises(InputError, match="no BUNIT keyword: give its unit"):
        read_sky_map(
            write_map(tmp_path / "nounit.fits", np.zeros((8, 8)), car_header(8, bunit=None))
        )
    plain = fits.Header()
    plain["BUNIT"] = "uK"
    with pytest.raises(InputError, match="no celestial WCS"):
        read_sky_map(write_map(tmp_path / "nowcs.fits", np.zeros((8, 8)), plain))
    (tmp_path / "junk.fits").write_text("not a fits file")
    with pytest.raises(InputError, match="cannot be read as FITS"):
        read_sky_map(tmp_path / "junk.fits")


def test_white_noise_level_is_measured(tmp_path):
    # white noise of 5 uK-arcmin at 0.25' pixels: 20 uK per pixel; 256^2 pixels, the band
    # beyond the 1' beam's B_l = 1e-3 holds ~40% of the modes: the estimate is good to < 1%
    sigma = 5.0 / PIXEL
    data = np.random.default_rng(0).normal(0, sigma, (256, 256))
    sky_map = read_sky_map(write_map(tmp_path / "n.fits", data, car_header(256)))
    assert white_noise_uk_arcmin(sky_map, beam_fwhm_arcmin=1.0) == pytest.approx(5.0, rel=0.02)


# --- cutouts ----------------------------------------------------------------------------------


def _point_map(tmp_path, n, *, ra0, dec0, pixel=PIXEL):
    """A map with one bright pixel, and the world position of its centre."""
    header = car_header(n, ra0=ra0, dec0=dec0, pixel=pixel)
    data = np.zeros((n, n))
    iy, ix = n // 2 + 3, n // 2 - 5
    data[iy, ix] = 100.0
    sky_map = read_sky_map(write_map(tmp_path / "p.fits", data, header))
    ra, dec = sky_map.wcs.pixel_to_world_values(ix, iy)
    return sky_map, float(ra), float(dec)


@pytest.mark.parametrize("ra0", [0.0, 180.0])  # 0: the map straddles RA 0/360
def test_a_point_lands_on_the_cutout_centre(tmp_path, ra0):
    sky_map, ra, dec = _point_map(tmp_path, 200, ra0=ra0, dec0=0.0)
    (cut,), flags = cutouts(sky_map, np.array([ra]), np.array([dec]), npix=40, pixel_arcmin=PIXEL)
    assert flags == ["ok"]
    assert np.unravel_index(np.argmax(cut), cut.shape) == (20, 20)
    assert cut[20, 20] == pytest.approx(100.0)


def test_orientation_east_left_north_up(tmp_path):
    """A point 1' east (RA larger) and 0.5' north of the centre lands 4 px left, 2 px up."""
    sky_map, ra, dec = _point_map(tmp_path, 200, ra0=359.9, dec0=-30.0)
    ra_c = ra - (1.0 / 60) / np.cos(np.radians(dec))
    dec_c = dec - 0.5 / 60
    (cut,), _ = cutouts(sky_map, np.array([ra_c]), np.array([dec_c]), npix=40, pixel_arcmin=PIXEL)
    iy, ix = np.unravel_index(np.argmax(cut), cut.shape)
    assert (iy, ix) == (22, 16)  # rows grow with dec (north), columns fall with RA (east)


def test_edges_masks_and_outside_are_flagged(tmp_path):
    n = 120
    header = car_header(n)
    data = np.random.default_rng(1).normal(size=(n, n))
    data[60:63, 30:33] = np.nan
    sky_map = read_sky_map(write_map(tmp_path / "m.fits", data, header))
    world = sky_map.wcs.pixel_to_world_values
    positions = [world(60, 60), world(5, 60), world(31, 61), (10.0, 10.0)]
    ra, dec = (np.array(v, float) for v in zip(*positions, strict=True))
    maps, flags = cutouts(sky_map, ra, dec, npix=40, pixel_arcmin=PIXEL)
    assert flags == ["ok", "edge", "masked", "outside_map"]
    assert np.all(np.isfinite(maps)) and not maps[3].any()
    assert list(position_inside(sky_map, ra, dec)) == [True, True, True, False]


def _reproject_cutout(sky_map, ra, dec, order):
    """One cutout the way reproject_interp makes it (the batched cutouts must equal it)."""
    from reproject import reproject_interp

    from szmass.survey.cutouts import SHIFT_MARGIN, shift_subpixel

    shift = order == "shift"
    side, centre = (40 + 2 * SHIFT_MARGIN, None) if shift else (40, (ra, dec))
    if shift:
        x, y = sky_map.wcs.world_to_pixel_values(ra, dec)
        centre = sky_map.wcs.pixel_to_world_values(np.round(x), np.round(y))
    wcs = tangent_wcs(*centre, npix=side, pixel_arcmin=PIXEL)
    data = np.nan_to_num(sky_map.data_uk)
    values, footprint = reproject_interp(
        (data, sky_map.wcs),
        wcs,
        shape_out=(side, side),
        order="nearest-neighbor" if shift else order,
    )
    values = np.where(footprint > 0, values, 0.0)
    if shift:
        cx, cy = wcs.world_to_pixel_values(ra, dec)
        crop = slice(SHIFT_MARGIN, -SHIFT_MARGIN)
        values = shift_subpixel(values, side // 2 - cy, side // 2 - cx)[crop, crop]
    return values


@pytest.mark.parametrize("order", ["shift", "nearest-neighbor", "bilinear", "bicubic"])
@pytest.mark.parametrize("ctype", ["CAR", "SIN"])
def test_cutouts_equal_reproject_interp_per_cutout(tmp_path, order, ctype):
    """Batched over positions, the cutouts are reproject_interp's, cutout by cutout: off-pixel
    positions, one near the edge, on a CAR map straddling RA 0 and on a SIN map."""
    n = 160
    header = car_header(n, ra0=0.05, dec0=-20.0)
    header["CTYPE1"], header["CTYPE2"] = f"RA---{ctype}", f"DEC--{ctype}"
    data = np.random.default_rng(4).normal(size=(n, n))
    sky_map = read_sky_map(write_map(tmp_path / "m.fits", data, header))
    rng = np.random.default_rng(5)
    x, y = rng.uniform(30, 130, 5), rng.uniform(30, 130, 5)
    x[0], y[0] = 8.3, 77.6  # the cutout runs off the map's left edge
    ra, dec = (np.asarray(v, float) for v in sky_map.wcs.pixel_to_world_values(x, y))
    assert ra.min() < 1.0 and ra.max() > 359.0  # both sides of RA 0
    maps, flags = cutouts(sky_map, ra, dec, npix=40, pixel_arcmin=PIXEL, order=order)
    assert flags == ["edge", "ok", "ok", "ok", "ok"]
    for i in range(len(ra)):
        np.testing.assert_allclose(
            maps[i], _reproject_cutout(sky_map, ra[i], dec[i], order), atol=1e-5
        )


def test_tangent_wcs_puts_the_centre_at_pixel_20():
    wcs = tangent_wcs(12.0, -40.0, npix=40, pixel_arcmin=PIXEL)
    x, y = wcs.world_to_pixel_values(12.0, -40.0)
    assert (float(x), float(y)) == pytest.approx((20.0, 20.0))


def test_the_sub_pixel_shift_moves_a_smooth_map_and_keeps_white_noise():
    from szmass.survey.cutouts import shift_subpixel

    n = 48
    y, x = np.mgrid[:n, :n]
    blob = np.exp(-((y - 24.0) ** 2 + (x - 24.0) ** 2) / (2 * 2.0**2))  # sigma 2 px: band-limited
    moved = shift_subpixel(blob, 0.3, -0.4)
    want = np.exp(-((y - 24.3) ** 2 + (x - 23.6) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(moved, want, atol=1e-9)
    noise = np.random.default_rng(3).normal(size=(200, n, n))
    np.testing.assert_allclose(shift_subpixel(noise, 0.0, 0.0), noise, atol=1e-12)  # identity
    # a half-pixel shift keeps all but the 2n - 1 Nyquist modes' power (cos(pi / 2) = 0);
    # 460800 samples: the rms is known to 1e-3
    kept = np.sqrt(1 - (2 * n - 1) / n**2)  # 0.979
    assert shift_subpixel(noise, 0.5, 0.5).std() == pytest.approx(kept, abs=0.004)


def test_high_pass_removes_what_the_training_maps_lack():
    from szmass.survey.skymap import high_pass, training_ell_min

    sky = {"npix": 40, "pad_factor": 4, "pixel_arcmin": PIXEL}
    ell_min = training_ell_min(sky)
    assert ell_min == pytest.approx(540.0, abs=1.0)  # 2 pi / 40' (160 pixels of 0.25')
    n, pixel_rad = 512, PIXEL * np.pi / 180 / 60
    x = np.arange(n) * pixel_rad
    k_low, k_high = 2, 20  # whole periods on the map: l = 2 pi k / (n pixel) = 168 and 1685
    low = np.cos(2 * np.pi * k_low * x / (n * pixel_rad))[None, :] * np.ones((n, 1))
    high = np.sin(2 * np.pi * k_high * x / (n * pixel_rad))[:, None] * np.ones((1, n))
    data = low + high
    data[5, 7] = np.nan
    out = high_pass(data, pixel_arcmin=(PIXEL, PIXEL), ell_lo=0.75 * ell_min, ell_hi=1.25 * ell_min)
    assert np.isnan(out[5, 7]) and np.isfinite(out).sum() == n * n - 1
    good = np.isfinite(out)
    # the masked pixel (filled with 0) leaks ~1/n^2: the l = 168 mode is gone, l = 1685 kept
    np.testing.assert_allclose(out[good], high[good], atol=1e-3)
