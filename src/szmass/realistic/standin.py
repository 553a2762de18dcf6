"""The realistic-profile test set's clusters: a stand-in for the paper's 95 Magneticum
clusters (SPEC §4; Gupta & Reichardt 2020, arXiv:2003.06135, §4.4), and the checked
``realistic`` config block.

The paper tests its network, trained on spherical Arnaud et al. 2010 (A10) clusters at z = 0.7,
on 95 cutouts of the Magneticum light cones (2 < M200c / 1e14 Msun < 7, 0.67 < z < 0.73),
which differ from the training set in their pressure profile, their SZ-mass relation, their
shapes and substructure, and in the unrelated structure along the line of sight. Those cutouts
are not public, so this module builds a **stand-in** that differs in each of those ways:

- pressure profile: Battaglia et al. 2012 (B12, arXiv:1109.3711), AGN-feedback fit, Delta=200;
- triaxial gas: random axis ratios and orientation, pressure a function of the ellipsoidal
  radius with the volume of the ellipsoid kept, so the volume integral (Y) is conserved;
- substructure: a few small B12 clumps at random positions within R500;
- line-of-sight halos: drawn from the Tinker et al. 2008 mass function (colossus) in the cone
  of the cutout, each a spherical B12 blob; they are in the sky map but not in the SZ label;
- redshifts uniform in a range; optional miscentring.

The B12 profile, the triaxial projection and the painting live in ``b12``, the line-of-sight
halo counts and draws in ``los_halos``; this module draws the stand-in clusters from them.
``shard`` adds the sky, rescales and writes the shard, for these clusters or for real Compton-y
cutouts (FITS + a catalogue, ``fits``).

Random streams: cluster i draws everything about itself from
``simulate.map_rng(seed, "realistic", i, 0, "mass")`` (its mass first, then independent
sub-streams spawned from it for each component), and its realization k draws the Gaussian sky
from ``(i, k, "field")`` and the noise from ``(i, k, "noise")``.
"""

import logging
from typing import Any

import numpy as np

from ..logs import Progress
from ..sky import profiles
from ..sky.cluster import beam_margin_pix
from ..sky.simulate import map_rng
from ..units import ARCMIN
from .b12 import b12_y_table, b12_y_tables, ellipsoid_projection, paint_profile
from .los_halos import LOS_M_MAX_MSUN, draw_los_halos
from .rescale import (
    X_MAX_R200,
)

log = logging.getLogger("szmass.realistic")

#: Extra border [arcmin] around the map within which line-of-sight halos are placed, so halos
#: centred just outside still leak into it.
LOS_BORDER_ARCMIN = 2.0
#: Resolution of the line-of-sight halos' profile tables (radial nodes, line-of-sight points).
_LOS_N_NODES, _LOS_N_LOS = 96, 65

REALISTIC_DEFAULTS: dict[str, Any] = {
    "source": "standin",
    "n_clusters": 95,
    "n_realizations": 100,
    "mass_range_1e14": [2.0, 7.0],
    "mass_distribution": "uniform",
    "z_range": [0.65, 0.75],
    "x_max_r200": X_MAX_R200,
    "axis_ratio_min": 0.6,
    "n_clumps": 3,
    "clump_mass_fraction": 0.03,
    "los_halos": True,
    "los_m_min": 1.0e13,
    "los_z_range": [0.05, 3.0],
    "miscentring_arcmin": 0.0,
    "catalogue": None,
    "fits_dir": None,
    "skip_bad_clusters": False,
}


def realistic_config(realistic: dict[str, Any]) -> dict[str, Any]:
    """``realistic`` with the defaults filled in; unknown keys and bad values raise ValueError."""
    unknown = sorted(set(realistic) - set(REALISTIC_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown realistic config keys {unknown}")
    cfg = {**REALISTIC_DEFAULTS, **realistic}
    if cfg["source"] not in ("standin", "fits"):
        raise ValueError(f"realistic.source must be 'standin' or 'fits', got {cfg['source']!r}")
    if cfg["mass_distribution"] not in ("uniform", "log-uniform"):
        raise ValueError(f"realistic.mass_distribution {cfg['mass_distribution']!r} is unknown")
    if not 0.0 < cfg["axis_ratio_min"] <= 1.0:
        raise ValueError(f"realistic.axis_ratio_min must be in (0, 1], got {cfg['axis_ratio_min']}")
    for key in ("mass_range_1e14", "z_range", "los_z_range"):
        lo, hi = cfg[key]
        if not 0 <= lo <= hi:
            raise ValueError(f"realistic.{key} must be [lo, hi] with 0 <= lo <= hi, got {cfg[key]}")
    if cfg["n_realizations"] < 1 or cfg["n_clusters"] < 1 or cfg["n_clumps"] < 0:
        raise ValueError("realistic.n_clusters and n_realizations must be >= 1, n_clumps >= 0")
    if not (cfg["x_max_r200"] > 0 and 0 < cfg["los_m_min"] < LOS_M_MAX_MSUN):
        raise ValueError(
            f"realistic.x_max_r200 must be > 0 and los_m_min in (0, {LOS_M_MAX_MSUN:g}) Msun"
        )
    if cfg["clump_mass_fraction"] < 0 or cfg["miscentring_arcmin"] < 0:
        raise ValueError("realistic.clump_mass_fraction and miscentring_arcmin must be >= 0")
    if cfg["source"] == "fits" and not (cfg["catalogue"] and cfg["fits_dir"]):
        raise ValueError("realistic.source = 'fits' needs realistic.catalogue and fits_dir")
    return cfg


def draw_standin_cluster(
    *,
    seed: int,
    cluster_id: int,
    cosmo: dict[str, Any],
    realistic: dict[str, Any],
    los_area_arcmin2: float,
) -> dict[str, Any]:
    """Every random property of stand-in cluster ``cluster_id``, from its own stream.

    The mass is the first draw of ``map_rng(seed, "realistic", cluster_id, 0, "mass")``
    (uniform or log-uniform in ``mass_range_1e14``); the other components come from
    sub-streams spawned from it (z, shape, clumps, line of sight, miscentring), so changing
    one component's settings does not change the others.
    """
    cfg = realistic_config(realistic)
    rng = map_rng(seed, "realistic", cluster_id, 0, "mass")
    lo, hi = cfg["mass_range_1e14"]
    if cfg["mass_distribution"] == "uniform":
        m200c = rng.uniform(lo, hi) * 1e14
    else:
        m200c = np.exp(rng.uniform(np.log(lo), np.log(hi))) * 1e14
    r_z, r_shape, r_clump, r_los, r_centre = rng.spawn(5)
    z = r_z.uniform(*cfg["z_range"])

    from scipy.spatial.transform import Rotation

    q = r_shape.uniform(cfg["axis_ratio_min"], 1.0)
    s = r_shape.uniform(cfg["axis_ratio_min"], q)
    rotation = Rotation.random(rng=r_shape)

    # Clumps: uniform in the sphere of R500 (projected), each M200c = f M200c(host),
    # f uniform in [0.5, 1.5] x clump_mass_fraction.
    n_clumps = int(cfg["n_clumps"])
    m500 = float(profiles.m200c_to_m500c(m200c, z=z, cosmo=cosmo))
    theta500 = float(profiles.theta500_rad(m500, z=z, cosmo=cosmo)) / ARCMIN
    direction = r_clump.standard_normal((n_clumps, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    radius = theta500 * r_clump.uniform(size=n_clumps) ** (1.0 / 3.0)
    clump_xy = direction[:, :2] * radius[:, None]
    clump_m = m200c * cfg["clump_mass_fraction"] * r_clump.uniform(0.5, 1.5, size=n_clumps)

    if cfg["los_halos"]:
        los = draw_los_halos(
            rng=r_los,
            area_arcmin2=los_area_arcmin2,
            z_range=tuple(cfg["los_z_range"]),
            m_range=(cfg["los_m_min"], LOS_M_MAX_MSUN),
            cosmo=cosmo,
        )
    else:
        los = {k: np.zeros(0) for k in ("m200c", "z", "x_arcmin", "y_arcmin")}

    offset = r_centre.rayleigh(cfg["miscentring_arcmin"]) if cfg["miscentring_arcmin"] else 0.0
    phi = r_centre.uniform(0.0, 2.0 * np.pi)
    return {
        "m200c": m200c,
        "z": z,
        "q": q,
        "s": s,
        "rotation": rotation.as_matrix(),
        "euler_zyz": rotation.as_euler("zyz"),
        "clump_m200c": clump_m,
        "clump_xy_arcmin": clump_xy,
        "los": los,
        "centre_arcmin": (offset * np.cos(phi), offset * np.sin(phi)),
    }


def standin_clusters(
    *,
    seed: int,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    realistic: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Noise-free Compton-y maps of the stand-in clusters, on the cutout plus a beam margin.

    Returns:
        dict with ``y_cluster`` (n, m, m): the cluster's own y (triaxial B12 body + clumps,
        miscentred); ``y_los`` (n, m, m): the line-of-sight halos; m = npix + 2 x
        ``cluster.beam_margin_pix``; per cluster ``m200c`` [Msun], ``z``, ``q``, ``s``,
        ``euler_zyz`` (n, 3) [rad], ``n_clumps``, ``clump_mass_fraction`` (sum of the
        clumps' M200c over the host's), ``n_los``, ``los_m200c_max`` [Msun] (0 if none),
        ``miscentre_x``, ``miscentre_y`` [arcmin].
    """
    cfg = realistic_config(realistic)
    npix, pixel = sky["npix"], sky["pixel_arcmin"]
    m = npix + 2 * beam_margin_pix(sky["beam_fwhm_arcmin"], pixel)
    side = m * pixel + 2.0 * LOS_BORDER_ARCMIN
    sub, x_max = cluster["subpixel"], cfg["x_max_r200"]
    los_sub = max(1, sub // 2)
    n = cfg["n_clusters"]
    y_cluster = np.zeros((n, m, m))
    y_los = np.zeros((n, m, m))
    rows = []
    progress = Progress(n, "stand-in clusters", log)
    for i in range(n):
        d = draw_standin_cluster(
            seed=seed, cluster_id=i, cosmo=cosmo, realistic=cfg, los_area_arcmin2=side**2
        )
        cx, cy = d["centre_arcmin"]
        radii, y_nodes = b12_y_table(m200c_msun=d["m200c"], z=d["z"], cosmo=cosmo, x_max=x_max)
        q2, amp = ellipsoid_projection(q=d["q"], s=d["s"], rotation=d["rotation"])
        common = {"pixel_arcmin": pixel, "subpixel": sub}
        paint_profile(
            y_cluster[i],
            radii_arcmin=radii,
            y_nodes=y_nodes,
            centre_arcmin=(cx, cy),
            q2=q2,
            amplitude=amp,
            **common,
        )
        if len(d["clump_m200c"]):
            radii, y_nodes = b12_y_tables(
                m200c_msun=d["clump_m200c"], z=d["z"], cosmo=cosmo, x_max=x_max
            )
            for k, (dx, dy) in enumerate(d["clump_xy_arcmin"]):
                paint_profile(
                    y_cluster[i],
                    radii_arcmin=radii[k],
                    y_nodes=y_nodes[k],
                    centre_arcmin=(cx + dx, cy + dy),
                    **common,
                )
        los = d["los"]
        if len(los["m200c"]):
            # Faint, mostly small halos: coarser tables and sub-pixels (they are not labels).
            radii, y_nodes = b12_y_tables(
                m200c_msun=los["m200c"],
                z=los["z"],
                cosmo=cosmo,
                x_max=x_max,
                n_nodes=_LOS_N_NODES,
                n_los=_LOS_N_LOS,
            )
            for k in range(len(los["m200c"])):
                paint_profile(
                    y_los[i],
                    radii_arcmin=radii[k],
                    y_nodes=y_nodes[k],
                    centre_arcmin=(los["x_arcmin"][k], los["y_arcmin"][k]),
                    pixel_arcmin=pixel,
                    subpixel=los_sub,
                )
        rows.append(
            {
                "m200c": d["m200c"],
                "z": d["z"],
                "q": d["q"],
                "s": d["s"],
                "euler_zyz": d["euler_zyz"],
                "n_clumps": len(d["clump_m200c"]),
                "clump_mass_fraction": float(np.sum(d["clump_m200c"])) / d["m200c"],
                "n_los": len(los["m200c"]),
                "los_m200c_max": float(np.max(los["m200c"], initial=0.0)),
                "miscentre_x": cx,
                "miscentre_y": cy,
            }
        )
        progress.update(1)
    per_cluster = {k: np.array([row[k] for row in rows]) for k in rows[0]}
    return {"y_cluster": y_cluster, "y_los": y_los, **per_cluster}
