"""The matched-filter baseline on the network's own test maps: calibration on the training
realizations, then a mass per map with the same table layout as the network's predictions.

Estimator: ``matched_filter.matched_filter_estimates`` (the optimal linear filter for the
simulation's exact pixel covariance; Melin et al. 2006, arXiv:astro-ph/0602424; Hasselfield et
al. 2013, arXiv:1301.0816) at a fixed reference scale; the best-scale S/N is kept per map to
show how much the map itself says about each mass (SPEC §4, "Information limit").

Calibration (D): per training mass the median fixed-scale amplitude (robust to the noise and
to the log-normal scatter), then the scaling relation ln A = alpha + beta ln M fitted over the
training masses and inverted. Fitting the maps one by one instead (ln M on ln A) pulls every
estimate toward the mean training mass, and ln A of single maps is biased at low S/N.
A map whose amplitude is <= 0 gets an estimate of 0: a non-detection, ranked lowest.
"""

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calibration import apply_calibration, fit_calibration
from ..intervals import filter_intervals
from ..io import (
    PREDICTION_COLUMNS,
    map_cluster_names,
    open_shard,
    write_csv_atomic,
    write_text_atomic,
)
from ..sky.spectra import read_spectra
from . import matched_filter as mf

log = logging.getLogger("szmass.baseline")


def _filter_setup(spectra_path: str, sky: dict, baseline: dict) -> dict[str, Any]:
    spectra = read_spectra(spectra_path)
    ell = np.asarray(spectra["ell"], dtype=float)
    cl = np.asarray(spectra["cl_total"], dtype=float)
    lo, hi = baseline["scale_mass_range"]
    return {
        "spectra_ell": ell,
        "spectra_cl": cl,
        "cosmo": dict(spectra.meta["cosmology"]),
        "scales": np.geomspace(lo, hi, baseline["n_scales"]) * 1e14,
        "covariance": mf.pixel_covariance(spectra_ell=ell, spectra_cl=cl, sky=sky),
    }


def _estimates(maps: np.ndarray, setup: dict, sky: dict, cluster: dict, baseline: dict) -> dict:
    return mf.matched_filter_estimates(
        maps,
        spectra_ell=setup["spectra_ell"],
        spectra_cl=setup["spectra_cl"],
        sky=sky,
        cluster=cluster,
        cosmo=setup["cosmo"],
        scale_m200c_msun=setup["scales"],
        fixed_m200c_msun=baseline["fixed_mass"] * 1e14,
        covariance=setup["covariance"],
    )


def _maps(path: str, realizations: Sequence[int] | None):
    ds = open_shard(path)
    if realizations is not None:
        ds = ds.isel(realization=slice(*realizations))
    return ds


def calibrate_baseline(
    *,
    spectra_path: str,
    shard_paths: Sequence[str],
    realizations: Sequence[int],
    sky: dict[str, Any],
    cluster: dict[str, Any],
    baseline: dict[str, Any],
    out_path: str,
) -> dict[str, Any]:
    """Fit the filter's mass calibration on the training realizations of the training shards
    and write it as JSON (with the per-mass median amplitude and S/N it came from)."""
    setup = _filter_setup(spectra_path, sky, baseline)
    masses, medians, snr = [], [], []
    for path in shard_paths:
        ds = _maps(path, realizations)
        est = _estimates(ds.sky.values, setup, sky, cluster, baseline)
        masses.append(float(np.median(ds.m200c.values)))
        medians.append(float(np.median(est["amplitude_fixed"])))
        snr.append(float(np.median(est["snr"])))
        log.info("%s: median amplitude %.3f, median S/N %.2f", path, medians[-1], snr[-1])
    fit = fit_calibration(
        amplitude=np.array(medians), m200c_msun=np.array(masses), method="forward"
    )
    result = {
        "method": "forward fit of ln(median A) on ln M over the training masses, inverted",
        "calibration": fit,
        "training_masses": masses,
        "median_amplitude": medians,
        "median_snr_best_scale": snr,
        "baseline": baseline,
    }
    write_text_atomic(json.dumps(result, indent=2) + "\n", out_path)
    return result


def read_calibration(path: str | Path, *, baseline: dict[str, Any]) -> dict[str, Any]:
    """The filter's calibration file, refused (naming both settings) when it was fitted with
    other baseline settings than ``baseline``."""
    calibration = json.loads(Path(path).read_text())
    if calibration["baseline"] != baseline:
        raise ValueError(
            f"{path} was calibrated with baseline settings {calibration['baseline']}, this "
            f"run uses {baseline}"
        )
    return calibration


def baseline_set(
    *,
    spectra_path: str,
    calibration_path: str,
    shard_paths: Sequence[str],
    realizations: Sequence[int] | None,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    baseline: dict[str, Any],
    out_predictions: str,
    sigma_int: float,
) -> pd.DataFrame:
    """Matched-filter masses for every map of a test set: the network's table layout plus the
    amplitude, its error, the fixed- and best-scale S/N, the first-order ln M error, and the
    intervals (``intervals.filter_intervals``, with ``sigma_int`` the log-normal intrinsic
    scatter of the amplitude at fixed mass) with the PIT of the true mass."""
    calibration = read_calibration(calibration_path, baseline=baseline)
    setup = _filter_setup(spectra_path, sky, baseline)
    parts = []
    for path in shard_paths:
        ds = _maps(path, realizations)
        est = _estimates(ds.sky.values, setup, sky, cluster, baseline)
        mass = apply_calibration(
            calibration["calibration"],
            amplitude=est["amplitude_fixed"],
            amplitude_err=est["amplitude_fixed_err"],
        )
        m_est = np.where(mass["nonpositive"], 0.0, mass["m200c_est"])
        intervals = filter_intervals(
            est["amplitude_fixed"],
            est["amplitude_fixed_err"],
            calibration["calibration"],
            sigma_int=sigma_int,
            m200c_true=ds.m200c.values,
        )
        ids = ds.cluster_id.values if "cluster_id" in ds else ds.realization.values
        parts.append(
            pd.DataFrame(
                {
                    "shard": Path(path).stem,
                    "realization": ds.realization.values,
                    "cluster_id": ids,
                    "cluster_name": map_cluster_names(ds),
                    "z": ds.z.values,
                    "ln_scatter": ds.ln_scatter.values,
                    "m200c_true": ds.m200c.values,
                    "m200c_est": m_est,
                    "amplitude": est["amplitude_fixed"],
                    "amplitude_err": est["amplitude_fixed_err"],
                    "snr": est["snr_fixed"],
                    "snr_best_scale": est["snr"],
                    "ln_m_err": mass["ln_m_err"],
                    **intervals,
                }
            )
        )
        log.info(
            "%s: %d maps, %d non-detections",
            path,
            ds.sizes["realization"],
            int(mass["n_nonpositive"]),
        )
    table = pd.concat(parts, ignore_index=True)
    assert list(table.columns[: len(PREDICTION_COLUMNS)]) == list(PREDICTION_COLUMNS)
    write_csv_atomic(table, out_predictions)
    return table
