"""Simulated 150 GHz cutouts of SZ clusters: CMB + foregrounds + cluster, beam, white noise,
apodization (Gupta & Reichardt 2020, arXiv:2003.06135, §2.2; SPEC §1-2).

Every map draws from its own random streams, keyed on (seed, set, mass or cluster id,
realization, component) with ``numpy.random.SeedSequence``: a map is the same whatever the
job order, chunking or number of threads.
"""

import json
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from ..logs import Progress
from ..units import ARCMIN
from . import maps
from .cluster import cluster_templates
from .spectra import read_spectra

log = logging.getLogger("szmass.simulate")

SET_CODES = {"grid": 1, "scatter": 2, "realistic": 3, "fresh": 4, "continuous": 5}
#: The parts of a continuous training-mass set; each draws from its own streams.
CONTINUOUS_PARTS = {"train": 0, "val": 1}
COMPONENT_CODES = {"field": 0, "noise": 1, "scatter": 2, "mass": 3, "redshift": 4}
#: The redshift distributions ``cluster.redshift`` may name (besides a fixed number).
REDSHIFT_DISTRIBUTIONS = ("uniform",)
CHUNK = 100  # maps per FFT batch; fixed so that results never depend on it
BEAM_CUTOFF = 1e-5  # the spectra table must reach an l where the beam is below this


def mass_key(mass_1e14: float) -> int:
    """Integer key of a grid mass for the seed: the mass in units of 1e10 Msun."""
    return int(round(mass_1e14 * 1e4))


def map_rng(
    seed: int, set_name: str, key: int, realization: int, component: str
) -> np.random.Generator:
    """The random stream of one component of one map."""
    spawn_key = (SET_CODES[set_name], int(key), int(realization), COMPONENT_CODES[component])
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=spawn_key)))


def scatter_set_masses(
    *, seed: int, n_clusters: int, mass_range_1e14: tuple[float, float]
) -> np.ndarray:
    """M200c [Msun] of the scatter-test clusters, uniform in ``mass_range_1e14``; cluster i's
    mass comes from its own stream, so both scatter sets hold the same clusters."""
    lo, hi = mass_range_1e14
    return np.array(
        [map_rng(seed, "scatter", i, 0, "mass").uniform(lo, hi) * 1e14 for i in range(n_clusters)]
    )


def continuous_set_masses(
    *,
    seed: int,
    part: str,
    n_clusters: int,
    mass_range_1e14: tuple[float, float],
    first: int = 0,
) -> np.ndarray:
    """M200c [Msun] of clusters ``first`` .. ``first + n_clusters - 1`` of a continuous
    training-mass set (SPEC §3 ``continuous``): log-uniform in ``mass_range_1e14``, cluster i
    of ``part`` ("train" or "val") from its own stream, so a set split into shard jobs holds
    the clusters of the set made whole."""
    lo, hi = np.log(mass_range_1e14)
    code = CONTINUOUS_PARTS[part]
    return np.array(
        [
            np.exp(map_rng(seed, "continuous", i, code, "mass").uniform(lo, hi)) * 1e14
            for i in range(first, first + n_clusters)
        ]
    )


def sky_components(
    *,
    spectra_ell: np.ndarray,
    spectra_cl: np.ndarray,
    sky: dict[str, Any],
    set_name: str,
    seed: int,
    keys: np.ndarray,
    realizations: np.ndarray,
    threads: int = 1,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(i, field, noise)`` for map i of ``keys``/``realizations`` (n,): the
    beam-convolved CMB + foreground field [uK] (a Gaussian field on the padded grid, centre
    cropped) and the white noise [uK], each from the map's own stream. The fields are drawn
    ``CHUNK`` maps per FFT batch; every map-making path (grid, scatter, realistic) uses this.
    """
    npix, pixel_arcmin, fwhm = sky["npix"], sky["pixel_arcmin"], sky["beam_fwhm_arcmin"]
    n_pad = npix * sky["pad_factor"]
    if fwhm > 0 and maps.beam_transfer(spectra_ell[-1], fwhm) > BEAM_CUTOFF:
        raise ValueError(
            f"spectra.lmax = {spectra_ell[-1]} is too low for a {fwhm}' beam "
            f"(B_l = {maps.beam_transfer(spectra_ell[-1], fwhm):.1e} > {BEAM_CUTOFF})"
        )
    filt = maps.field_filter(
        ell=spectra_ell, cl=spectra_cl, n=n_pad, pixel_rad=pixel_arcmin * ARCMIN, fwhm_arcmin=fwhm
    )
    noise_rms = maps.white_noise_rms_per_pixel(sky["noise_uk_arcmin"], pixel_arcmin)
    n = len(keys)
    for start in range(0, n, CHUNK):
        idx = range(start, min(start + CHUNK, n))
        white = np.stack(
            [
                map_rng(seed, set_name, keys[i], realizations[i], "field").standard_normal(
                    (n_pad, n_pad)
                )
                for i in idx
            ]
        )
        field = maps.crop_center(maps.gaussian_fields(white, filt, workers=threads), npix)
        for j, i in enumerate(idx):
            noise = (
                map_rng(seed, set_name, keys[i], realizations[i], "noise").standard_normal(
                    (npix, npix)
                )
                * noise_rms
            )
            yield i, field[j], noise


def draw_redshifts(
    redshift: float | dict[str, Any],
    *,
    seed: int,
    set_name: str,
    keys: np.ndarray,
    realizations: np.ndarray,
) -> np.ndarray:
    """Each map's redshift, shape (n,) like ``keys``/``realizations``.

    ``redshift`` is ``cluster.redshift``: a number (every cluster at that z, the paper's 0.7)
    or ``{"distribution": "uniform", "range": [lo, hi]}`` (SPEC §7): map i's z is the first draw
    of its own ``"redshift"`` stream, uniform in [lo, hi), so it does not depend on which other
    maps are simulated, and both scatter sets (same cluster ids) hold the same redshifts.
    """
    n = len(keys)
    if not isinstance(redshift, dict):
        return np.full(n, float(redshift))
    if redshift.get("distribution") not in REDSHIFT_DISTRIBUTIONS:
        raise ValueError(
            f"cluster.redshift.distribution: {redshift.get('distribution')!r} is not one of "
            f"{list(REDSHIFT_DISTRIBUTIONS)}"
        )
    lo, hi = (float(v) for v in redshift["range"])
    return np.array(
        [
            map_rng(seed, set_name, k, r, "redshift").uniform(lo, hi)
            for k, r in zip(keys, realizations, strict=True)
        ]
    )


def simulate_maps(
    *,
    m200c_msun: np.ndarray,
    keys: np.ndarray,
    realizations: np.ndarray,
    set_name: str,
    seed: int,
    sigma_int: float,
    spectra_ell: np.ndarray,
    spectra_cl: np.ndarray,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """Simulate one map per entry of ``m200c_msun`` (same ``keys``/``realizations`` shape (n,)).

    Args:
        sky: ``freq_ghz``, ``pixel_arcmin``, ``npix``, ``pad_factor``, ``beam_fwhm_arcmin``,
            ``noise_uk_arcmin``, ``apodization_width_pix``.
        cluster: ``redshift`` (a number, or a distribution: ``draw_redshifts``),
            ``x_max_r500``, ``subpixel``.
        spectra_ell, spectra_cl: the total sky C_l [uK^2], l = 0..lmax.
    Returns:
        dict with ``sky`` and ``sz`` (n, npix, npix) float32 [uK], and per map ``m200c``,
        ``m500c`` [Msun], ``z``, ``ln_scatter``.
    """
    npix = sky["npix"]
    window = maps.apodization_window(npix, sky["apodization_width_pix"])
    z = draw_redshifts(
        cluster["redshift"], seed=seed, set_name=set_name, keys=keys, realizations=realizations
    )
    templates, m500c, inverse = cluster_templates(
        m200c_msun=m200c_msun, z=z, cosmo=cosmo, sky=sky, cluster=cluster
    )
    n = len(m200c_msun)
    out_sky = np.empty((n, npix, npix), dtype=np.float32)
    out_sz = np.empty((n, npix, npix), dtype=np.float32)
    ln_scatter = np.empty(n)
    progress = Progress(n, "maps", log)
    components = sky_components(
        spectra_ell=spectra_ell,
        spectra_cl=spectra_cl,
        sky=sky,
        set_name=set_name,
        seed=seed,
        keys=keys,
        realizations=realizations,
        threads=threads,
    )
    for i, field, noise in components:
        delta = (
            sigma_int
            * map_rng(seed, set_name, keys[i], realizations[i], "scatter").standard_normal()
        )
        sz = templates[inverse[i]] * np.exp(delta)
        ln_scatter[i] = delta
        out_sz[i] = sz
        out_sky[i] = window * (field + sz + noise)
        progress.update(1)
    return {
        "sky": out_sky,
        "sz": out_sz,
        "m200c": np.asarray(m200c_msun, dtype=float),
        "m500c": m500c[inverse],
        "z": z,
        "ln_scatter": ln_scatter,
    }


def shard_dataset(
    sims: dict[str, np.ndarray],
    *,
    realizations: np.ndarray,
    pixel_arcmin: float,
    attrs: dict[str, Any],
) -> xr.Dataset:
    """Wrap simulated maps in a self-describing xarray Dataset (the shard schema)."""
    npix = sims["sky"].shape[-1]
    offsets = (np.arange(npix) - npix // 2) * pixel_arcmin
    dims = ("realization", "y", "x")
    ds = xr.Dataset(
        {
            "sky": (dims, sims["sky"], {"units": "uK", "long_name": "observed sky map"}),
            "sz": (
                dims,
                sims["sz"],
                {"units": "uK", "long_name": "cluster tSZ map (beam, scatter)"},
            ),
            "m200c": ("realization", sims["m200c"], {"units": "Msun"}),
            "m500c": ("realization", sims["m500c"], {"units": "Msun"}),
            "z": ("realization", sims["z"], {"units": "1", "long_name": "redshift"}),
            "ln_scatter": (
                "realization",
                sims["ln_scatter"],
                {"units": "1", "long_name": "drawn ln-scatter delta of the SZ amplitude"},
            ),
        },
        coords={
            "realization": ("realization", np.asarray(realizations, dtype=np.int64)),
            "y": ("y", offsets, {"units": "arcmin", "long_name": "offset from the cluster"}),
            "x": ("x", offsets, {"units": "arcmin", "long_name": "offset from the cluster"}),
        },
        attrs={**attrs, "szmass_version": __version__},
    )
    return ds


def flat_attrs(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as flat attributes named ``prefix + key`` (e.g. ``sky_npix``)."""
    return {f"{prefix}{k}": v for k, v in values.items()}


def cluster_attrs(cluster: dict[str, Any]) -> dict[str, Any]:
    """The cluster config as flat shard attributes (``cluster_redshift`` etc.); a redshift
    distribution as ``cluster_redshift_distribution`` and ``cluster_redshift_range``."""
    out = flat_attrs("cluster_", cluster)
    redshift = cluster.get("redshift")
    if isinstance(redshift, dict):
        del out["cluster_redshift"]
        out.update(flat_attrs("cluster_redshift_", redshift))
    return out


def simulate_shard(
    *,
    spectra_path: str,
    out_path: str,
    set_name: str,
    seed: int,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    sigma_int: float,
    mass_1e14: float | None = None,
    n_realizations: int | None = None,
    n_clusters: int | None = None,
    mass_range_1e14: tuple[float, float] | None = None,
    part: str | None = None,
    first: int = 0,
    threads: int = 1,
) -> xr.Dataset:
    """Simulate one shard and write it to ``out_path`` (Zarr, atomically).

    ``set_name="grid"``: ``n_realizations`` maps of one mass ``mass_1e14`` [1e14 Msun].
    ``set_name="scatter"``: ``n_clusters`` clusters with masses uniform in ``mass_range_1e14``,
    one map each (realization i is cluster i).
    ``set_name="continuous"``: the ``part`` ("train" or "val") of a continuous training-mass
    set, ``n_clusters`` clusters log-uniform in ``mass_range_1e14``, one map each: clusters
    ``first`` onwards of the part (a shard job's piece of a large set; the realization
    coordinate is the cluster's index in the part).
    ``cluster["redshift"]``: a fixed z, or a distribution from which every map draws its own z
    (``draw_redshifts``); ``z`` records each map's, the attributes the distribution.
    """
    from ..io import write_zarr_atomic

    spectra = read_spectra(spectra_path)
    cosmo = dict(spectra.meta["cosmology"])
    if set_name == "grid":
        if mass_1e14 is None or n_realizations is None:
            raise ValueError("a grid shard needs mass_1e14 and n_realizations")
        m200c = np.full(n_realizations, mass_1e14 * 1e14)
        keys = np.full(n_realizations, mass_key(mass_1e14))
        realizations = np.arange(n_realizations)
        shard_attrs = {"mass_1e14": mass_1e14}
    elif set_name == "scatter":
        if n_clusters is None or mass_range_1e14 is None:
            raise ValueError("a scatter shard needs n_clusters and mass_range_1e14")
        m200c = scatter_set_masses(
            seed=seed, n_clusters=n_clusters, mass_range_1e14=tuple(mass_range_1e14)
        )
        keys = np.arange(n_clusters)
        realizations = np.zeros(n_clusters, dtype=int)
        shard_attrs = {"mass_range_1e14": list(mass_range_1e14), "realization_is": "cluster id"}
    elif set_name == "continuous":
        if n_clusters is None or mass_range_1e14 is None or part not in CONTINUOUS_PARTS:
            raise ValueError(
                "a continuous shard needs n_clusters, mass_range_1e14 and part "
                f"(one of {sorted(CONTINUOUS_PARTS)}; got {part!r})"
            )
        m200c = continuous_set_masses(
            seed=seed,
            part=part,
            n_clusters=n_clusters,
            mass_range_1e14=tuple(mass_range_1e14),
            first=first,
        )
        keys = np.arange(first, first + n_clusters)
        realizations = np.full(n_clusters, CONTINUOUS_PARTS[part])
        shard_attrs = {
            "mass_range_1e14": list(mass_range_1e14),
            "mass_distribution": "log-uniform",
            "part": part,
            "first_cluster": first,
            "realization_is": "cluster id",
        }
    else:
        raise ValueError(f"unknown set {set_name!r}; expected 'grid', 'scatter' or 'continuous'")
    log.info("simulating %s shard %s: %d maps", set_name, out_path, len(m200c))
    sims = simulate_maps(
        m200c_msun=m200c,
        keys=keys,
        realizations=realizations,
        set_name=set_name,
        seed=seed,
        sigma_int=sigma_int,
        spectra_ell=np.asarray(spectra["ell"], dtype=float),
        spectra_cl=np.asarray(spectra["cl_total"], dtype=float),
        cosmo=cosmo,
        sky=sky,
        cluster=cluster,
        threads=threads,
    )
    attrs = {
        "set": set_name,
        "seed": seed,
        "sigma_int": sigma_int,
        **shard_attrs,
        **flat_attrs("sky_", sky),
        **cluster_attrs(cluster),
        **flat_attrs("cosmo_", cosmo),
        "spectra_lmax": int(spectra["ell"][-1]),
        "foregrounds": json.dumps(spectra.meta["foregrounds"], sort_keys=True),
        "description": "szmass simulated 150 GHz cutouts (Gupta & Reichardt 2020); "
        "sky = apodization x (CMB + foregrounds + cluster [beam] + white noise)",
    }
    ids = keys if set_name == "continuous" else np.arange(len(m200c))
    ds = shard_dataset(sims, realizations=ids, pixel_arcmin=sky["pixel_arcmin"], attrs=attrs)
    write_zarr_atomic(ds, out_path)
    log.info("wrote %s", out_path)
    return ds
