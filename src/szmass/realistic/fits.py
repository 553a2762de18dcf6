"""Real Compton-y cutouts for the realistic-profile test: a catalogue (CSV) of clusters and
one FITS image of Compton y per cluster, regridded to the training pixel (Gupta & Reichardt
2020, arXiv:2003.06135, §4.4: the Magneticum cutouts were regridded to the training pixel and
their M500c converted to M200c with the Diemer & Kravtsov 2015 concentrations).

Catalogue columns (CSV with a header line; extra columns are ignored):

- ``id``: unique name of the cluster;
- ``mass`` [Msun, no h] and ``mass_def``: ``M500c`` or ``M200c``;
- ``z``: redshift;
- ``fits``: file name of the cluster's y map, relative to ``fits_dir`` (or absolute);
- ``ra``, ``dec`` (optional, degrees): the cluster centre; without them the cutout is centred
  on the geometric centre of the image.

Errors: ``read_catalogue`` raises ``CatalogueError`` for problems of the whole file (missing,
no header, missing columns, duplicate or empty ids). ``load_real_clusters`` checks every
cluster, keeps the ones that load and returns one message per bad cluster (naming its id and
the problem); ``raise_for_errors`` then raises a single ``RealMapError`` listing them all.
"""

import csv
import logging
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..logs import Progress
from ..sky import profiles

log = logging.getLogger("szmass.realmaps")

REQUIRED_COLUMNS = ("id", "mass", "mass_def", "z", "fits")
MASS_DEFINITIONS = ("M500c", "M200c")
#: A target pixel may reach this far (in source pixels) past the image edge and still count
#: as covered (rounding of the pixel-scale keywords).
_EDGE_TOLERANCE_PIX = 1e-6
#: Relative accuracy of the M500c -> M200c inversion.
_MASS_RTOL = 1e-8


class RealMapError(ValueError):
    """A real cutout or its catalogue entry is unusable; the message names the cluster(s)."""


class CatalogueError(RealMapError):
    """The catalogue file as a whole is unusable."""


class RealClusters(NamedTuple):
    """What ``load_real_clusters`` returns."""

    y_maps: np.ndarray  # (n, npix, npix) Compton y
    m200c: np.ndarray  # (n,) Msun
    z: np.ndarray  # (n,)
    ids: list[str]
    errors: list[str]  # one message per cluster that did not load


def read_catalogue(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read the catalogue CSV into a list of rows (dicts of stripped strings, plus ``line``,
    the 1-based line number). Values are checked per cluster by ``load_real_clusters``.

    Raises:
        CatalogueError: the file is missing or empty, lacks a required column, or has an empty
            or duplicate id (naming the lines).
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"catalogue {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        if not reader.fieldnames:
            raise CatalogueError(f"catalogue {path} is empty (no header line)")
        fields = [f.strip() for f in reader.fieldnames]
        missing = [c for c in REQUIRED_COLUMNS if c not in fields]
        if missing:
            raise CatalogueError(f"catalogue {path} lacks the columns {missing} (has {fields})")
        rows = []
        for raw in reader:
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue
            row["line"] = reader.line_num
            rows.append(row)
    if not rows:
        raise CatalogueError(f"catalogue {path} has no clusters")
    empty = [r["line"] for r in rows if not r["id"]]
    if empty:
        raise CatalogueError(f"catalogue {path}: empty id on line(s) {empty}")
    seen: dict[str, int] = {}
    dups = []
    for r in rows:
        if r["id"] in seen:
            dups.append(f"{r['id']!r} (lines {seen[r['id']]} and {r['line']})")
        seen.setdefault(r["id"], r["line"])
    if dups:
        raise CatalogueError(f"catalogue {path}: duplicate ids {', '.join(dups)}")
    return rows


def _parse_row(row: dict[str, Any]) -> dict[str, Any]:
    """Typed values of one catalogue row; ValueError (without the id) on a bad value."""

    def number(key: str) -> float:
        try:
            value = float(row[key])
        except (TypeError, ValueError):
            raise ValueError(f"{key} = {row.get(key)!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{key} = {row[key]!r} is not finite")
        return value

    mass, z = number("mass"), number("z")
    if mass <= 0:
        raise ValueError(f"mass = {row['mass']!r} must be positive")
    if z < 0:
        raise ValueError(f"z = {row['z']!r} must be >= 0")
    by_lower = {d.lower(): d for d in MASS_DEFINITIONS}
    mass_def = by_lower.get(row["mass_def"].lower())
    if mass_def is None:
        raise ValueError(
            f"unknown mass definition {row['mass_def']!r} (expected one of {MASS_DEFINITIONS})"
        )
    has_ra, has_dec = bool(row.get("ra")), bool(row.get("dec"))
    if has_ra != has_dec:
        raise ValueError("give both ra and dec or neither")
    ra = number("ra") if has_ra else None
    dec = number("dec") if has_dec else None
    if not row["fits"]:
        raise ValueError("no FITS file name")
    return {"mass": mass, "mass_def": mass_def, "z": z, "ra": ra, "dec": dec, "fits": row["fits"]}


def m500c_to_m200c(m500c_msun: np.ndarray, *, z: float, cosmo: dict[str, Any]) -> np.ndarray:
    """M200c [Msun] from M500c: the inverse of ``profiles.m200c_to_m500c`` (NFW with the
    Diemer & Kravtsov 2015 c200c, colossus), solved by fixed-point iteration on the ratio
    M200c / M500c (it varies slowly with mass, so a few steps reach 1e-8)."""
    target = np.atleast_1d(np.asarray(m500c_msun, dtype=float))
    m200 = 1.4 * target
    for _ in range(50):
        m500 = np.atleast_1d(profiles.m200c_to_m500c(m200, z=z, cosmo=cosmo))
        m200 = m200 * target / m500
        if np.all(np.abs(m500 / target - 1.0) < _MASS_RTOL):
            break
    else:
        raise RuntimeError("the M500c -> M200c inversion did not converge")
    return m200 if np.ndim(m500c_msun) else m200[0]


def fits_pixel_arcmin(header: Any) -> tuple[float, float]:
    """Pixel side (x, y) [arcmin] of a 2-d FITS image: from a celestial WCS
    (``astropy.wcs.utils.proj_plane_pixel_scales``), else the CDELT1/CDELT2 keywords
    [deg], else PIXSIZE [arcmin] (square pixels).

    Raises:
        ValueError: none of those is present or positive.
    """
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    wcs = WCS(header, naxis=2)
    if wcs.has_celestial:
        sx, sy = proj_plane_pixel_scales(wcs.celestial) * 60.0
    elif "CDELT1" in header and "CDELT2" in header:
        sx, sy = abs(float(header["CDELT1"])) * 60.0, abs(float(header["CDELT2"])) * 60.0
    elif "PIXSIZE" in header:
        sx = sy = float(header["PIXSIZE"])
    else:
        raise ValueError("no pixel size in the FITS header (no celestial WCS, CDELT or PIXSIZE)")
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        raise ValueError(f"bad pixel size ({sx}', {sy}') in the FITS header")
    return float(sx), float(sy)


def overlap_matrix(
    *, n_out: int, step: float, centre_src: float, n_src: int, axis: str = "x"
) -> np.ndarray:
    """Weights W (n_out, n_src) of an area-weighted (flux-conserving) regridding along one
    axis: output pixel i, of ``step`` source pixels, centred ``(i - n_out // 2) * step``
    source pixels from ``centre_src`` (a 0-based source pixel coordinate; source pixel j spans
    [j - 0.5, j + 0.5]); W[i, j] = overlap of output pixel i with source pixel j / step, so
    rows sum to 1 and an output pixel is the mean of the source over its area.

    Raises:
        ValueError: the output reaches outside the source image.
    """
    lo = centre_src + 0.5 + (np.arange(n_out) - n_out // 2 - 0.5) * step
    hi = lo + step
    if lo[0] < -_EDGE_TOLERANCE_PIX or hi[-1] > n_src + _EDGE_TOLERANCE_PIX:
        raise ValueError(
            f"map smaller than the cutout along {axis}: the cutout's edges are at source pixel "
            f"coordinates {lo[0] - 0.5:.2f}..{hi[-1] - 0.5:.2f}, the image's at "
            f"-0.5..{n_src - 0.5}"
        )
    j = np.arange(n_src)
    overlap = np.minimum(hi[:, None], j[None, :] + 1.0) - np.maximum(lo[:, None], j[None, :])
    return np.clip(overlap, 0.0, None) / step


def _read_image(fits_path: Path) -> tuple[np.ndarray, Any]:
    from astropy.io import fits

    with fits.open(fits_path) as hdul:
        for hdu in hdul:
            if hdu.data is not None and np.squeeze(hdu.data).ndim == 2:
                return np.squeeze(np.asarray(hdu.data, dtype=float)), hdu.header
    raise ValueError("no 2-d image in the FITS file")


def load_y_cutout(
    fits_path: str | os.PathLike,
    *,
    npix: int,
    pixel_arcmin: float,
    ra: float | None = None,
    dec: float | None = None,
) -> np.ndarray:
    """The (npix, npix) Compton-y cutout at ``pixel_arcmin`` of a FITS image, centred
    on (ra, dec) [deg] (through the image's celestial WCS) or, without them, on the geometric
    centre of the image; the centre lands on pixel (npix // 2, npix // 2) as in the training
    maps. Regridding is area-weighted (``overlap_matrix`` along each axis), so it conserves
    ∫ y dOmega; the array keeps the image's orientation (row = FITS axis 2).

    Raises:
        ValueError: no image, no pixel size, NaNs in the cutout, (ra, dec) without a celestial
            WCS, or an image that does not cover the cutout.
    """
    data, header = _read_image(Path(fits_path))
    sx, sy = fits_pixel_arcmin(header)
    ny, nx = data.shape
    if ra is not None and dec is not None:
        from astropy.wcs import WCS

        wcs = WCS(header, naxis=2)
        if not wcs.has_celestial:
            raise ValueError("ra/dec given but the FITS header has no celestial WCS")
        cx, cy = (float(v) for v in wcs.celestial.all_world2pix([[ra, dec]], 0)[0])
    else:
        cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    wy = overlap_matrix(n_out=npix, step=pixel_arcmin / sy, centre_src=cy, n_src=ny, axis="y")
    wx = overlap_matrix(n_out=npix, step=pixel_arcmin / sx, centre_src=cx, n_src=nx, axis="x")
    rows = np.flatnonzero(wy.any(axis=0))
    cols = np.flatnonzero(wx.any(axis=0))
    block = data[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if not np.all(np.isfinite(block)):
        raise ValueError("the cutout holds NaN or inf values")
    return wy[:, rows[0] : rows[-1] + 1] @ block @ wx[:, cols[0] : cols[-1] + 1].T


def load_real_clusters(
    *,
    catalogue: str | os.PathLike | list[dict[str, Any]],
    fits_dir: str | os.PathLike,
    npix: int,
    pixel_arcmin: float,
    cosmo: dict[str, Any],
    margin_pix: int = 0,
) -> RealClusters:
    """Load every cluster of ``catalogue`` (a path or ``read_catalogue``'s rows), keeping the
    ones that load and collecting one message per bad cluster, which names its id and the
    problem (bad value, unknown mass definition, missing FITS file, no pixel size, map smaller
    than the cutout, ...). Nothing is raised for a bad cluster: call ``raise_for_errors``
    afterwards to stop with one error listing them all, or log them and go on.

    Each map is cut at ``npix + 2 * margin_pix`` pixels (the margin lets the beam convolution
    see the cluster's surroundings); if the image covers ``npix`` but not the margin, the
    margin is zero-filled and a warning logged. M500c masses become M200c with
    ``m500c_to_m200c`` at the cluster's z.

    Returns:
        ``RealClusters(y_maps (n, m, m), m200c [Msun], z, ids, errors)`` in catalogue order.
    """
    rows = read_catalogue(catalogue) if isinstance(catalogue, str | os.PathLike) else catalogue
    fits_dir = Path(fits_dir)
    n_big = npix + 2 * margin_pix
    y_maps, m200c, zs, ids, errors = [], [], [], [], []
    progress = Progress(len(rows), "real cutouts", log)
    for row in rows:
        cid = row["id"]
        try:
            try:
                v = _parse_row(row)
            except ValueError as err:
                raise ValueError(f"catalogue line {row.get('line', '?')}: {err}") from None
            path = Path(v["fits"])
            path = path if path.is_absolute() else fits_dir / path
            if not path.is_file():
                raise ValueError(f"FITS file {path} does not exist")
            kwargs = {"pixel_arcmin": pixel_arcmin, "ra": v["ra"], "dec": v["dec"]}
            try:
                y = load_y_cutout(path, npix=n_big, **kwargs)
            except ValueError as err:
                if margin_pix == 0 or "map smaller than the cutout" not in str(err):
                    raise
                y = np.pad(load_y_cutout(path, npix=npix, **kwargs), margin_pix)
                log.warning("cluster %s: %s; the beam margin is zero-filled", cid, err)
            if v["mass_def"] == "M500c":
                m = float(m500c_to_m200c(v["mass"], z=v["z"], cosmo=cosmo))
            else:
                m = v["mass"]
        except (ValueError, OSError) as err:
            errors.append(f"cluster {cid!r}: {err}")
        else:
            y_maps.append(y)
            m200c.append(m)
            zs.append(v["z"])
            ids.append(cid)
        progress.update(1)
    return RealClusters(
        y_maps=np.array(y_maps).reshape(-1, n_big, n_big),
        m200c=np.array(m200c, dtype=float),
        z=np.array(zs, dtype=float),
        ids=ids,
        errors=errors,
    )


def raise_for_errors(errors: list[str], *, n_loaded: int) -> None:
    """Raise one ``RealMapError`` listing every bad cluster (no-op when there is none)."""
    if errors:
        lines = "\n  ".join(errors)
        raise RealMapError(
            f"{len(errors)} cluster(s) could not be loaded ({n_loaded} loaded):\n  {lines}"
        )
