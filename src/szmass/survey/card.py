"""The model card: what a trained model was trained for and how well it did, written beside
the model (``model_card.json``), with the matched filter of the same sky (``matched_filter.npz``)
so that ``szmass predict`` can run both estimators from the model directory alone.

A model directory holds ``mresunet.keras``, ``normalization.json``, ``calibration.json`` (the
network's calibration on the validation realizations), ``model_card.json`` and
``matched_filter.npz``.

The card's ``redshift`` is the trained range: a z-input model's [z_min, z_max] from its
normalization, with ``z_input: true`` (the catalogue's z goes into the network); a fixed-z
model's one redshift, with ``z_input: false``.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import single_redshift
from ..io import write_text_atomic
from ..network.dataset import takes_z
from .catalogue import InputError

CARD = "model_card.json"
FILTER = "matched_filter.npz"
MODEL = "mresunet.keras"
NORMALIZATION = "normalization.json"
CALIBRATION = "calibration.json"
#: The summary's headline statistics copied into the card: (set, estimator) blocks.
HEADLINE_SETS = ("scatter0", "scatter0.2")


def config_digest(config: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of a config slice, keys sorted."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    """Bias and widths of ln(M_est / M_true) of the network and the filter on the scatter sets,
    from summary.json (``mean``, fitted ``sigma``, ``robust_half_width``)."""
    keys = ("mean", "mean_err", "sigma", "robust_half_width")
    sources = {
        "network": summary.get("scatter", {}).get("fits", {}),
        "matched_filter": summary.get("baseline", {}).get("scatter_fits", {}),
    }
    return {
        name: {
            estimator: {key: fits[name][key] for key in keys if key in fits[name]}
            for estimator, fits in sources.items()
            if isinstance(fits.get(name), dict)
        }
        for name in HEADLINE_SETS
    }


def model_card(
    *,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    cosmo: dict[str, Any],
    train_masses_1e14: list[float],
    model: dict[str, Any],
    training: dict[str, Any],
    normalization: dict[str, Any],
    summary: dict[str, Any] | None,
    filter_z: float | None = None,
    sampling: str = "grid",
) -> dict[str, Any]:
    """The card of a model trained on the given sky and clusters; ``filter_z`` is the redshift
    of the matched filter beside it (``config.single_redshift``: one filter serves one z, so
    ``szmass predict`` gives a z-input model's ``mf_`` columns only near it), ``sampling``
    how the training masses were drawn (``split.masses``: grid or continuous)."""
    z_input = takes_z(normalization)
    if filter_z is None:
        filter_z = single_redshift(cluster["redshift"])
    z_range = (normalization["z_min"], normalization["z_max"]) if z_input else (filter_z, filter_z)
    return {
        "szmass_version": __version__,
        "sky": {
            key: sky[key]
            for key in ("freq_ghz", "beam_fwhm_arcmin", "noise_uk_arcmin", "pixel_arcmin", "npix")
        }
        | {key: sky[key] for key in ("apodization_width_pix", "pad_factor")},
        "redshift": {"min": z_range[0], "max": z_range[1]},
        "z_input": z_input,
        "matched_filter_z": filter_z,
        "training_masses_m200c_1e14": {
            "min": min(train_masses_1e14),
            "max": max(train_masses_1e14),
            "sampling": sampling,
            "values": list(train_masses_1e14),
        },
        "intrinsic_scatter_ln": cluster["sigma_int"],
        "cosmology": cosmo,
        "model": model,
        "training_digest": config_digest({"model": model, "training": training}),
        "best_epoch": normalization.get("best_epoch"),
        "stopped_early": normalization.get("stopped_early"),
        "finetune_stopped_early": normalization.get("finetune_stopped_early"),
        "evaluation": _headline(summary or {}),
    }


def write_card(card: dict[str, Any], model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir) / CARD
    write_text_atomic(json.dumps(card, indent=2) + "\n", path)
    return path


def write_filter(
    *,
    weights: np.ndarray,
    sigma: float,
    calibration: dict[str, Any],
    fixed_m200c_msun: float,
    model_dir: str | os.PathLike,
) -> Path:
    """The fixed-scale matched filter (weights on the windowed npix^2 cutout, amplitude
    A = weights . d, error sigma) and its mass calibration, beside the model."""
    path = Path(model_dir) / FILTER
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(
        tmp,
        weights=np.asarray(weights, float),
        sigma=float(sigma),
        fixed_m200c_msun=float(fixed_m200c_msun),
        calibration=json.dumps(calibration),
    )
    os.replace(tmp, path)
    return path


def write_model_files(
    *,
    model_dir: str | os.PathLike,
    spectra_path: str | os.PathLike,
    baseline_calibration_path: str | os.PathLike,
    summary_path: str | os.PathLike | None,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    baseline: dict[str, Any],
    train_masses_1e14: list[float],
    model: dict[str, Any],
    training: dict[str, Any],
    sampling: str = "grid",
) -> dict[str, Any]:
    """The card and the matched filter of the model in ``model_dir`` (the workflow's
    ``write_model_card`` rule): the filter is the baseline's fixed-scale filter on the
    simulation's exact pixel covariance, with the baseline's calibration."""
    from ..baseline import matched_filter as mf
    from ..baseline.calibration import read_calibration
    from ..baseline.redshift import calibration_at, ln_theta500_fixed
    from ..sky.spectra import read_spectra

    spectra = read_spectra(spectra_path)
    ell = np.asarray(spectra["ell"], float)
    cl = np.asarray(spectra["cl_total"], float)
    cosmo = dict(spectra.meta["cosmology"])
    calibration = read_calibration(baseline_calibration_path, baseline=baseline)
    fixed = baseline["fixed_mass"] * 1e14
    filter_z = single_redshift(cluster["redshift"])
    template = mf.scale_templates(
        m200c_msun=np.array([fixed]), z=filter_z, cosmo=cosmo, sky=sky, cluster=cluster
    )
    # a calibration fitted across redshifts, taken at the filter's (itself where fitted at one)
    filter_calibration = calibration_at(
        calibration["calibration"],
        ln_theta500_fixed(filter_z, fixed_m200c_msun=fixed, cosmo=cosmo),
    )
    filters = mf.build_filters(
        template, mf.pixel_covariance(spectra_ell=ell, spectra_cl=cl, sky=sky)
    )
    write_filter(
        weights=filters["weights"][0],
        sigma=float(filters["sigma"][0]),
        calibration=filter_calibration,
        fixed_m200c_msun=fixed,
        model_dir=model_dir,
    )
    summary = None
    if summary_path is not None and Path(summary_path).is_file():
        summary = json.loads(Path(summary_path).read_text())
    card = model_card(
        sky=sky,
        cluster=cluster,
        filter_z=filter_z,
        sampling=sampling,
        cosmo=cosmo,
        train_masses_1e14=train_masses_1e14,
        model=model,
        training=training,
        normalization=json.loads((Path(model_dir) / NORMALIZATION).read_text()),
        summary=summary,
    )
    write_card(card, model_dir)
    return card


def read_model_dir(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The card, normalization, network calibration and filter of a model directory; raises
    InputError naming the directory and the file it lacks."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"model directory {model_dir} does not exist")
    missing = [
        name for name in (MODEL, NORMALIZATION, CARD, FILTER) if not (model_dir / name).is_file()
    ]
    if missing:
        raise InputError(
            f"model directory {model_dir} lacks {', '.join(missing)} (a model directory from "
            "`python -m szmass.report.export ... --model` has them all)"
        )
    card = json.loads((model_dir / CARD).read_text())
    norm = json.loads((model_dir / NORMALIZATION).read_text())
    with np.load(model_dir / FILTER) as npz:
        mf = {
            "weights": npz["weights"],
            "sigma": float(npz["sigma"]),
            "fixed_m200c_msun": float(npz["fixed_m200c_msun"]),
            "calibration": json.loads(str(npz["calibration"])),
        }
    calibration = belt = None
    if (model_dir / CALIBRATION).is_file():
        network_calibration = json.loads((model_dir / CALIBRATION).read_text())
        calibration, belt = network_calibration.get("calibration"), network_calibration.get("belt")
    return {
        "dir": model_dir,
        "model_path": model_dir / MODEL,
        "card": card,
        "normalization": norm,
        "filter": mf,
        "calibration": calibration,
        "belt": belt,
    }
