"""szmass.survey.testmap: the survey-like test map (CAR FITS) and its truth catalogue.

The maps are 1-2 deg (240-480 px); the clusters are checked on a map without CMB and noise
(a zero spectrum, noise 0), the noise on one without CMB and clusters.
"""

import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from szmass.sky import maps, profiles
from szmass.sky.cluster import sz_template_uk
from szmass.survey import testmap
from szmass.survey.testmap import make_survey_map, survey_wcs
from szmass.units import ARCMIN

from ..conftest import COSMO, write_spectra

SKY = {"freq_ghz": 150.0, "beam_fwhm_arcmin": 1.0, "noise_uk_arcmin": 5.0}
QUIET_SKY = {**SKY, "noise_uk_arcmin": 0.0}
CLUSTER = {"redshift": 0.7, "sigma_int": 0.2, "x_max_r500": 5.0, "subpixel": 2}
PIXEL = 0.25  # arcmin

#: The map's centre and a pixel step are exact WCS numbers (only float rounding).
WCS_TOL_DEG = 1e-9
#: The pixel where a cluster's signal peaks is the one nearest its position: at most half a
#: pixel away in each axis (plus rounding).
PEAK_TOL_PIX = 0.5 + 1e-6
#: A Fourier shift keeps the sum of a map exactly; the FITS map is float32 (~6e-8 relative per
#: pixel, rounding errors that mostly cancel in the sum: 1.4e-9 measured).
INTEGRAL_RTOL = 1e-6
#: The same template on a wider grid: the pixel average (2 x 2 samples, radial nodes spread
#: over the grid's radii) changes by ~1e-4 with the grid; the stamp loses < 1e-10 of the signal
#: (a stamp cut to 60% of its side would lose 2e-3).
WIDE_TEMPLATE_RTOL = 5e-4
#: The centroid of a band-limited stamp moves exactly with a Fourier shift; the residual is
#: float32 rounding and the ~1e-6 of the power the 1' beam leaves at the Nyquist modes
#: (2.5e-9 px measured; a shift off by its sign would miss by 2 x 0.3 px here).
CENTROID_TOL_PIX = 1e-4
#: A sub-pixel position that a test's centroid check can tell from a pixel centre.
MIN_SUBPIXEL_OFFSET = 0.1


def zero_spectra(path: Path) -> Path:
    """A spectra table with C_l = 0 (no CMB or foregrounds) out to l = 40000."""
    ell = np.arange(40001.0)
    table = Table({"ell": ell, "cl_total": np.zeros_like(ell)})
    table.meta["cosmology"] = COSMO
    table.meta["foregrounds"] = {}
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


def make(folder: Path, *, spectra: Path, sky=SKY, name="map", **kwargs) -> dict:
    """make_survey_map into ``folder``; returns the data, header, truth and the result."""
    out_map, out_cat = folder / f"{name}.fits", folder / f"{name}.csv"
    result = make_survey_map(
        spectra_path=spectra,
        sky=sky,
        cosmo=None,
        cluster=CLUSTER,
        out_map=out_map,
        out_catalogue=out_cat,
        **kwargs,
    )
    data, header = fits.getdata(out_map, header=True)
    return {"data": data, "header": header, "truth": pd.read_csv(out_cat), "result": result}


def truth_pixels(header: fits.Header, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel (x, y) of every cluster, through astropy's reading of the header."""
    coords = SkyCoord(truth["ra"].to_numpy() * u.deg, truth["dec"].to_numpy() * u.deg)
    x, y = WCS(header).world_to_pixel(coords)
    return np.asarray(x), np.asarray(y)


@pytest.fixture(scope="module")
def sz_only(tmp_path_factory) -> dict:
    """A 1-deg map of 6 clusters alone (no CMB, foregrounds or noise)."""
    folder = tmp_path_factory.mktemp("sz_only")
    return make(
        folder,
        spectra=zero_spectra(folder / "zero.ecsv"),
        sky=QUIET_SKY,
        size_deg=1.0,
        n_clusters=6,
        seed=11,
    )


# --- the WCS --------------------------------------------------------------------------------


def test_header_is_celestial_car_centred_with_ra_to_the_left(sz_only):
    header = sz_only["header"]
    assert (header["CTYPE1"], header["CTYPE2"]) == ("RA---CAR", "DEC--CAR")
    assert header["BUNIT"] == "uK"
    assert header["BEAMFWHM"] == SKY["beam_fwhm_arcmin"]
    assert header["BMAJ"] == pytest.approx(SKY["beam_fwhm_arcmin"] / 60)
    assert sz_only["data"].shape == (240, 240) == sz_only["result"]["shape"]
    w = WCS(header)
    assert w.has_celestial and w.wcs.lngtyp == "RA"
    centre = w.pixel_to_world(239 / 2, 239 / 2)
    assert abs(((centre.ra.deg + 180) % 360) - 180) < WCS_TOL_DEG
    assert abs(centre.dec.deg) < WCS_TOL_DEG
    # RA grows to the left, Dec upwards, by one pixel per step; the map spans RA 0.5..359.5.
    left, right, up = w.pixel_to_world([-0.5, 239.5, 119.5], [119.5, 119.5, 120.5])
    assert left.ra.deg == pytest.approx(0.5, abs=WCS_TOL_DEG)
    assert right.ra.deg == pytest.approx(359.5, abs=WCS_TOL_DEG)
    assert up.dec.deg == pytest.approx(PIXEL / 60, abs=WCS_TOL_DEG)


@pytest.mark.parametrize(("ra", "dec"), [(150.0, 2.0), (359.9, -3.0)])
def test_wcs_centre_away_from_the_origin(ra, dec):
    """Reference point on the native equator (CRVAL2 = 0): the centre is still (ra, dec), and
    a row is a line of constant declination."""
    w = survey_wcs(npix=100, pixel_arcmin=PIXEL, ra_centre_deg=ra, dec_centre_deg=dec)
    centre = w.pixel_to_world(49.5, 49.5)
    assert centre.ra.deg == pytest.approx(ra, abs=WCS_TOL_DEG)
    assert centre.dec.deg == pytest.approx(dec, abs=WCS_TOL_DEG)
    row = w.pixel_to_world(np.arange(100.0), np.full(100, 10.0))
    np.testing.assert_allclose(row.dec.deg, dec - 39.5 * PIXEL / 60, atol=WCS_TOL_DEG)
    x, y = testmap.pixel_to_radec(
        np.array([3.3]), np.array([71.6]), npix=100, pixel_arcmin=PIXEL,
        ra_centre_deg=ra, dec_centre_deg=dec,
    )  # fmt: skip
    back = np.asarray(w.world_to_pixel(SkyCoord(x * u.deg, y * u.deg))).ravel()
    np.testing.assert_allclose(back, [3.3, 71.6], atol=1e-6)


# --- the clusters ---------------------------------------------------------------------------


def test_truth_position_is_where_the_signal_peaks(sz_only):
    data, truth = sz_only["data"], sz_only["truth"]
    x, y = truth_pixels(sz_only["header"], truth)
    half = 8
    for xi, yi in zip(x, y, strict=True):
        ix, iy = round(xi), round(yi)
        window = data[iy - half : iy + half + 1, ix - half : ix + half + 1]
        py, px = np.unravel_index(np.argmin(window), window.shape)  # the decrement's peak
        assert abs(ix - half + px - xi) <= PEAK_TOL_PIX
        assert abs(iy - half + py - yi) <= PEAK_TOL_PIX


def test_catalogue_columns_and_values(sz_only):
    truth = sz_only["truth"]
    assert list(truth.columns) == ["name", "ra", "dec", "z", "m200c", "m500c", "ln_scatter"]
    assert list(truth["name"]) == [f"SZM-T{i:03d}" for i in range(1, 7)]
    assert ((truth["ra"] >= 0) & (truth["ra"] < 360)).all()
    assert (truth["ra"] > 180).any() and (truth["ra"] < 180).any()  # both sides of the wrap
    assert ((truth["m200c"] >= 2e14) & (truth["m200c"] <= 8e14)).all()
    np.testing.assert_allclose(truth["z"], CLUSTER["redshift"])
    m500 = profiles.m200c_to_m500c(truth["m200c"].to_numpy(), z=0.7, cosmo=COSMO)
    np.testing.assert_allclose(truth["m500c"], m500, rtol=1e-10)
    assert truth["ln_scatter"].std() > 0
    assert sz_only["header"]["NCLUST"] == 6


def test_painted_cluster_matches_its_template(tmp_path):
    """One cluster alone: the map's sum is the template's (times exp(delta)), and its
    centroid is the truth position, to well below a pixel."""
    spectra = zero_spectra(tmp_path / "zero.ecsv")
    out = make(
        tmp_path, spectra=spectra, sky=QUIET_SKY, size_deg=1.0, n_clusters=1, seed=5,
        mass_range_1e14=(6.0, 6.0), edge_margin_arcmin=25.0,
    )  # fmt: skip
    (row,) = out["truth"].itertuples()
    # The template as make_survey_map builds it (the same stamp: the pixel average's radial
    # nodes depend on the grid), and on a grid 2.5 times as wide.
    stamp = testmap.stamp_npix(
        m500_max_msun=row.m500c, z=0.7, cosmo=COSMO, cluster=CLUSTER, sky=SKY, pixel_arcmin=PIXEL
    )
    template, wide = (
        sz_template_uk(
            m500_msun=row.m500c, z=0.7, cosmo=COSMO, npix=n, pixel_arcmin=PIXEL,
            fwhm_arcmin=1.0, freq_ghz=150.0, subpixel=CLUSTER["subpixel"],
        ) * math.exp(row.ln_scatter)
        for n in (stamp, int(2.5 * stamp))
    )  # fmt: skip
    data = out["data"].astype(float)
    assert data.sum() == pytest.approx(template.sum(), rel=INTEGRAL_RTOL)
    assert data.sum() == pytest.approx(wide.sum(), rel=WIDE_TEMPLATE_RTOL)  # nothing cut off

    (x,), (y,) = truth_pixels(out["header"], out["truth"])
    assert max(abs(x - round(x)), abs(y - round(y))) > MIN_SUBPIXEL_OFFSET  # not on a centre
    yy, xx = np.indices(data.shape)
    centroid = (np.sum(data * xx) / data.sum(), np.sum(data * yy) / data.sum())
    _, txx = np.indices(template.shape)
    template_centroid = np.sum(template * txx) / template.sum() - stamp // 2  # symmetric: 0
    assert abs(template_centroid) < 1e-9
    assert centroid[0] == pytest.approx(x + template_centroid, abs=CENTROID_TOL_PIX)
    assert centroid[1] == pytest.approx(y, abs=CENTROID_TOL_PIX)


def test_separation_and_edge_constraints(tmp_path):
    spectra = zero_spectra(tmp_path / "zero.ecsv")
    sep, margin = 12.0, 10.0
    out = make(
        tmp_path, spectra=spectra, sky=QUIET_SKY, size_deg=1.0, n_clusters=9, seed=2,
        min_separation_arcmin=sep, edge_margin_arcmin=margin,
    )  # fmt: skip
    truth = out["truth"]
    coords = SkyCoord(truth["ra"].to_numpy() * u.deg, truth["dec"].to_numpy() * u.deg)
    i, j = np.triu_indices(len(truth), k=1)
    separations = coords[i].separation(coords[j]).arcmin
    assert separations.min() >= sep * (1 - 1e-9)
    x, y = truth_pixels(out["header"], truth)
    edges = np.concatenate([x + 0.5, y + 0.5, 239.5 - x, 239.5 - y]) * PIXEL
    assert edges.min() >= margin * (1 - 1e-9)
    with pytest.raises(ValueError, match="cannot place 25 clusters"):
        make(tmp_path, spectra=spectra, size_deg=1.0, n_clusters=25, min_separation_arcmin=sep)


def test_same_seed_same_map(tmp_path):
    spectra = write_spectra(tmp_path / "spectra.ecsv")
    a, b, c = (
        make(tmp_path, spectra=spectra, name=name, size_deg=0.5, n_clusters=2, seed=seed)
        for name, seed in (("a", 4), ("b", 4), ("c", 5))
    )
    np.testing.assert_array_equal(a["data"], b["data"])
    pd.testing.assert_frame_equal(a["truth"], b["truth"])
    assert not np.allclose(a["data"], c["data"])
    assert not np.allclose(a["truth"]["ra"], c["truth"]["ra"])


# --- the sky: noise level and power --------------------------------------------------------


def test_white_noise_level_and_ivar(tmp_path):
    spectra = zero_spectra(tmp_path / "zero.ecsv")
    out_ivar = tmp_path / "ivar.fits"
    out = make(tmp_path, spectra=spectra, size_deg=1.0, n_clusters=0, out_ivar=out_ivar)
    rms = SKY["noise_uk_arcmin"] / PIXEL  # 5 uK-arcmin in 0.25' pixels: 20 uK
    n = out["data"].size
    # The sample rms of n Gaussian pixels scatters by 1/sqrt(2n) (0.3% here); allow 5 sigma.
    assert out["data"].std() == pytest.approx(rms, rel=5 / math.sqrt(2 * n))
    assert out["header"]["NOISEPIX"] == pytest.approx(rms)
    ivar, ivar_header = fits.getdata(out_ivar, header=True)
    assert ivar_header["BUNIT"] == "uK^-2"
    np.testing.assert_allclose(ivar, rms**-2, rtol=1e-7)
    for key in ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2"):
        assert ivar_header[key] == out["header"][key]


def test_high_ell_power_is_beamed_sky_plus_noise(tmp_path):
    """The map's power at 3000 < l < 8000 (CMB + foregrounds x B_l^2, plus white noise) against
    the spectrum it was drawn from: D_l = 100 uK^2 flat, a 1' beam, N_l = (5 uK-arcmin)^2."""
    spectra = write_spectra(tmp_path / "spectra.ecsv")
    out = make(tmp_path, spectra=spectra, size_deg=2.0, n_clusters=0, seed=8)
    data = out["data"].astype(float)
    n, pixel_rad = data.shape[0], PIXEL * ARCMIN
    window = maps.apodization_window(n, n // 8)
    power = np.abs(np.fft.rfft2(data * window)) ** 2 * pixel_rad**2 / n**2 / np.mean(window**2)
    ell = maps.ell_grid(n, pixel_rad)
    band = (ell > 3000) & (ell < 8000)
    ell = ell[band]
    model = 2 * np.pi * 100 / (ell * (ell + 1)) * maps.beam_transfer(ell, 1.0) ** 2
    model += (SKY["noise_uk_arcmin"] * ARCMIN) ** 2
    ratio = power[band] / model
    # Each mode's power is exponential (relative scatter 1); the band holds ~2700 of them.
    assert ratio.mean() == pytest.approx(1.0, abs=5 / math.sqrt(band.sum()))


# --- files and arguments --------------------------------------------------------------------


@pytest.mark.parametrize("failing", ["csv", "fits"])
def test_no_half_written_output_after_a_failure(tmp_path, monkeypatch, failing):
    spectra = zero_spectra(tmp_path / "zero.ecsv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "map.fits").write_text("the previous map")

    def fail(self, path, *args, **kwargs):
        Path(path).write_text("half")
        raise OSError("disk full")

    target = pd.DataFrame if failing == "csv" else fits.HDUList
    monkeypatch.setattr(target, "to_csv" if failing == "csv" else "writeto", fail)
    with pytest.raises(OSError, match="disk full"):
        make(out_dir, spectra=spectra, size_deg=0.5, n_clusters=1)
    assert sorted(p.name for p in out_dir.iterdir()) == ["map.fits"]
    assert (out_dir / "map.fits").read_text() == "the previous map"


def test_bad_arguments_are_refused(tmp_path):
    spectra = zero_spectra(tmp_path / "zero.ecsv")
    with pytest.raises(ValueError, match=r"\|dec\| <= 5"):
        make(tmp_path, spectra=spectra, size_deg=1.0, dec_centre_deg=4.8)
    with pytest.raises(ValueError, match="cosmology.H0 = 70"):
        make_survey_map(
            spectra_path=spectra, sky=SKY, cosmo={**COSMO, "H0": 70.0}, cluster=CLUSTER,
            out_map=tmp_path / "m.fits", out_catalogue=tmp_path / "m.csv", size_deg=0.5,
        )  # fmt: skip
    assert not (tmp_path / "m.fits").exists()


def test_config_section_matches_the_function(paper_config, test_config):
    """The rule passes ``survey_map`` as keyword arguments: every key must be one."""
    parameters = inspect.signature(make_survey_map).parameters
    for config in (paper_config, test_config):
        assert set(config["survey_map"]) <= set(parameters)
    assert paper_config["survey_map"]["size_deg"] == 3.0
