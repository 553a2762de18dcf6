"""Predictions of a trained mResUNet on the test sets (SPEC §4; Gupta & Reichardt 2020,
arXiv:2003.06135, §4).

Every test map goes through ``dataset.prepare``, the very function that made the training set;
the mass estimate is the predicted central pixel of the mass channel times M_norm, and the
predicted SZ map is the first channel times the stored SZ scale. Beside that raw estimate,
``m200c_cal`` is the estimate calibrated on the validation realizations (``calibrate_network``),
the same way the matched filter is calibrated on its training maps (issue 12), and
``m200c_tpl`` the template readout (``template.py``: the label's template fitted over the
central 13 pixels instead of the central pixel alone). A model that takes the redshift
(issue 16) gets each map's own z from its shard (``dataset.prepare``); maps outside its trained
z range are counted in the log.
"""

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..calibration import apply_calibration, fit_calibration
from ..intervals import INTERVAL_COLUMNS, belt_intervals, belt_pit, fit_belt, mass_groups
from ..io import (
    PREDICTION_COLUMNS,
    map_cluster_names,
    open_shard,
    write_csv_atomic,
    write_text_atomic,
)
from ..logs import Progress
from .dataset import (
    NORMALIZATION_KEYS,
    input_channels,
    prepare,
    read_normalization,
    shard_cosmology,
    takes_z,
)
from .template import template_readout, template_shapes

log = logging.getLogger("szmass.evaluate")

_BATCH = 64


def check_normalizations(
    model_norm: dict[str, Any], data_norm: dict[str, Any], *, model_path: str, data_path: str
) -> None:
    """Stop when the model was trained with other constants than the data set's.

    Raises ValueError naming the key and both values.
    """
    if takes_z(model_norm) != takes_z(data_norm):
        raise ValueError(
            f"normalization 'z_input' differs: {takes_z(model_norm)} for the model "
            f"({model_path}) but {takes_z(data_norm)} for the data set ({data_path}); retrain "
            "or use the matching model"
        )
    z_keys = ("z_centre", "z_scale") if takes_z(model_norm) else ()
    for key in (*NORMALIZATION_KEYS, *z_keys):
        a, b = model_norm.get(key), data_norm.get(key)
        if a is None or b is None or not np.isclose(float(a), float(b), rtol=1e-6):
            raise ValueError(
                f"normalization '{key}' differs: {a} for the model ({model_path}) but {b} "
                f"for the data set ({data_path}); retrain or use the matching model"
            )


def _predict(net, inputs: np.ndarray, progress: Progress) -> np.ndarray:
    out = np.empty(inputs.shape[:3] + (2,), dtype=np.float32)
    for start in range(0, len(inputs), _BATCH):
        stop = min(start + _BATCH, len(inputs))
        out[start:stop] = net.predict_on_batch(inputs[start:stop])
        progress.update(stop - start)
    return out


def load_network(
    model_path: str | os.PathLike,
    *,
    npix: int,
    threads: int,
    source: str,
    deterministic=True,
    channels: int = 1,
):
    """The saved model for inference, refused (ValueError) unless it takes the npix x npix
    maps and the ``channels`` input channels (1: the map; 2: the map and the redshift) that
    ``source`` (the normalization, a model card) says."""
    import keras

    from .train import configure_tensorflow

    configure_tensorflow(
        threads=threads, seed=0, mixed_precision=False, deterministic=deterministic
    )
    net = keras.saving.load_model(model_path, compile=False)
    if tuple(net.input_shape[1:3]) != (npix, npix):
        raise ValueError(
            f"model {model_path} takes {net.input_shape[1]}x{net.input_shape[2]} maps, "
            f"{source} says {npix}x{npix}"
        )
    if net.input_shape[-1] != channels:
        raise ValueError(
            f"model {model_path} takes {net.input_shape[-1]} input channel(s), {source} says "
            f"{channels} (1: the map; 2: the map and the redshift)"
        )
    return net


def _load_model(
    model_path: str,
    model_norm: dict[str, Any],
    *,
    data_normalization_path: str,
    model_normalization_path: str,
    threads: int,
):
    """The trained model, after checking that its normalization is the data set's."""
    check_normalizations(
        model_norm,
        read_normalization(data_normalization_path),
        model_path=model_normalization_path,
        data_path=data_normalization_path,
    )
    return load_network(
        model_path,
        npix=model_norm["npix"],
        threads=threads,
        source="the normalization",
        channels=input_channels(model_norm),
    )


def read_calibration(path: str | os.PathLike) -> dict[str, Any] | None:
    """The network's calibration fit (None where ``calibrate_network`` could not fit one); a
    missing or incomplete file raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"network calibration {path} does not exist (run calibrate_network)"
        )
    calibration = json.loads(path.read_text())
    if calibration.get("calibration", {}) is None and calibration.get("error"):
        return None
    if not {"a", "b", "scatter"} <= set(calibration.get("calibration", {})):
        raise ValueError(f"network calibration {path} lacks the fit's a, b and scatter")
    return calibration["calibration"]


def read_belt(path: str | os.PathLike) -> dict[str, Any] | None:
    """The intervals' belt of the network's calibration file (None where it has none)."""
    return json.loads(Path(path).read_text()).get("belt")


def interval_columns(
    m_est: np.ndarray, belt: dict[str, Any] | None, m_true: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The interval columns of raw estimates (``intervals.INTERVAL_COLUMNS`` and
    ``m200c_belt``), and ``pit`` where the true masses are given; NaN without a belt."""
    if belt is None:
        names = (*INTERVAL_COLUMNS, "m200c_belt") + (() if m_true is None else ("pit",))
        return {c: np.full(len(m_est), np.nan) for c in names}
    out = belt_intervals(belt, m_est)
    if m_true is not None:
        out["pit"] = belt_pit(belt, m_true, m_est)
    return out


def calibrated(m_est: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """The calibrated estimate [Msun] of raw estimates ``m_est``; 0 where the raw estimate is
    <= 0 (ranked lowest, as the filter's non-detections); NaN without a calibration."""
    if calibration is None:
        return np.full(len(m_est), np.nan)
    out = apply_calibration(calibration, amplitude=m_est, amplitude_err=0.0)
    return np.where(out["nonpositive"], 0.0, out["m200c_est"])


def calibrate_network(
    *,
    model_path: str,
    model_normalization_path: str,
    data_normalization_path: str,
    val_path: str,
    out_path: str,
    threads: int = 1,
) -> dict[str, Any]:
    """Calibrate the network's raw estimate on the validation realizations, as the matched
    filter is calibrated on its training maps: per validation mass the median raw estimate,
    the relation ln(median M_raw) = alpha + beta ln M fitted and inverted
    (``calibration.fit_calibration``, forward). Written as JSON; returns it."""
    from .train import load_set

    model_norm = read_normalization(model_normalization_path)
    net = _load_model(
        model_path,
        model_norm,
        data_normalization_path=data_normalization_path,
        model_normalization_path=model_normalization_path,
        threads=threads,
    )
    inputs, _ = load_set(
        val_path, input_size=model_norm["npix"], channels=input_channels(model_norm)
    )
    m_true = xr.open_zarr(val_path, consolidated=True)["m200c"].values
    centre = model_norm["npix"] // 2
    out = _predict(net, inputs, Progress(len(inputs), "validation maps", log))
    est = out[:, centre, centre, 1].astype(float) * model_norm["m_norm_msun"]
    masses, groups = mass_groups(m_true, est)  # distinct masses, or bins of continuous ones
    medians = np.array([np.median(g) for g in groups])
    try:
        fit, error = fit_calibration(amplitude=medians, m200c_msun=masses, method="forward"), None
        if fit["b"] <= 0:
            raise ValueError(f"the median raw estimate falls with the mass (b = {fit['b']:.3g})")
    except ValueError as err:  # an untrained network: no calibration, said, not a crash
        fit, error = None, f"no calibration: {err}"
        log.warning("%s; the calibrated estimates will be NaN", error)
    try:  # the intervals' belt (``szmass.intervals``), on the same validation maps
        belt, belt_error = fit_belt(m_true, est), None
    except ValueError as err:
        belt, belt_error = None, f"no intervals: {err}"
        log.warning("%s; the interval columns will be NaN", belt_error)
    result = {
        "method": "forward fit of ln(median raw estimate) on ln M over the validation "
        "realizations of the training masses (or mass bins of continuous ones), inverted",
        "calibration": fit,
        "error": error,
        "masses": masses.tolist(),
        "median_raw_estimate": medians.tolist(),
        "validation_set": str(val_path),
        "belt": belt,
        "belt_error": belt_error,
    }
    write_text_atomic(json.dumps(result, indent=2) + "\n", out_path)
    if fit is not None:
        log.info("network calibration: ln M = %.4f + %.4f ln M_raw", fit["a"], fit["b"])
    return result


def _template_estimates(
    mass_pred: np.ndarray,
    z: np.ndarray,
    cosmo: dict[str, Any],
    norm: dict[str, Any],
    shapes_at: dict[tuple, np.ndarray],
) -> np.ndarray:
    """The template readout of each map, with the template at each map's redshift;
    ``shapes_at`` keeps the shapes per (redshift, cosmology) for the set's other shards."""
    est = np.empty(len(z))
    for zk in np.unique(z):
        key = (float(zk), tuple(sorted(cosmo.items())))
        if key not in shapes_at:
            shapes_at[key] = template_shapes(
                z=float(zk), cosmo=cosmo, npix=norm["npix"], pixel_arcmin=norm["pixel_arcmin"]
            )
        pick = z == zk
        est[pick] = template_readout(mass_pred[pick], shapes_at[key], m_norm=norm["m_norm_msun"])
    return est


def _log_z_outside(z: np.ndarray, norm: dict[str, Any]) -> None:
    """Warn when a z-input model is asked about maps outside its trained redshift range."""
    if not takes_z(norm):
        return
    outside = (z < norm["z_min"]) | (z > norm["z_max"])
    if outside.any():
        log.warning(
            "%d of %d maps lie outside the trained redshift range %g-%g: the network "
            "extrapolates there",
            int(outside.sum()),
            len(z),
            norm["z_min"],
            norm["z_max"],
        )


def predict_set(
    *,
    model_path: str,
    model_normalization_path: str,
    data_normalization_path: str,
    shard_paths: Sequence[str],
    realizations: Sequence[int] | None,
    out_predictions: str,
    out_maps: str | None = None,
    calibration_path: str | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Estimate the mass of every map of a test set and write one row per map.

    Args:
        realizations: [start, stop) of the realizations used from each shard, or None for all.
        calibration_path: the network's calibration (``calibrate_network``); its estimate
            goes into the column ``m200c_cal`` beside the raw ``m200c_est``.
        out_maps: optional ``.npz`` with, per distinct true mass, the mean true and predicted
            SZ maps [uK], the standard error of their difference per pixel [uK] (``sz_sem``:
            how far from zero noise alone puts the mean residual) and the mean predicted mass
            map (the profile figure, SPEC §4).
    Returns:
        The predictions table (columns ``PREDICTION_COLUMNS``, masses in Msun).
    """
    model_norm = read_normalization(model_normalization_path)
    net = _load_model(
        model_path,
        model_norm,
        data_normalization_path=data_normalization_path,
        model_normalization_path=model_normalization_path,
        threads=threads,
    )
    calibration = None if calibration_path is None else read_calibration(calibration_path)
    belt = None if calibration_path is None else read_belt(calibration_path)
    centre = model_norm["npix"] // 2
    sel = None if realizations is None else slice(*realizations)
    prepared = []
    for path in shard_paths:
        ds = open_shard(path)
        p = prepare(ds, model_norm, realizations=sel, where=str(path))
        picked = ds if sel is None else ds.isel(realization=sel)
        p["z"] = picked.z.values
        ids = picked.cluster_id.values if "cluster_id" in picked else picked.realization.values
        p["cluster_id"] = ids
        p["cluster_name"] = map_cluster_names(picked)
        p["cosmo"] = shard_cosmology(ds)
        prepared.append((path, p))
    progress = Progress(sum(len(p["m200c"]) for _, p in prepared), "predicted maps", log)
    rows, mean_maps = [], {"m200c": [], "sz_true": [], "sz_pred": [], "mass_pred": [], "sz_sem": []}
    shapes_at: dict[tuple, np.ndarray] = {}  # template shapes, computed once per redshift
    for path, p in prepared:
        out = _predict(net, p["inputs"], progress)
        est = out[:, centre, centre, 1].astype(float) * model_norm["m_norm_msun"]
        est_tpl = _template_estimates(out[..., 1], p["z"], p["cosmo"], model_norm, shapes_at)
        rows.append(
            pd.DataFrame(
                {
                    "shard": Path(path).stem,
                    "realization": p["realization"],
                    "cluster_id": p["cluster_id"],
                    "cluster_name": p["cluster_name"],
                    "z": p["z"],
                    "ln_scatter": p["ln_scatter"],
                    "m200c_true": p["m200c"],
                    "m200c_est": est,
                    "m200c_cal": calibrated(est, calibration),
                    "m200c_tpl": est_tpl,
                    **interval_columns(est, belt, p["m200c"]),
                }
            )
        )
        for m in np.unique(p["m200c"]):
            pick = p["m200c"] == m
            if pick.sum() < 2:  # a map per mass (scatter sets): no mean map to keep
                continue
            mean_maps["m200c"].append(m)
            mean_maps["sz_true"].append(p["labels"][pick, ..., 0].mean(0) * model_norm["sz_scale"])
            mean_maps["sz_pred"].append(out[pick, ..., 0].mean(0) * model_norm["sz_scale"])
            mean_maps["mass_pred"].append(out[pick, ..., 1].mean(0) * model_norm["m_norm_msun"])
            resid = out[pick, ..., 0] - p["labels"][pick, ..., 0]  # per map, over the same maps
            sem = resid.std(0, ddof=1) / np.sqrt(pick.sum())
            mean_maps["sz_sem"].append(sem * model_norm["sz_scale"])
    extra = ["m200c_cal", "m200c_tpl", *INTERVAL_COLUMNS, "m200c_belt", "pit"]
    table = pd.concat(rows, ignore_index=True)[[*PREDICTION_COLUMNS, *extra]]
    _log_z_outside(table["z"].to_numpy(), model_norm)
    bad = ~np.isfinite(table["m200c_est"])
    if bad.any():
        log.warning("%d of %d estimates are not finite", int(bad.sum()), len(table))
    if out_maps is not None:
        tmp = Path(out_maps).with_name(f".{Path(out_maps).stem}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in mean_maps.items()})
        os.replace(tmp, out_maps)
    write_csv_atomic(table, out_predictions)
    log.info("wrote %s: %d maps", out_predictions, len(table))
    return table
