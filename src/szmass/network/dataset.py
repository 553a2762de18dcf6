"""Network-ready data sets: the training split, the labels, and the one preparation function
that every set (training, validation, tests) goes through (SPEC §3; Gupta & Reichardt 2020,
arXiv:2003.06135, §2.2 and §3).

- Input: the sky map divided by one constant, ``sky_scale`` = max |sky| over the training set,
  so training pixels lie in [-1, 1].
- Label channel 0: the cluster's own SZ map divided by ``sz_scale`` = max |sz| over the
  training set.
- Label channel 1: the mass map, a projected NFW profile (c200c from diemer15) pixel-averaged,
  scaled to 1 at the central pixel, times M200c / M_norm (M_norm = mean training mass).
  The mass estimate is the predicted central pixel times M_norm.
- Redshift (beyond the paper, issue 16): when the training set spans more than one redshift,
  a second input channel, constant over the map, holds the cluster's normalised redshift
  (z - z_centre) / z_scale with z_centre and z_scale the midpoint and half-width of the
  training range [z_min, z_max], so that training redshifts lie in [-1, 1] as the sky pixels
  do. The constants go into the normalization (``z_input: true``, ``z_centre``, ``z_scale``,
  ``z_min``, ``z_max``). A training set at one redshift gives exactly the single-channel inputs
  and the normalization keys of before (no ``z_*`` keys: a model without them takes no z).

  Why a constant channel and not a conditioning of the blocks (FiLM: a per-block scale and
  shift of the features computed from z): it needs no change to the blocks, the builder or
  the saved model's layers (a .keras file of standard layers, as before), and the first
  convolutions can already combine z with the map locally, which is what the mass readout
  needs (the z-dependence of the angular size and amplitude of the profile). The choice was
  made without a training measurement (the machine was busy with a long training run); FiLM
  is the alternative to measure against if the constant channel proves too weak.
"""

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from ..io import open_shard, write_zarr_atomic
from ..sky import profiles
from ..sky.cluster import subpixel_log_radius_arcmin
from ..units import ARCMIN

log = logging.getLogger("szmass.dataset")

NORMALIZATION_KEYS = ("sky_scale", "sz_scale", "m_norm_msun", "npix", "pixel_arcmin")
#: The keys of a model that takes the redshift as an input (absent: a fixed-z model).
Z_KEYS = ("z_input", "z_centre", "z_scale", "z_min", "z_max")
_MASS_MAP_SUBPIXEL = 8


def nfw_projected_shape(x: np.ndarray) -> np.ndarray:
    """Projected NFW surface density in units of 2 rho_s r_s, at x = R / r_s
    (Bartelmann 1996; Wright & Brainerd 2000, arXiv:astro-ph/9908213, eq. 11)."""
    x = np.asarray(x, dtype=float)
    out = np.full_like(x, 1.0 / 3.0)
    lo, hi = x < 1.0 - 1e-6, x > 1.0 + 1e-6
    xl, xh = x[lo], x[hi]
    out[lo] = (1.0 - 2.0 / np.sqrt(1.0 - xl**2) * np.arctanh(np.sqrt((1 - xl) / (1 + xl)))) / (
        xl**2 - 1.0
    )
    out[hi] = (1.0 - 2.0 / np.sqrt(xh**2 - 1.0) * np.arctan(np.sqrt((xh - 1) / (1 + xh)))) / (
        xh**2 - 1.0
    )
    return out


def mass_map(
    *,
    m200c_msun: float,
    m_norm_msun: float,
    z: float,
    cosmo: dict[str, Any],
    npix: int,
    pixel_arcmin: float,
) -> np.ndarray:
    """The mass label: pixel-averaged projected NFW (M200c, diemer15 c200c) with its central
    pixel (npix//2, npix//2) equal to M200c / M_norm. Shape (npix, npix)."""
    c200 = float(profiles.concentration_200c(m200c_msun, z=z, cosmo=cosmo))
    c = profiles.cosmo_mod.colossus(cosmo)
    rho_c = c.rho_c(z) * profiles.cosmo_mod.h(cosmo) ** 2 * 1e9  # Msun / Mpc^3
    r200_mpc = (3.0 * m200c_msun / (4.0 * np.pi * 200.0 * rho_c)) ** (1 / 3)
    d_a = profiles.angular_diameter_distance_mpc(z, cosmo)
    theta_s_arcmin = r200_mpc / c200 / d_a / ARCMIN
    log_r = subpixel_log_radius_arcmin(npix, pixel_arcmin, _MASS_MAP_SUBPIXEL)
    sub = nfw_projected_shape(np.exp(log_r) / theta_s_arcmin)
    pix = sub.reshape(npix, _MASS_MAP_SUBPIXEL, npix, _MASS_MAP_SUBPIXEL).mean(axis=(1, 3))
    return pix / pix[npix // 2, npix // 2] * (m200c_msun / m_norm_msun)


def shard_cosmology(ds: xr.Dataset) -> dict[str, Any]:
    """The cosmology a shard was simulated with, from its ``cosmo_*`` attributes."""
    return {k.removeprefix("cosmo_"): v for k, v in ds.attrs.items() if k.startswith("cosmo_")}


def z_normalization(z: np.ndarray) -> dict[str, Any]:
    """The redshift-input constants of training redshifts ``z``: none (``{}``) for a set at one
    redshift; else ``z_input``, the range [``z_min``, ``z_max``], its midpoint ``z_centre`` and
    half-width ``z_scale`` (the channel is (z - z_centre) / z_scale, in [-1, 1] on the range)."""
    z = np.asarray(z, dtype=float)
    if not np.all(np.isfinite(z)):
        raise ValueError("the training redshifts hold NaN or inf values")
    z_min, z_max = float(z.min()), float(z.max())
    if not z_max > z_min:
        return {}
    return {
        "z_input": True,
        "z_centre": 0.5 * (z_min + z_max),
        "z_scale": 0.5 * (z_max - z_min),
        "z_min": z_min,
        "z_max": z_max,
    }


def takes_z(norm: dict[str, Any]) -> bool:
    """Whether the model of this normalization takes the redshift as an input channel."""
    return bool(norm.get("z_input", False))


def input_channels(norm: dict[str, Any]) -> int:
    """The network's input channels: the map, and the redshift where the model takes it."""
    return 2 if takes_z(norm) else 1


def network_inputs(sky: np.ndarray, z: np.ndarray | None, norm: dict[str, Any]) -> np.ndarray:
    """The network's inputs (n, H, W, channels), float32, of maps ``sky`` (n, H, W) [uK] at
    redshifts ``z`` (n,): the map over ``sky_scale``, then, for a model that takes z, the
    constant channel (z - z_centre) / z_scale. ``z`` may be None for a fixed-z model."""
    x = (sky / norm["sky_scale"]).astype(np.float32)[..., None]
    if not takes_z(norm):
        return x
    if z is None:
        raise ValueError("this model takes the redshift: give each map's z")
    channel = z_channel(z, norm)[:, None, None, None]
    return np.concatenate([x, np.broadcast_to(channel, x.shape)], axis=-1)


def z_channel(z: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """The normalised redshift (z - z_centre) / z_scale of a z-input model, float32."""
    z = np.asarray(z, dtype=float)
    return ((z - norm["z_centre"]) / norm["z_scale"]).astype(np.float32)


def normalization_from_training(parts: Sequence[tuple[xr.Dataset, range]]) -> dict[str, Any]:
    """The constants of the preparation, from the training realizations: ``parts`` is each
    training shard with the realizations of it that are trained on. The ``z_*`` keys
    (``z_normalization``) appear only when the training redshifts differ."""
    pieces = [ds.isel(realization=slice(rng.start, rng.stop)) for ds, rng in parts]
    masses = np.concatenate([ds.m200c.values for ds in pieces])
    first = parts[0][0]
    return {
        "sky_scale": max(float(abs(ds.sky).max()) for ds in pieces),
        "sz_scale": max(float(abs(ds.sz).max()) for ds in pieces),
        "m_norm_msun": float(masses.mean()),
        "npix": int(first.sizes["x"]),
        "pixel_arcmin": float(first.attrs["sky_pixel_arcmin"]),
        **z_normalization(np.concatenate([ds.z.values for ds in pieces])),
        "szmass_version": __version__,
    }


def check_compatible(ds: xr.Dataset, norm: dict[str, Any], *, where: str) -> None:
    """Stop when a shard's map size or pixel differs from the normalization's (training) one."""
    npix, pixel = int(ds.sizes["x"]), float(ds.attrs.get("sky_pixel_arcmin", np.nan))
    if npix != norm["npix"] or ds.sizes["y"] != norm["npix"]:
        raise ValueError(
            f"{where}: maps are {ds.sizes['y']}x{npix} pixels, the training set's "
            f"are {norm['npix']}x{norm['npix']}"
        )
    if not np.isclose(pixel, norm["pixel_arcmin"]):
        raise ValueError(
            f"{where}: pixel is {pixel}', the training set's is {norm['pixel_arcmin']}'"
        )


def prepare(
    ds: xr.Dataset, norm: dict[str, Any], *, realizations: slice | None = None, where: str = "shard"
) -> dict[str, np.ndarray]:
    """The one preparation every set goes through: (n, H, W, channels) inputs
    (``network_inputs``: 1 channel, or 2 for a model that takes z), (n, H, W, 2) labels.

    Raises ValueError naming ``where`` if the maps hold NaNs or do not match ``norm``.
    """
    check_compatible(ds, norm, where=where)
    if realizations is not None:
        ds = ds.isel(realization=realizations)
    sky = ds.sky.values.astype(np.float32)
    sz = ds.sz.values.astype(np.float32)
    m200c = ds.m200c.values.astype(float)
    z_all = ds.z.values.astype(float)
    for name, arr in (("sky", sky), ("sz", sz), ("m200c", m200c), ("z", z_all)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{where}: variable {name!r} holds NaN or inf values")
    cosmo = shard_cosmology(ds)
    npix, pixel = norm["npix"], norm["pixel_arcmin"]
    mass_maps = np.empty_like(sz)
    unique, inverse = np.unique(np.stack([m200c, z_all], axis=1), axis=0, return_inverse=True)
    templates = [
        mass_map(
            m200c_msun=m,
            m_norm_msun=norm["m_norm_msun"],
            z=z,
            cosmo=cosmo,
            npix=npix,
            pixel_arcmin=pixel,
        )
        for m, z in unique
    ]
    for i, k in enumerate(inverse.reshape(-1)):
        mass_maps[i] = templates[k]
    labels = np.stack([sz / norm["sz_scale"], mass_maps], axis=-1).astype(np.float32)
    return {
        "inputs": network_inputs(sky, z_all, norm),
        "labels": labels,
        "m200c": m200c,
        "realization": ds.realization.values,
        "ln_scatter": ds.ln_scatter.values,
    }


def write_normalization(norm: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the normalization JSON atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(norm, indent=2) + "\n")
    os.replace(tmp, path)


def read_normalization(path: str | os.PathLike) -> dict[str, Any]:
    """Read a normalization file; a missing or incomplete one raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"normalization file {path} does not exist (run split_dataset)")
    try:
        norm = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"normalization file {path} is not valid JSON: {err}") from err
    missing = [k for k in NORMALIZATION_KEYS if k not in norm]
    if takes_z(norm):
        missing += [k for k in Z_KEYS if k not in norm]
    if missing:
        raise ValueError(f"normalization file {path} lacks {missing}")
    if takes_z(norm) and not float(norm["z_scale"]) > 0:
        raise ValueError(f"normalization file {path}: z_scale = {norm['z_scale']} is not > 0")
    return norm


def _as_dataset(arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> xr.Dataset:
    return xr.Dataset(
        {
            "inputs": (("sample", "y", "x", "channel"), arrays["inputs"]),
            "labels": (("sample", "y", "x", "label"), arrays["labels"]),
            "m200c": ("sample", arrays["m200c"], {"units": "Msun"}),
            "realization": ("sample", arrays["realization"]),
            "ln_scatter": ("sample", arrays["ln_scatter"]),
        },
        attrs=attrs,
    )


def split_dataset(
    *,
    train: Sequence[tuple[str, Sequence[int]]],
    val: Sequence[tuple[str, Sequence[int]]],
    out_train: str,
    out_val: str,
    out_normalization: str,
) -> dict[str, Any]:
    """Build the training and validation sets (``config.network_split``).

    ``train`` and ``val`` are ``(shard path, [start, stop))`` parts: the training masses' grid
    shards with the train and val realization ranges, or the continuous train and val shards
    whole. The normalization constants come from the training part only.
    """
    paths = list(dict.fromkeys(p for p, _ in [*train, *val]))
    # opened lazily and prepared one shard range at a time: a set of 1e5 maps is never whole
    # in memory (the normalization's maxima are reduced chunk by chunk)
    shards = {p: open_shard(p, load=False) for p in paths}
    norm = normalization_from_training([(shards[p], range(*rng)) for p, rng in train])
    # A bad map in either set leaves neither written (the training set is removed again).
    written = []
    try:
        for name, parts, out in (("train", train, out_train), ("val", val, out_val)):
            attrs = {
                "set": name,
                "realizations": [list(rng) for _, rng in parts],
                "shards": [str(p) for p, _ in parts],
                "label_names": ["sz", "mass"],
                **{f"norm_{k}": v for k, v in norm.items()},
            }
            pieces = (
                _as_dataset(
                    prepare(shards[p], norm, realizations=slice(*rng), where=p),
                    attrs,
                )
                for p, rng in parts
            )
            write_zarr_atomic(pieces, out)
            written.append(out)
            log.info("wrote %s: %d maps", out, sum(rng[1] - rng[0] for _, rng in parts))
    except Exception:
        for out in written:
            shutil.rmtree(out, ignore_errors=True)
        raise
    write_normalization(norm, out_normalization)
    return norm
