"""szmass.realistic.fits: real Compton-y cutouts from FITS + a catalogue (regridding, centring,
mass conversion, per-cluster errors), and the FITS path of the realistic shard."""

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.special import ndtr

from szmass import io
from szmass.network import dataset
from szmass.realistic import fits as realmaps
from szmass.realistic import shard
from szmass.sky import profiles

from ..conftest import COSMO, sky, write_spectra

NPIX, PIXEL = 40, 0.25
SIGMA_ARCMIN, AMP = 1.0, 1e-4
#: Nested grids (the training pixel an integer number of source pixels, edges aligned):
#: area-weighted regridding of pixel averages gives the coarse pixel averages exactly, up to
#: round-off of the sums (measured 1e-15 relative to the peak).
NESTED_ATOL_REL = 1e-12
#: Y over the cutout against the source's Y over the same area: the regridding conserves it
#: exactly, up to round-off (measured 2e-16). The off-centre blob is narrow (0.5', the
#: cutout's edge 10 sigma away), so all of its Y is in the cutout.
Y_RTOL = 1e-10
SMALL_SIGMA_ARCMIN = 0.5
#: Centroid of the regridded blob [training pixels]: symmetric about pixel NPIX//2 except
#: for the cutout's own asymmetry (-20..19 px), where the Gaussian is e^-(5'/1')^2/2 ~ 4e-6.
CENTROID_ATOL_PIX = 1e-3
#: M500c -> M200c inverted to 1e-8 relative (realmaps._MASS_RTOL); 1e-7 allows round-off.
MASS_RTOL = 1e-7


def _gauss_pixels(n, pixel, centre, sigma=SIGMA_ARCMIN, amp=AMP):
    """Pixel averages of amp exp(-r^2/2 sigma^2) on an n x n grid of side ``pixel`` [arcmin],
    centred at ``centre`` = (x, y) in 0-based pixel coordinates."""
    j = np.arange(n)

    def frac(c):
        off = (j - c) * pixel
        return ndtr((off + pixel / 2) / sigma) - ndtr((off - pixel / 2) / sigma)

    return amp * 2 * math.pi * sigma**2 / pixel**2 * np.outer(frac(centre[1]), frac(centre[0]))


def _write_fits(path, data, pixel_arcmin, *, header="wcs", crval=(150.0, 2.0)):
    """A FITS image with a TAN WCS centred on the image (``header="wcs"``), only CDELT
    keywords (``"cdelt"``), only PIXSIZE [arcmin] (``"pixsize"``), or no pixel size."""
    ny, nx = data.shape
    if header == "wcs":
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.cdelt = [-pixel_arcmin / 60, pixel_arcmin / 60]
        w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
        w.wcs.crval = list(crval)
        hdr = w.to_header()
    else:
        hdr = fits.Header()
        if header == "cdelt":
            hdr["CDELT1"], hdr["CDELT2"] = -pixel_arcmin / 60, pixel_arcmin / 60
        elif header == "pixsize":
            hdr["PIXSIZE"] = pixel_arcmin
    fits.PrimaryHDU(data, header=hdr).writeto(path, overwrite=True)
    return path


def _centroid(y):
    j = np.arange(y.shape[0])
    return float((y.sum(axis=0) * j).sum() / y.sum()), float((y.sum(axis=1) * j).sum() / y.sum())


# --- regridding and centring --------------------------------------------------------------


def test_same_pixel_is_a_copy(tmp_path):
    n_src = NPIX + 5  # odd: the geometric centre is a pixel centre
    c = (n_src - 1) / 2
    src = _gauss_pixels(n_src, PIXEL, (c + 0.3, c - 0.2))
    path = _write_fits(tmp_path / "a.fits", src, PIXEL)
    cut = realmaps.load_y_cutout(path, npix=NPIX, pixel_arcmin=PIXEL)
    start = int(c) - NPIX // 2
    expected = src[start : start + NPIX, start : start + NPIX]
    np.testing.assert_allclose(cut, expected, rtol=0, atol=NESTED_ATOL_REL * expected.max())


@pytest.mark.parametrize("header", ["wcs", "cdelt", "pixsize"])
def test_finer_pixel_regridded_exactly(tmp_path, header):
    n_src = 2 * NPIX + 10  # even, 0.125' pixels; the geometric centre is a pixel corner
    c = (n_src - 1) / 2
    src = _gauss_pixels(n_src, PIXEL / 2, (c, c))
    path = _write_fits(tmp_path / "fine.fits", src, PIXEL / 2, header=header)
    cut = realmaps.load_y_cutout(path, npix=NPIX, pixel_arcmin=PIXEL)
    expected = _gauss_pixels(NPIX, PIXEL, (NPIX // 2, NPIX // 2))
    np.testing.assert_allclose(cut, expected, rtol=0, atol=NESTED_ATOL_REL * expected.max())
    # Y over the cutout = Y of the source pixels it covers (source pixels 4..83).
    assert cut.sum() * PIXEL**2 == pytest.approx(
        src[4:84, 4:84].sum() * (PIXEL / 2) ** 2, rel=Y_RTOL
    )
    np.testing.assert_allclose(_centroid(cut), (NPIX // 2, NPIX // 2), atol=CENTROID_ATOL_PIX)


def test_centred_on_ra_dec(tmp_path):
    """A blob off the image centre, found through the WCS; a non-nested 3x finer grid."""
    n_src = 3 * NPIX + 61
    c = (n_src - 1) / 2
    blob = (c + 17.3, c - 11.6)  # source pixels
    src = _gauss_pixels(n_src, PIXEL / 3, blob, sigma=SMALL_SIGMA_ARCMIN)
    path = _write_fits(tmp_path / "off.fits", src, PIXEL / 3)
    ra, dec = WCS(fits.getheader(path)).all_pix2world([blob], 0)[0]
    cut = realmaps.load_y_cutout(path, npix=NPIX, pixel_arcmin=PIXEL, ra=ra, dec=dec)
    np.testing.assert_allclose(_centroid(cut), (NPIX // 2, NPIX // 2), atol=CENTROID_ATOL_PIX)
    assert cut.sum() * PIXEL**2 == pytest.approx(src.sum() * (PIXEL / 3) ** 2, rel=Y_RTOL)
    # Without ra/dec the cutout is centred on the image: the blob is off by (17.3, -11.6)/3 px.
    plain = realmaps.load_y_cutout(path, npix=NPIX, pixel_arcmin=PIXEL)
    np.testing.assert_allclose(
        _centroid(plain), (NPIX // 2 + 17.3 / 3, NPIX // 2 - 11.6 / 3), atol=CENTROID_ATOL_PIX
    )


def test_overlap_matrix_rows_and_edges():
    w = realmaps.overlap_matrix(n_out=3, step=2.5, centre_src=4.5, n_src=10)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="map smaller than the cutout along x"):
        realmaps.overlap_matrix(n_out=5, step=2.5, centre_src=4.5, n_src=10)


def test_m500c_to_m200c_inverts_the_training_conversion():
    m200 = np.array([1e14, 4e14, 9e14])
    m500 = profiles.m200c_to_m500c(m200, z=0.7, cosmo=COSMO)
    np.testing.assert_allclose(
        realmaps.m500c_to_m200c(m500, z=0.7, cosmo=COSMO), m200, rtol=MASS_RTOL
    )
    assert realmaps.m500c_to_m200c(float(m500[1]), z=0.7, cosmo=COSMO) == pytest.approx(
        4e14, rel=MASS_RTOL
    )


# --- the catalogue and per-cluster errors -------------------------------------------------


def _catalogue(tmp_path, rows, header="id,mass,mass_def,z,fits,ra,dec"):
    path = tmp_path / "catalogue.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def real_dir(tmp_path):
    """Six clusters: three good ones (WCS + M500c, PIXSIZE + M200c, an image that covers the
    cutout but not the beam margin), and four bad ones."""
    n_src = 2 * NPIX + 40
    c = (n_src - 1) / 2
    fine = _gauss_pixels(n_src, PIXEL / 2, (c, c))
    _write_fits(tmp_path / "good.fits", fine, PIXEL / 2)
    _write_fits(tmp_path / "pixsize.fits", fine, PIXEL / 2, header="pixsize")
    _write_fits(tmp_path / "nopix.fits", fine, PIXEL / 2, header="none")
    # Odd: an even image of exactly NPIX pixels has its centre on a pixel corner, so the
    # training cutout (centre on pixel NPIX//2) would reach half a pixel past its edge.
    exact = _gauss_pixels(NPIX + 1, PIXEL, (NPIX / 2, NPIX / 2))
    _write_fits(tmp_path / "exact.fits", exact, PIXEL)
    small = _gauss_pixels(NPIX - 10, PIXEL, ((NPIX - 11) / 2, (NPIX - 11) / 2))
    _write_fits(tmp_path / "small.fits", small, PIXEL)
    rows = [
        "A1,3e14,M500c,0.70,good.fits,,",
        "B2,5e14,M200c,0.68,pixsize.fits,,",
        "C3,4e14,M200c,0.70,missing.fits,,",
        "D4,4e14,M200c,0.70,nopix.fits,,",
        "E5,4e14,Mvir,0.70,good.fits,,",
        "F6,4e14,M500c,0.70,small.fits,,",
        "G7,2e14,m200c,0.72,exact.fits,,",
    ]
    return tmp_path, _catalogue(tmp_path, rows)


def test_bad_clusters_are_named_and_the_rest_load(real_dir, caplog):
    folder, catalogue = real_dir
    margin = 8
    got = realmaps.load_real_clusters(
        catalogue=catalogue,
        fits_dir=folder,
        npix=NPIX,
        pixel_arcmin=PIXEL,
        cosmo=COSMO,
        margin_pix=margin,
    )
    assert got.ids == ["A1", "B2", "G7"]
    assert got.y_maps.shape == (3, NPIX + 2 * margin, NPIX + 2 * margin)
    expected_m200 = realmaps.m500c_to_m200c(3e14, z=0.7, cosmo=COSMO)
    np.testing.assert_allclose(got.m200c, [expected_m200, 5e14, 2e14], rtol=MASS_RTOL)
    np.testing.assert_allclose(got.z, [0.70, 0.68, 0.72])
    # G7 covers the cutout but not the margin: zero-filled, with a warning naming it.
    assert np.all(got.y_maps[2][:margin] == 0) and got.y_maps[2][margin:-margin].sum() > 0
    assert any("G7" in r.message and "zero-filled" in r.message for r in caplog.records)
    problems = {
        "C3": "does not exist",
        "D4": "no pixel size",
        "E5": "unknown mass definition 'Mvir'",
        "F6": "map smaller than the cutout",
    }
    assert len(got.errors) == len(problems)
    for cid, text in problems.items():
        assert any(f"cluster {cid!r}" in e and text in e for e in got.errors), (cid, got.errors)
    with pytest.raises(realmaps.RealMapError) as err:
        realmaps.raise_for_errors(got.errors, n_loaded=len(got.ids))
    message = str(err.value)
    assert "4 cluster(s) could not be loaded (3 loaded)" in message
    assert all(cid in message for cid in problems)
    realmaps.raise_for_errors([], n_loaded=3)  # nothing to raise


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        (["A,1e14,M200c,0.7,a.fits"], "id,mass,mass_def,z", "lacks the columns \\['fits'\\]"),
        (["A,1e14,M200c,0.7,a.fits", "A,2e14,M200c,0.7,b.fits"], None, "duplicate ids 'A'"),
        ([",1e14,M200c,0.7,a.fits"], None, "empty id on line"),
        ([], None, "has no clusters"),
    ],
)
def test_catalogue_errors(tmp_path, rows, header, match):
    path = _catalogue(tmp_path, rows, header=header or "id,mass,mass_def,z,fits")
    with pytest.raises(realmaps.CatalogueError, match=match):
        realmaps.read_catalogue(path)


def test_bad_values_name_the_cluster(tmp_path):
    rows = ["A,lots,M200c,0.7,a.fits,,", "B,1e14,M200c,0.7,b.fits,150.0,"]
    got = realmaps.load_real_clusters(
        catalogue=_catalogue(tmp_path, rows),
        fits_dir=tmp_path,
        npix=NPIX,
        pixel_arcmin=PIXEL,
        cosmo=COSMO,
    )
    assert got.ids == [] and got.y_maps.shape == (0, NPIX, NPIX)
    assert "cluster 'A': catalogue line 2: mass = 'lots' is not a number" in got.errors[0]
    assert "cluster 'B'" in got.errors[1] and "both ra and dec" in got.errors[1]


# --- the FITS path of the realistic shard -------------------------------------------------


@pytest.mark.parametrize("skip", [False, True])
def test_fits_shard(real_dir, skip):
    folder, _ = real_dir
    npix = 16
    rows = ["A1,3e14,M500c,0.70,good.fits,,", "B2,5e14,M200c,0.68,pixsize.fits,,"]
    if skip:
        rows.insert(1, "C3,4e14,M200c,0.70,missing.fits,,")
    catalogue = _catalogue(folder, rows)
    spectra = write_spectra(folder / "spectra.ecsv")
    out = folder / "real.zarr"
    cfg = {
        "source": "fits",
        "catalogue": str(catalogue),
        "fits_dir": str(folder),
        "n_realizations": 3,
        "skip_bad_clusters": skip,
    }
    cluster_cfg = {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 2}
    ds = shard.simulate_realistic_shard(
        spectra_path=str(spectra),
        out_path=str(out),
        seed=9,
        sky=sky(npix),
        cluster=cluster_cfg,
        realistic=cfg,
    )
    ds = io.open_shard(out)
    assert ds.sizes["realization"] == 6
    assert ds.attrs["cluster_names"] == ["A1", "B2"]
    # Stream keys are catalogue rows, so a skipped cluster does not change the others' maps.
    assert list(ds.cluster.values) == ([0, 2] if skip else [0, 1])
    assert ds.attrs["skipped_clusters"] == (["C3"] if skip else [])
    # each map's cluster by name, for the predictions tables (three maps per cluster)
    assert list(io.map_cluster_names(ds)) == ["A1"] * 3 + ["B2"] * 3
    assert list(io.map_cluster_names(ds.isel(realization=slice(2, 4)))) == ["A1", "B2"]
    assert "FITS" in ds.attrs["description"]
    # Y in the 16-pixel cutout (edges at -2.125' and 1.875' from the blob) of the nested maps.
    edges = (np.array([-npix // 2 - 0.5, npix // 2 - 0.5]) * PIXEL) / SIGMA_ARCMIN
    y_cyl = AMP * 2 * math.pi * SIGMA_ARCMIN**2 * (ndtr(edges[1]) - ndtr(edges[0])) ** 2
    np.testing.assert_allclose(ds.cluster_y_cyl, y_cyl, rtol=Y_RTOL)
    norm = {
        "sky_scale": 500.0,
        "sz_scale": 300.0,
        "m_norm_msun": 4.5e14,
        "npix": npix,
        "pixel_arcmin": PIXEL,
    }
    prepared = dataset.prepare(ds, norm, where=str(out))
    assert prepared["inputs"].shape == (6, npix, npix, 1)


def test_fits_shard_with_a_bad_cluster_raises_and_writes_nothing(real_dir):
    folder, _ = real_dir
    rows = [
        "A1,3e14,M500c,0.70,good.fits,,",
        "C3,4e14,M200c,0.70,missing.fits,,",
        "E5,4e14,Mvir,0.70,good.fits,,",
    ]
    cfg = {"source": "fits", "catalogue": str(_catalogue(folder, rows)), "fits_dir": str(folder)}
    out = folder / "real.zarr"
    with pytest.raises(realmaps.RealMapError, match="(?s)2 cluster.*'C3'.*'E5'"):
        shard.simulate_realistic_shard(
            spectra_path=str(write_spectra(folder / "spectra.ecsv")),
            out_path=str(out),
            seed=9,
            sky=sky(16),
            cluster={"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 2},
            realistic=cfg,
        )
    assert not out.exists()
