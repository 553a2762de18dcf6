"""The realistic test set's shard (SPEC §4; Gupta & Reichardt 2020, arXiv:2003.06135, §4.4):
the sky added to any set of Compton-y maps (the stand-in's, ``standin``, or real cutouts,
``fits``), the rescaling factors of each cluster (``rescale``) and the shard written for the
``simulate_realistic`` rule.

Random streams: realization k of cluster i draws the Gaussian sky from
``simulate.map_rng(seed, "realistic", i, k, "field")`` and the noise from ``(i, k, "noise")``.
"""

import json
import logging
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from ..logs import Progress
from ..sky import maps, profiles
from ..sky.cluster import beam_margin_pix
from ..sky.simulate import flat_attrs, sky_components
from ..sky.spectra import read_spectra
from ..units import ARCMIN
from .rescale import (
    integrated_y_arcmin2,
    rescale_factor_analytic,
    rescale_factor_measured,
)
from .standin import realistic_config, standin_clusters

# the logger of the stage, as in standin
log = logging.getLogger("szmass.realistic")


# --- the sky --------------------------------------------------------------------------------


def _beam_grid(y_maps: np.ndarray, npix: int, margin: int) -> np.ndarray:
    """(n, m, m) maps zero-padded to at least npix + 2 margin (same parity as npix)."""
    y_maps = np.asarray(y_maps, dtype=float)
    m = y_maps.shape[-1]
    if y_maps.shape[-2] != m or m < npix or (m - npix) % 2:
        raise ValueError(
            f"cluster maps of {y_maps.shape[-2]}x{m} pixels cannot be centred on a {npix}-pixel "
            "cutout (they must be square, at least as large, with the same parity)"
        )
    need = npix + 2 * margin
    if m >= need:
        return y_maps
    pad = (need - m) // 2
    return np.pad(y_maps, ((0, 0), (pad, pad), (pad, pad)))


def y_to_uk(
    y_maps: np.ndarray, *, sky: dict[str, Any], cosmo: dict[str, Any], threads: int = 1
) -> np.ndarray:
    """Beam-convolved tSZ temperature [uK] of (n, m, m) Compton-y maps, cropped to (n, npix,
    npix): dT = T_CMB f(x_nu) y (non-relativistic, ``profiles.f_sz``), as
    ``cluster.sz_template_uk``. Maps smaller than npix + 2 beam margins are zero-padded."""
    npix, pixel, fwhm = sky["npix"], sky["pixel_arcmin"], sky["beam_fwhm_arcmin"]
    big = _beam_grid(y_maps, npix, beam_margin_pix(fwhm, pixel))
    if fwhm > 0:
        big = maps.convolve_beam(big, pixel_rad=pixel * ARCMIN, fwhm_arcmin=fwhm, workers=threads)
    t_cmb = cosmo["TCMB"]
    return maps.crop_center(big, npix) * (t_cmb * profiles.f_sz(sky["freq_ghz"], t_cmb) * 1e6)


def add_sky(
    *,
    y_cluster: np.ndarray,
    cluster_keys: np.ndarray,
    n_realizations: int,
    seed: int,
    spectra_ell: np.ndarray,
    spectra_cl: np.ndarray,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    y_los: np.ndarray | None = None,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """Observed maps of each cluster, as ``simulate.simulate_maps`` makes them:
    sky = window x (CMB + foregrounds [beam] + cluster SZ [beam] + line-of-sight SZ [beam]
    + white noise), with sz = the cluster's own beam-convolved SZ (the label; no
    line-of-sight halos, no scatter).

    Args:
        y_cluster: (n_clusters, m, m) noise-free Compton y of each cluster, centred on pixel
            (m//2, m//2), m >= npix with the parity of npix (zero-padded for the beam if it
            lacks the margin ``cluster.beam_margin_pix``).
        cluster_keys: (n_clusters,) integer key of each cluster in the random streams
            ``map_rng(seed, "realistic", key, realization, "field" | "noise")``.
        y_los: optional (n_clusters, m, m) Compton y of unrelated halos (sky only).
        spectra_ell, spectra_cl: total sky C_l [uK^2], l = 0..lmax.
        sky: ``freq_ghz``, ``pixel_arcmin``, ``npix``, ``pad_factor``, ``beam_fwhm_arcmin``,
            ``noise_uk_arcmin``, ``apodization_width_pix``.
    Returns:
        dict with ``sky``, ``sz`` (n_clusters x n_realizations, npix, npix) float32 [uK],
        cluster-major (map i = cluster i // n_realizations, realization i % n_realizations),
        ``cluster_index`` (position in the inputs) and ``cmb_realization`` per map.
    """
    npix = sky["npix"]
    keys = np.asarray(cluster_keys, dtype=np.int64)
    if len(keys) != len(y_cluster):
        raise ValueError(f"{len(keys)} cluster keys for {len(y_cluster)} cluster maps")
    window = maps.apodization_window(npix, sky["apodization_width_pix"])
    sz_uk = y_to_uk(y_cluster, sky=sky, cosmo=cosmo, threads=threads)
    los_uk = (
        np.zeros_like(sz_uk)
        if y_los is None
        else y_to_uk(y_los, sky=sky, cosmo=cosmo, threads=threads)
    )
    n_clusters = len(keys)
    n = n_clusters * n_realizations
    cluster_index = np.repeat(np.arange(n_clusters), n_realizations)
    realization = np.tile(np.arange(n_realizations), n_clusters)
    out_sky = np.empty((n, npix, npix), dtype=np.float32)
    out_sz = np.empty((n, npix, npix), dtype=np.float32)
    progress = Progress(n, "realistic maps", log)
    components = sky_components(
        spectra_ell=spectra_ell,
        spectra_cl=spectra_cl,
        sky=sky,
        set_name="realistic",
        seed=seed,
        keys=keys[cluster_index],
        realizations=realization,
        threads=threads,
    )
    for i, field, noise in components:
        c = cluster_index[i]
        out_sz[i] = sz_uk[c]
        out_sky[i] = window * (field + sz_uk[c] + los_uk[c] + noise)
        progress.update(1)
    return {
        "sky": out_sky,
        "sz": out_sz,
        "cluster_index": cluster_index,
        "cmb_realization": realization,
    }


# --- shards ---------------------------------------------------------------------------------

STANDIN_DESCRIPTION = (
    "szmass realistic-profile test set: a STAND-IN for the Magneticum light-cone cutouts of "
    "Gupta & Reichardt 2020 (arXiv:2003.06135, §4.4), NOT Magneticum. Clusters are triaxial "
    "Battaglia et al. 2012 (arXiv:1109.3711, AGN feedback) pressure profiles with substructure "
    "clumps and unrelated halos along the line of sight (Tinker et al. 2008 mass function); "
    "sky = apodization x (CMB + foregrounds + cluster [beam] + line-of-sight halos [beam] + "
    "white noise); sz = the cluster's own beam-convolved SZ (no line-of-sight halos)"
)
FITS_DESCRIPTION = (
    "szmass realistic-profile test set from user-supplied Compton-y cutouts (FITS + catalogue), "
    "regridded to the training pixel; sky = apodization x (CMB + foregrounds + cluster y map "
    "[beam] + white noise); sz = the cutout's beam-convolved SZ (everything in the cutout)"
)


def realistic_shard_from_y_maps(
    *,
    y_maps: np.ndarray,
    m200c_msun: np.ndarray,
    z: np.ndarray,
    spectra_path: str,
    out_path: str,
    seed: int,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    realistic: dict[str, Any],
    cluster_keys: np.ndarray | None = None,
    y_los: np.ndarray | None = None,
    cluster_vars: dict[str, tuple[np.ndarray, dict[str, str]]] | None = None,
    attrs: dict[str, Any] | None = None,
    threads: int = 1,
) -> xr.Dataset:
    """Add the sky to noise-free Compton-y maps and write the realistic shard (Zarr,
    atomically) with the schema of the other shards, so ``dataset.prepare`` reads it as is.

    Args:
        y_maps: (n_clusters, m, m) each cluster's own Compton y, centred on pixel (m//2, m//2)
            at the training pixel, m >= npix with npix's parity.
        m200c_msun, z: (n_clusters,) true M200c [Msun] and redshift.
        cluster_keys: (n_clusters,) integer keys of the random streams (default 0..n-1).
        y_los: optional (n_clusters, m, m) line-of-sight y, in the sky only.
        cluster_vars: extra per-cluster variables, name -> (values (n_clusters,...), attrs);
            stored as ``cluster_<name>`` along ``cluster`` (and ``<name>_axis`` if 2-d).
        attrs: extra attributes (e.g. ``description``).
    Returns:
        The Dataset written: per map (``realization`` = 0..n_clusters*n_realizations-1,
        cluster-major) ``sky``, ``sz`` [uK], ``m200c``, ``m500c`` [Msun], ``z``,
        ``ln_scatter`` (0), ``cluster_id``, ``cmb_realization``; per cluster ``y_cluster``
        (cluster, y, x), ``cluster_m200c``, ``cluster_z``, ``cluster_y_cyl`` [arcmin^2],
        ``cluster_r_measured`` and the ``cluster_vars``.
    """
    from ..io import write_zarr_atomic

    cfg = realistic_config(realistic)
    spectra = read_spectra(spectra_path)
    cosmo = dict(spectra.meta["cosmology"])
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    y_maps = np.asarray(y_maps, dtype=float)
    n_clusters = len(y_maps)
    keys = np.arange(n_clusters) if cluster_keys is None else np.asarray(cluster_keys)
    m200c = np.asarray(m200c_msun, dtype=float)
    zz = np.asarray(z, dtype=float)
    log.info(
        "realistic shard %s: %d clusters x %d realizations",
        out_path,
        n_clusters,
        cfg["n_realizations"],
    )
    sims = add_sky(
        y_cluster=y_maps,
        y_los=y_los,
        cluster_keys=keys,
        n_realizations=cfg["n_realizations"],
        seed=seed,
        spectra_ell=np.asarray(spectra["ell"], dtype=float),
        spectra_cl=np.asarray(spectra["cl_total"], dtype=float),
        cosmo=cosmo,
        sky=sky,
        threads=threads,
    )
    m500c = np.array(
        [
            float(profiles.m200c_to_m500c(m, z=zi, cosmo=cosmo))
            for m, zi in zip(m200c, zz, strict=True)
        ]
    )
    ci = sims["cluster_index"]
    y_cut = maps.crop_center(y_maps, npix)
    r_measured = rescale_factor_measured(
        y_cluster=y_cut, m200c_msun=m200c, z=zz, cosmo=cosmo, sky=sky, cluster=cluster
    )
    offsets = (np.arange(npix) - npix // 2) * pixel
    dims = ("realization", "y", "x")
    data = {
        "sky": (dims, sims["sky"], {"units": "uK", "long_name": "observed sky map"}),
        "sz": (dims, sims["sz"], {"units": "uK", "long_name": "cluster tSZ map (beam)"}),
        "m200c": ("realization", m200c[ci], {"units": "Msun"}),
        "m500c": ("realization", m500c[ci], {"units": "Msun"}),
        "z": ("realization", zz[ci], {"units": "1", "long_name": "redshift"}),
        "ln_scatter": (
            "realization",
            np.zeros(len(ci)),
            {"units": "1", "long_name": "no drawn scatter (the profiles differ instead)"},
        ),
        "cluster_id": ("realization", keys[ci], {"long_name": "cluster of the map"}),
        "cmb_realization": (
            "realization",
            sims["cmb_realization"],
            {"long_name": "sky (CMB, foregrounds, noise) realization of the cluster"},
        ),
        "y_cluster": (
            ("cluster", "y", "x"),
            y_cut.astype(np.float32),
            {"units": "1", "long_name": "noise-free Compton y of the cluster (no beam)"},
        ),
        "cluster_m200c": ("cluster", m200c, {"units": "Msun"}),
        "cluster_z": ("cluster", zz, {"units": "1", "long_name": "redshift"}),
        "cluster_y_cyl": (
            "cluster",
            integrated_y_arcmin2(y_cut, npix=npix, pixel_arcmin=pixel),
            {"units": "arcmin2", "long_name": "integrated y over the cutout"},
        ),
        "cluster_r_measured": (
            "cluster",
            r_measured,
            {"units": "1", "long_name": "M_true / M_A10(Y of the cluster's y map in the cutout)"},
        ),
    }
    for name, (values, var_attrs) in (cluster_vars or {}).items():
        values = np.asarray(values)
        extra = (f"{name}_axis",) if values.ndim == 2 else ()
        data[f"cluster_{name}"] = (("cluster", *extra), values, var_attrs)
    ds = xr.Dataset(
        data,
        coords={
            "realization": ("realization", np.arange(len(ci), dtype=np.int64)),
            "cluster": ("cluster", keys.astype(np.int64)),
            "y": ("y", offsets, {"units": "arcmin", "long_name": "offset from the cluster"}),
            "x": ("x", offsets, {"units": "arcmin", "long_name": "offset from the cluster"}),
        },
        attrs={
            "set": "realistic",
            "seed": seed,
            "sigma_int": 0.0,
            **flat_attrs("realistic_", {k: v for k, v in cfg.items() if v is not None}),
            **flat_attrs("sky_", sky),
            **flat_attrs("cluster_", cluster),
            **flat_attrs("cosmo_", cosmo),
            "spectra_lmax": int(spectra["ell"][-1]),
            "foregrounds": json.dumps(spectra.meta["foregrounds"], sort_keys=True),
            "description": STANDIN_DESCRIPTION,
            **(attrs or {}),
            "szmass_version": __version__,
        },
    )
    write_zarr_atomic(ds, out_path)
    log.info("wrote %s", out_path)
    return ds


def simulate_realistic_shard(
    *,
    spectra_path: str,
    out_path: str,
    seed: int,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    realistic: dict[str, Any],
    threads: int = 1,
) -> xr.Dataset:
    """The realistic-profile test shard (SPEC §2), from the stand-in or from FITS cutouts.

    ``realistic`` (defaults in ``REALISTIC_DEFAULTS``):

    - ``source``: ``"standin"`` (this module's clusters) or ``"fits"`` (real Compton-y
      cutouts, ``fits``).
    - ``n_clusters`` (int >= 1, 95): stand-in clusters (fits: the catalogue's rows).
    - ``n_realizations`` (int >= 1, 100): sky realizations per cluster.
    - ``mass_range_1e14`` ([lo, hi], [2, 7]) and ``mass_distribution`` (``"uniform"`` or
      ``"log-uniform"``): the stand-in's M200c [1e14 Msun].
    - ``z_range`` ([0.65, 0.75]): stand-in redshifts, uniform.
    - ``x_max_r200`` (float > 0, 4): B12 truncation radius [R200c].
    - ``axis_ratio_min`` (0 < . <= 1, 0.6): q = b/a uniform in [min, 1], s = c/a in
      [min, q]; 1 makes spherical clusters.
    - ``n_clumps`` (int >= 0, 3) and ``clump_mass_fraction`` (0.03): substructure clumps,
      each of M200c = f x the host's, f uniform in [0.5, 1.5] x the fraction.
    - ``los_halos`` (bool, true), ``los_m_min`` (Msun, 1e13), ``los_z_range`` ([0.05, 3]):
      unrelated halos along the line of sight.
    - ``miscentring_arcmin`` (>= 0, 0): Rayleigh scale of the cluster's offset from the
      cutout centre.
    - ``catalogue`` (CSV path), ``fits_dir`` (folder), ``skip_bad_clusters`` (bool, false):
      the fits source. With ``skip_bad_clusters`` false a catalogue with any bad cluster
      raises one error listing all of them (after checking every cluster) and writes
      nothing; true logs them and writes the good ones (their ids in ``skipped_clusters``).
    """
    cfg = realistic_config(realistic)
    cosmo = dict(read_spectra(spectra_path).meta["cosmology"])
    common = {
        "spectra_path": spectra_path,
        "out_path": out_path,
        "seed": seed,
        "sky": sky,
        "cluster": cluster,
        "realistic": cfg,
        "threads": threads,
    }
    if cfg["source"] == "fits":
        return _fits_shard(cfg, cosmo=cosmo, **common)
    clusters = standin_clusters(seed=seed, cosmo=cosmo, sky=sky, cluster=cluster, realistic=cfg)
    r_analytic = rescale_factor_analytic(
        m200c_msun=clusters["m200c"],
        z=clusters["z"],
        cosmo=cosmo,
        sky=sky,
        cluster=cluster,
        x_max_r200=cfg["x_max_r200"],
    )
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    y_los_cyl = integrated_y_arcmin2(clusters["y_los"], npix=npix, pixel_arcmin=pixel)
    cluster_vars = {
        "r_analytic": (
            r_analytic,
            {"units": "1", "long_name": "M_true / M_A10(Y of the spherical B12 cluster)"},
        ),
        "q": (clusters["q"], {"units": "1", "long_name": "axis ratio b/a"}),
        "s": (clusters["s"], {"units": "1", "long_name": "axis ratio c/a"}),
        "euler_zyz": (clusters["euler_zyz"], {"units": "rad", "long_name": "orientation"}),
        "n_clumps": (clusters["n_clumps"], {"long_name": "substructure clumps"}),
        "clump_mass_fraction": (
            clusters["clump_mass_fraction"],
            {"units": "1", "long_name": "sum of the clumps' M200c over the host's"},
        ),
        "n_los": (clusters["n_los"], {"long_name": "line-of-sight halos in the cone"}),
        "los_m200c_max": (clusters["los_m200c_max"], {"units": "Msun"}),
        "y_los_cyl": (
            y_los_cyl,
            {"units": "arcmin2", "long_name": "integrated y of line-of-sight halos in the cutout"},
        ),
        "miscentre_x": (clusters["miscentre_x"], {"units": "arcmin"}),
        "miscentre_y": (clusters["miscentre_y"], {"units": "arcmin"}),
    }
    return realistic_shard_from_y_maps(
        y_maps=clusters["y_cluster"],
        y_los=clusters["y_los"] if cfg["los_halos"] else None,
        m200c_msun=clusters["m200c"],
        z=clusters["z"],
        cluster_vars=cluster_vars,
        **common,
    )


def _fits_shard(cfg: dict[str, Any], *, cosmo: dict[str, Any], **common: Any) -> xr.Dataset:
    from . import fits

    sky = common["sky"]
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    rows = fits.read_catalogue(cfg["catalogue"])
    loaded = fits.load_real_clusters(
        catalogue=rows,
        fits_dir=cfg["fits_dir"],
        npix=npix,
        pixel_arcmin=pixel,
        cosmo=cosmo,
        margin_pix=beam_margin_pix(sky["beam_fwhm_arcmin"], pixel),
    )
    if loaded.errors and not cfg["skip_bad_clusters"]:
        fits.raise_for_errors(loaded.errors, n_loaded=len(loaded.ids))
    for message in loaded.errors:
        log.warning("skipped: %s", message)
    if not loaded.ids:
        raise fits.RealMapError("no cluster of the catalogue could be loaded")
    row_of = {row["id"]: k for k, row in enumerate(rows)}
    keys = np.array([row_of[i] for i in loaded.ids])
    skipped = [row["id"] for row in rows if row["id"] not in set(loaded.ids)]
    return realistic_shard_from_y_maps(
        y_maps=loaded.y_maps,
        m200c_msun=loaded.m200c,
        z=loaded.z,
        cluster_keys=keys,
        # The ids go in an attribute: string variables have no stable Zarr 3 encoding yet.
        attrs={
            "description": FITS_DESCRIPTION,
            "cluster_names": list(loaded.ids),
            "skipped_clusters": skipped,
        },
        **common,
    )
