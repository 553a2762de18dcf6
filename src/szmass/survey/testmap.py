"""A survey-like 150 GHz test map with its truth catalogue, made exactly as the training maps
are (Gupta & Reichardt 2020, arXiv:2003.06135, §2.2; SPEC §1-2), for ``szmass predict``.

The sky is a Gaussian CMB + foreground field with the spectra table's total C_l, convolved
with the beam; clusters painted at arbitrary sub-pixel positions (the A10 profile of M500c,
converted from M200c with the Diemer & Kravtsov 2015 concentrations, at ``cluster.redshift``,
beam-convolved, times a log-normal scatter exp(delta), delta ~ N(0, sigma_int) per cluster);
and white noise of ``noise_uk_arcmin``. Unlike a training cutout the map is not apodized:
predict tapers each cutout it takes.

The map is a plate-carree (CAR) FITS image in ICRS, RA increasing to the left (CDELT1 < 0),
centred on (``ra_centre_deg``, ``dec_centre_deg``); the reference point sits on the native
equator (CRVAL2 = 0, CRPIX2 shifted) so that rows are lines of constant declination and columns
of constant right ascension, as in pixell/ACT maps. The default centre RA = 0 puts the
0/360 deg wrap inside the map. Header: ``BUNIT = 'uK'``, ``BEAMFWHM`` (beam FWHM [arcmin]),
``BMAJ``/``BMIN`` (the same in degrees, the radio convention), ``NOISE`` (white noise
[uK-arcmin]), ``NOISEPIX`` (its per-pixel rms [uK]), ``FREQ`` [GHz], ``SEED``, ``NCLUST``.

Usage (the rule ``make_survey_map`` does this with the config's ``survey_map`` section)::

    from szmass.survey.testmap import make_survey_map
    make_survey_map(spectra_path="results/spectra/spectra.ecsv", sky=config["sky"],
                    cosmo=None, cluster=config["cluster"],
                    out_map="testmap.fits", out_catalogue="testmap_truth.csv",
                    size_deg=3.0, n_clusters=36, seed=config["seed"])

and then ``szmass predict`` on ``testmap.fits`` with the catalogue's name, ra, dec, z columns;
its m200c column is the truth to compare the estimates with.
"""

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from .. import __version__
from ..config import single_redshift
from ..logs import Progress
from ..sky import maps, profiles
from ..sky.cluster import sz_template_uk
from ..sky.simulate import BEAM_CUTOFF
from ..sky.spectra import read_spectra
from ..units import ARCMIN
from .cutouts import shift_subpixel

log = logging.getLogger("szmass.survey")

#: Set code of the survey map's random streams: beyond simulate.SET_CODES (1-4), so that no
#: stream repeats a training map's for the same seed.
SURVEY_SET_CODE = 5
COMPONENT_CODES = {"positions": 0, "masses": 1, "scatter": 2, "field": 3, "noise": 4}
#: The Gaussian field is drawn on a grid this many times the map's side and cropped, so the
#: map is not periodic (the training cutouts use sky.pad_factor = 4 of a 10' cutout; for a
#: degree-sized map 2 is enough and keeps the FFT small).
FIELD_PAD_FACTOR = 2
#: Flat sky on the CAR grid: a pixel is cos(dec) narrower on the sky in RA than in Dec; the
#: map must stay within this |dec| (cos 5 deg = 0.9962; at |dec| <= 1.5 deg, 0.9997).
MAX_ABS_DEC_DEG = 5.0
#: Candidate positions drawn per cluster before the placement gives up.
TRIES_PER_CLUSTER = 500


def survey_rng(seed: int, component: str) -> np.random.Generator:
    """The survey map's random stream of one component (as ``simulate.map_rng``)."""
    key = (SURVEY_SET_CODE, COMPONENT_CODES[component])
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def survey_wcs(
    *, npix: int, pixel_arcmin: float, ra_centre_deg: float, dec_centre_deg: float
) -> WCS:
    """Celestial CAR WCS of an npix x npix map whose geometric centre is the given position."""
    w = WCS(naxis=2)
    step = pixel_arcmin / 60.0
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.cdelt = [-step, step]
    w.wcs.crval = [ra_centre_deg % 360.0, 0.0]
    w.wcs.crpix = [(npix + 1) / 2.0, (npix + 1) / 2.0 - dec_centre_deg / step]
    w.wcs.lonpole, w.wcs.latpole = 0.0, 90.0
    return w


def pixel_to_radec(
    x: np.ndarray,
    y: np.ndarray,
    *,
    npix: int,
    pixel_arcmin: float,
    ra_centre_deg: float,
    dec_centre_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(ra in [0, 360), dec) [deg] of 0-based pixel coordinates (x = column, y = row) of the
    plate-carree grid of ``survey_wcs`` (written out, so the tests can check the header)."""
    step, c = pixel_arcmin / 60.0, (npix - 1) / 2.0
    ra = np.mod(ra_centre_deg - (np.asarray(x) - c) * step, 360.0)
    ra = np.where(ra >= 360.0, 0.0, ra)
    return ra, dec_centre_deg + (np.asarray(y) - c) * step


def angular_separation_arcmin(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle separation [arcmin] of positions in degrees (haversine)."""
    r1, d1, r2, d2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2.0 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 60.0


def draw_positions(
    rng: np.random.Generator,
    *,
    n_clusters: int,
    geometry: dict[str, Any],
    min_separation_arcmin: float,
    edge_margin_arcmin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """0-based pixel positions (x, y) (n,), uniform at least ``edge_margin_arcmin`` inside the
    map's edges (pixel edges at -0.5 and npix - 0.5) and at least ``min_separation_arcmin``
    apart on the sphere; raises ValueError when they do not fit."""
    npix, pixel = geometry["npix"], geometry["pixel_arcmin"]
    lo, hi = -0.5 + edge_margin_arcmin / pixel, npix - 0.5 - edge_margin_arcmin / pixel
    if n_clusters and lo >= hi:
        raise ValueError(f"edge_margin_arcmin = {edge_margin_arcmin} leaves no room in the map")
    xs, ys, ras, decs = [], [], [], []
    tries = 0
    while len(xs) < n_clusters:
        if tries >= TRIES_PER_CLUSTER * n_clusters:
            raise ValueError(
                f"cannot place {n_clusters} clusters {min_separation_arcmin}' apart in a "
                f"{npix * pixel / 60:g} deg map with {edge_margin_arcmin}' margins "
                f"(placed {len(xs)}); ask for fewer or a larger map"
            )
        tries += 1
        x, y = rng.uniform(lo, hi, size=2)
        ra, dec = pixel_to_radec(x, y, **geometry)
        if ras and angular_separation_arcmin(ra, dec, ras, decs).min() < min_separation_arcmin:
            continue
        for values, value in ((xs, x), (ys, y), (ras, ra), (decs, dec)):
            values.append(value)
    return np.array(xs), np.array(ys)


def stamp_npix(
    *, m500_max_msun: float, z: float, cosmo: dict, cluster: dict, sky: dict, pixel_arcmin: float
) -> int:
    """Side [px] of the cluster stamp: the heaviest cluster's x_max R500 plus 4 beam FWHM on
    each side (the profile is zero beyond x_max R500), and 2 px for the sub-pixel shift."""
    theta500_arcmin = float(profiles.theta500_rad(m500_max_msun, z=z, cosmo=cosmo)) / ARCMIN
    radius = cluster["x_max_r500"] * theta500_arcmin + 4.0 * sky["beam_fwhm_arcmin"]
    return 2 * math.ceil(radius / pixel_arcmin) + 2


def paint_clusters(
    *,
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    m500c_msun: np.ndarray,
    ln_scatter: np.ndarray,
    m500_max_msun: float,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    pixel_arcmin: float,
) -> np.ndarray:
    """The clusters' beam-convolved tSZ map [uK] (``shape``): each cluster's ``sz_template_uk``
    times exp(ln_scatter), moved to its position (x, y) [0-based px], clipped at the edges."""
    z = single_redshift(cluster["redshift"])
    n = stamp_npix(
        m500_max_msun=m500_max_msun,
        z=z,
        cosmo=cosmo,
        cluster=cluster,
        sky=sky,
        pixel_arcmin=pixel_arcmin,
    )
    c = n // 2
    out = np.zeros(shape)
    progress = Progress(len(x), "clusters painted", log)
    for xi, yi, m500, delta in zip(x, y, m500c_msun, ln_scatter, strict=True):
        template = sz_template_uk(
            m500_msun=m500,
            z=z,
            cosmo=cosmo,
            npix=n,
            pixel_arcmin=pixel_arcmin,
            fwhm_arcmin=sky["beam_fwhm_arcmin"],
            freq_ghz=sky["freq_ghz"],
            subpixel=cluster["subpixel"],
            x_max=cluster["x_max_r500"],
        )
        ix, iy = int(round(xi)), int(round(yi))
        stamp = shift_subpixel(template * np.exp(delta), yi - iy, xi - ix)
        y0, x0 = iy - c, ix - c
        sy = slice(max(y0, 0), min(y0 + n, shape[0]))
        sx = slice(max(x0, 0), min(x0 + n, shape[1]))
        out[sy, sx] += stamp[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
        progress.update(1)
    return out


def sky_field(
    *,
    ell: np.ndarray,
    cl: np.ndarray,
    npix: int,
    pixel_arcmin: float,
    fwhm_arcmin: float,
    seed: int,
) -> np.ndarray:
    """Beam-convolved Gaussian CMB + foreground field [uK] with spectrum C_l (npix, npix),
    drawn on a FIELD_PAD_FACTOR-times larger grid and centre-cropped (as sky_components)."""
    if fwhm_arcmin > 0 and maps.beam_transfer(ell[-1], fwhm_arcmin) > BEAM_CUTOFF:
        raise ValueError(
            f"spectra.lmax = {ell[-1]} is too low for a {fwhm_arcmin}' beam "
            f"(B_l = {maps.beam_transfer(ell[-1], fwhm_arcmin):.1e} > {BEAM_CUTOFF})"
        )
    n_pad = npix * FIELD_PAD_FACTOR
    filt = maps.field_filter(
        ell=ell, cl=cl, n=n_pad, pixel_rad=pixel_arcmin * ARCMIN, fwhm_arcmin=fwhm_arcmin
    )
    white = survey_rng(seed, "field").standard_normal((n_pad, n_pad))
    return maps.crop_center(maps.gaussian_fields(white, filt), npix)


def survey_cosmology(table_cosmo: dict[str, Any], cosmo: dict[str, Any] | None) -> dict:
    """The spectra table's cosmology (with the derived sigma8 colossus needs); a given
    ``cosmo`` (the config section) must agree with it on every key it has."""
    out = dict(table_cosmo)
    for key, value in (cosmo or {}).items():
        if key in out and not math.isclose(float(out[key]), float(value), rel_tol=1e-9):
            raise ValueError(
                f"cosmology.{key} = {value} differs from the spectra table's {out[key]}; "
                "recompute the spectra"
            )
    return out


def map_header(
    wcs: WCS, *, sky: dict, cluster: dict, noise_rms_uk: float, seed: int, n_clusters: int
) -> fits.Header:
    """The map's header: the WCS, units, beam, noise and provenance."""
    h = wcs.to_header()
    h.remove("MJDREF", ignore_missing=True)  # astropy's default, meaningless for a sky map
    fwhm = sky["beam_fwhm_arcmin"]
    h["BUNIT"] = ("uK", "CMB temperature fluctuation [uK]")
    h["BEAMFWHM"] = (fwhm, "[arcmin] Gaussian beam FWHM (map is convolved)")
    h["BMAJ"] = (fwhm / 60.0, "[deg] beam FWHM")
    h["BMIN"] = (fwhm / 60.0, "[deg] beam FWHM")
    h["NOISE"] = (sky["noise_uk_arcmin"], "[uK-arcmin] white noise level")
    h["NOISEPIX"] = (noise_rms_uk, "[uK] white noise rms per pixel")
    h["FREQ"] = (sky["freq_ghz"], "[GHz] observing frequency")
    h["NCLUST"] = (n_clusters, "clusters painted (truth catalogue)")
    h["ZCLUST"] = (single_redshift(cluster["redshift"]), "redshift of every cluster")
    h["SIGMAINT"] = (cluster["sigma_int"], "log-normal scatter of the SZ amplitude")
    h["SEED"] = (seed, "szmass seed of the map")
    h["CREATOR"] = (f"szmass {__version__}", "szmass.survey.testmap")
    h["CONTENT"] = ("CMB+fg+tSZ+noise", "beam-convolved sky + white noise")
    return h


def write_outputs_atomic(files: dict[Path, Any]) -> None:
    """Write every ``{path: HDUList or DataFrame}`` beside its path, then rename them all into
    place; on any failure no output is written or replaced and no temporary file is left."""
    tmps = {path: path.with_name(f".{path.name}.tmp-{os.getpid()}") for path in files}
    try:
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, pd.DataFrame):
                content.to_csv(tmps[path], index=False)
            else:
                content.writeto(tmps[path], overwrite=True)
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)


def draw_clusters(
    *,
    seed: int,
    n_clusters: int,
    geometry: dict[str, Any],
    min_separation_arcmin: float,
    edge_margin_arcmin: float,
    mass_range_1e14: tuple[float, float],
    cluster: dict[str, Any],
    cosmo: dict[str, Any],
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The truth catalogue and the clusters' 0-based pixel positions (x, y): positions from
    ``draw_positions``, M200c log-uniform in ``mass_range_1e14`` [1e14 Msun], M500c from it
    at ``cluster.redshift``, ln-scatter delta ~ N(0, sigma_int); each from its own stream."""
    x, y = draw_positions(
        survey_rng(seed, "positions"),
        n_clusters=n_clusters,
        geometry=geometry,
        min_separation_arcmin=min_separation_arcmin,
        edge_margin_arcmin=edge_margin_arcmin,
    )
    lo, hi = (np.log(m * 1e14) for m in mass_range_1e14)
    m200c = np.exp(survey_rng(seed, "masses").uniform(lo, hi, size=n_clusters))
    ln_scatter = cluster["sigma_int"] * survey_rng(seed, "scatter").standard_normal(n_clusters)
    z = single_redshift(cluster["redshift"])
    m500c = np.atleast_1d(profiles.m200c_to_m500c(m200c, z=z, cosmo=cosmo)) if n_clusters else m200c
    ra, dec = pixel_to_radec(x, y, **geometry)
    truth = pd.DataFrame(
        {
            "name": [f"SZM-T{i + 1:03d}" for i in range(n_clusters)],
            "ra": ra,
            "dec": dec,
            "z": np.full(n_clusters, z),
            "m200c": m200c,
            "m500c": m500c,
            "ln_scatter": ln_scatter,
        }
    )
    return truth, x, y


def ivar_hdus(header: fits.Header, *, shape: tuple[int, int], noise_rms_uk: float) -> fits.HDUList:
    """The inverse-variance map [uK^-2]: 1 / NOISEPIX^2 everywhere, the map's header."""
    h = header.copy()
    h["BUNIT"] = ("uK^-2", "inverse variance of the white noise")
    h["CONTENT"] = ("ivar", "1 / NOISEPIX^2 in every pixel")
    data = np.full(shape, noise_rms_uk**-2.0, dtype=np.float32)
    return fits.HDUList([fits.PrimaryHDU(data, header=h)])


def make_survey_map(
    *,
    spectra_path: str | os.PathLike,
    sky: dict[str, Any],
    cosmo: dict[str, Any] | None,
    cluster: dict[str, Any],
    out_map: str | os.PathLike,
    out_catalogue: str | os.PathLike,
    size_deg: float = 3.0,
    pixel_arcmin: float = 0.25,
    ra_centre_deg: float = 0.0,
    dec_centre_deg: float = 0.0,
    n_clusters: int = 36,
    mass_range_1e14: tuple[float, float] = (2.0, 8.0),
    min_separation_arcmin: float = 15.0,
    edge_margin_arcmin: float = 8.0,
    seed: int = 0,
    out_ivar: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Make a survey-like test map [uK] (FITS, CAR) and its truth catalogue (CSV).

    Args:
        spectra_path: the spectra table (total sky C_l [uK^2], l = 0..lmax, and its cosmology).
        sky: ``freq_ghz``, ``beam_fwhm_arcmin``, ``noise_uk_arcmin`` are used (config ``sky``).
        cosmo: config ``cosmology`` or None; the table's cosmology (with its derived sigma8)
            is used, and a given ``cosmo`` must agree with it.
        cluster: ``redshift``, ``sigma_int``, ``x_max_r500`` [R500], ``subpixel``.
        size_deg: side of the square map [deg]; npix = round(size_deg * 60 / pixel_arcmin).
        pixel_arcmin: pixel side [arcmin] (0.25, the training pixel).
        ra_centre_deg, dec_centre_deg: the map centre [deg], |dec| of the map <= 5 deg.
        n_clusters: clusters painted; M200c log-uniform in ``mass_range_1e14`` [1e14 Msun].
        min_separation_arcmin, edge_margin_arcmin: least cluster separation and distance
            from the map edge [arcmin].
        seed: the map's streams (positions, masses, scatter, field, noise) derive from it.
        out_ivar: optional inverse-variance map [uK^-2] (1 / NOISEPIX^2, same WCS).
    Returns:
        ``n_clusters``, ``shape`` (ny, nx), ``pixel_arcmin``, ``noise_rms_uk``, ``wall_s``.
    Catalogue columns: ``name`` (SZM-T001...), ``ra`` [deg, 0-360), ``dec`` [deg], ``z``,
    ``m200c``, ``m500c`` [Msun], ``ln_scatter`` (the drawn delta).
    """
    start = time.perf_counter()
    npix = int(round(size_deg * 60.0 / pixel_arcmin))
    if abs(dec_centre_deg) + size_deg / 2 > MAX_ABS_DEC_DEG:
        raise ValueError(
            f"the map reaches |dec| = {abs(dec_centre_deg) + size_deg / 2:g} deg; the flat-sky "
            f"CAR map is made only within |dec| <= {MAX_ABS_DEC_DEG} deg"
        )
    if not 0 < mass_range_1e14[0] <= mass_range_1e14[1]:
        raise ValueError(f"mass_range_1e14 = {list(mass_range_1e14)} must have 0 < lo <= hi")
    noise_rms = maps.white_noise_rms_per_pixel(sky["noise_uk_arcmin"], pixel_arcmin)
    if out_ivar is not None and noise_rms <= 0:
        raise ValueError("an inverse-variance map needs sky.noise_uk_arcmin > 0")
    geometry = dict(
        npix=npix,
        pixel_arcmin=pixel_arcmin,
        ra_centre_deg=ra_centre_deg,
        dec_centre_deg=dec_centre_deg,
    )
    spectra = read_spectra(spectra_path)
    cosmo = survey_cosmology(dict(spectra.meta["cosmology"]), cosmo)
    log.info("survey map: %d x %d px of %g', %d clusters", npix, npix, pixel_arcmin, n_clusters)
    truth, x, y = draw_clusters(
        seed=seed,
        n_clusters=n_clusters,
        geometry=geometry,
        min_separation_arcmin=min_separation_arcmin,
        edge_margin_arcmin=edge_margin_arcmin,
        mass_range_1e14=mass_range_1e14,
        cluster=cluster,
        cosmo=cosmo,
    )

    # Flat sky on the CAR grid: exact enough near the equator (|dec| <= 1.5 deg: cos > 0.9996).
    log.info("drawing the CMB + foreground field (%d^2 px padded)", npix * FIELD_PAD_FACTOR)
    data = sky_field(
        ell=np.asarray(spectra["ell"], dtype=float),
        cl=np.asarray(spectra["cl_total"], dtype=float),
        npix=npix,
        pixel_arcmin=pixel_arcmin,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
        seed=seed,
    )
    m500_max = float(
        profiles.m200c_to_m500c(
            mass_range_1e14[1] * 1e14, z=single_redshift(cluster["redshift"]), cosmo=cosmo
        )
    )
    data += paint_clusters(
        shape=(npix, npix),
        x=x,
        y=y,
        m500c_msun=truth["m500c"].to_numpy(),
        ln_scatter=truth["ln_scatter"].to_numpy(),
        m500_max_msun=m500_max,
        cosmo=cosmo,
        sky=sky,
        cluster=cluster,
        pixel_arcmin=pixel_arcmin,
    )
    data += noise_rms * survey_rng(seed, "noise").standard_normal((npix, npix))

    header = map_header(
        survey_wcs(**geometry),
        sky=sky,
        cluster=cluster,
        noise_rms_uk=noise_rms,
        seed=seed,
        n_clusters=n_clusters,
    )
    files = {
        Path(out_map): fits.HDUList([fits.PrimaryHDU(data.astype(np.float32), header=header)]),
        Path(out_catalogue): truth,
    }
    if out_ivar is not None:
        files[Path(out_ivar)] = ivar_hdus(header, shape=data.shape, noise_rms_uk=noise_rms)
    write_outputs_atomic(files)
    wall = time.perf_counter() - start
    log.info("wrote %s (%d clusters) in %.1f s", ", ".join(map(str, files)), n_clusters, wall)
    return {
        "n_clusters": n_clusters,
        "shape": (npix, npix),
        "pixel_arcmin": pixel_arcmin,
        "noise_rms_uk": noise_rms,
        "wall_s": wall,
    }
