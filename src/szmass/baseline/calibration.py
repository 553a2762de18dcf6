"""The matched-filter baseline on the network's own test maps: calibration on the training
realizations, then a mass per map with the same table layout as the network's predictions.

Estimator: ``matched_filter.matched_filter_estimates`` (the optimal linear filter for the
simulation's exact pixel covariance; Melin et al. 2006, arXiv:astro-ph/0602424; Hasselfield et
al. 2013, arXiv:1301.0816) at a fixed reference scale; the best-scale S/N is kept per map to
show how much the map itself says about each mass (SPEC §4, "Information limit"). Templates lie
at each map's own z (``redshift.estimates_by_z``; a redshift distribution rounds it to
``redshift.TEMPLATE_Z_STEP``).

Calibration (D): per training mass the median fixed-scale amplitude (robust to the noise and
to the log-normal scatter), then the scaling relation ln A = alpha + beta ln M fitted over the
training masses and inverted. Fitting the maps one by one instead (ln M on ln A) pulls every
estimate toward the mean training mass, and ln A of single maps is biased at low S/N.
Training maps at many redshifts give cells in (mass, z) instead, and the relation gains the
z terms of ``redshift.fit_redshift_calibration``; each test map is then calibrated, and its
intervals drawn, at its own z. A map whose amplitude is <= 0 gets an estimate of 0: a
non-detection, ranked lowest.
"""

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calibration import apply_calibration
from ..intervals import INTERVAL_COLUMNS, filter_intervals
from ..io import (
    PREDICTION_COLUMNS,
    map_cluster_names,
    open_shard,
    write_csv_atomic,
    write_text_atomic,
)
from ..sky.spectra import read_spectra
from . import matched_filter as mf
from . import redshift as zr

log = logging.getLogger("szmass.baseline")


def _filter_setup(spectra_path: str, sky: dict, cluster: dict, baseline: dict) -> dict[str, Any]:
    """The spectra, the pixel covariance and a ``BankCache`` of per-z filters; a redshift
    distribution rounds template z to ``redshift.TEMPLATE_Z_STEP``, a fixed z keeps each
    map's own."""
    spectra = read_spectra(spectra_path)
    ell = np.asarray(spectra["ell"], dtype=float)
    cl = np.asarray(spectra["cl_total"], dtype=float)
    lo, hi = baseline["scale_mass_range"]
    cosmo = dict(spectra.meta["cosmology"])
    covariance = mf.pixel_covariance(spectra_ell=ell, spectra_cl=cl, sky=sky)
    fixed = baseline["fixed_mass"] * 1e14
    banks = zr.BankCache(
        scale_m200c_msun=np.geomspace(lo, hi, baseline["n_scales"]) * 1e14,
        fixed_m200c_msun=fixed,
        covariance=covariance,
        sky=sky,
        cluster=cluster,
        cosmo=cosmo,
    )
    ln_theta = functools.cache(
        lambda z: zr.ln_theta500_fixed(z, fixed_m200c_msun=fixed, cosmo=cosmo)
    )
    step = zr.TEMPLATE_Z_STEP if isinstance(cluster["redshift"], dict) else None
    return {"cosmo": cosmo, "banks": banks, "ln_theta": ln_theta, "z_step": step, "fixed": fixed}


def _estimates(ds, setup: dict) -> dict:
    """The filter's estimates for the maps of a shard, templates at each map's z."""
    template_z = zr.template_redshifts(ds.z.values, step=setup["z_step"])
    return zr.estimates_by_z(ds.sky.values, template_z, setup["banks"])


def _maps(path: str, realizations: Sequence[int] | None):
    ds = open_shard(path)
    if realizations is not None:
        ds = ds.isel(realization=slice(*realizations))
    return ds


def _cells(ds, est: dict, setup: dict) -> list[dict[str, Any]]:
    """The calibration cells of one training shard (``redshift.cell_split``): mass, median
    fixed-scale amplitude and best-scale S/N, template size, z range and map count."""
    mass = float(np.median(ds.m200c.values))
    cells = []
    for pick in zr.cell_split(est["template_z"]):
        z = est["template_z"][pick]
        cells.append(
            {
                "m200c": mass,
                "median_amplitude": float(np.median(est["amplitude_fixed"][pick])),
                "median_snr": float(np.median(est["snr"][pick])),
                "ln_theta": float(np.median([setup["ln_theta"](float(v)) for v in z])),
                "z_range": [float(z.min()), float(z.max())],
                "n_maps": int(pick.size),
            }
        )
    return cells


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
    and write it as JSON, with the cell medians it came from: one cell per shard at a fixed
    z, cells in (mass, z) when the maps have many (``redshift.fit_redshift_calibration``)."""
    setup = _filter_setup(spectra_path, sky, cluster, baseline)
    cells = []
    for path in shard_paths:
        ds = _maps(path, realizations)
        for cell in _cells(ds, _estimates(ds, setup), setup):
            cells.append(cell)
            log.info(
                "%s (z %.2f-%.2f, %d maps): median amplitude %.3f, median S/N %.2f",
                path,
                *cell["z_range"],
                cell["n_maps"],
                cell["median_amplitude"],
                cell["median_snr"],
            )
    column = {k: np.array([c[k] for c in cells]) for k in ("m200c", "median_amplitude")}
    fit = zr.fit_redshift_calibration(
        amplitude=column["median_amplitude"],
        m200c_msun=column["m200c"],
        ln_theta=np.array([c["ln_theta"] for c in cells]),
        fixed_m200c_msun=setup["fixed"],
    )
    result = {
        "method": "forward fit of ln(median A) on ln M over the training masses, inverted",
        "calibration": fit,
        "training_masses": [c["m200c"] for c in cells],
        "median_amplitude": [c["median_amplitude"] for c in cells],
        "median_snr_best_scale": [c["median_snr"] for c in cells],
        "baseline": baseline,
    }
    if "redshift_terms" in fit:
        result["method"] = (
            "forward fit of ln(median A) on ln M and the template's ln theta500 over cells in "
            "(training mass, z), inverted per z (szmass.baseline.redshift)"
        )
        for key in ("ln_theta", "z_range", "n_maps"):
            result[f"cell_{key}"] = [c[key] for c in cells]
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


def masses_by_z(
    est: dict, calibration: dict, setup: dict, *, sigma_int: float, m_true, belts: dict
) -> tuple[dict[str, np.ndarray], int]:
    """Masses ``m200c_est`` (0 for a non-detection), first-order ``ln_m_err`` and intervals
    (``intervals.filter_intervals``, with ``pit``) of a shard's maps from ``est``
    (``template_z``, ``amplitude_fixed``, ``amplitude_fixed_err`` per map), per template z
    with the calibration at that z (``redshift.calibration_at``, ``setup['ln_theta'](z)``;
    one z: the calibration as it is); also the number of non-detections."""
    template_z, amp, err = est["template_z"], est["amplitude_fixed"], est["amplitude_fixed_err"]
    groups = np.unique(template_z)
    terms = calibration.get("redshift_terms")
    out: dict[str, np.ndarray] = {}
    n_nonpositive = 0
    for z in groups:
        pick = slice(None) if groups.size == 1 else np.flatnonzero(template_z == z)
        cal = calibration
        if terms is not None:
            ln_theta = setup["ln_theta"](float(z))
            lo, hi = terms["ln_theta_range"]
            if not lo - 1e-9 <= ln_theta <= hi + 1e-9:
                log.warning("z %.3f lies outside the calibration's redshifts: extrapolated", z)
            cal = zr.calibration_at(calibration, ln_theta)
        mass = apply_calibration(cal, amplitude=amp[pick], amplitude_err=err[pick])
        n_nonpositive += mass["n_nonpositive"]
        part = filter_intervals(
            amp[pick], err[pick], cal, sigma_int=sigma_int, m200c_true=m_true[pick], belts=belts
        )
        part["m200c_est"] = np.where(mass["nonpositive"], 0.0, mass["m200c_est"])
        part["ln_m_err"] = mass["ln_m_err"]
        if groups.size == 1:
            return part, n_nonpositive
        for key, values in part.items():
            out.setdefault(key, np.empty(amp.shape))[pick] = values
    return out, n_nonpositive


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
    calibration = read_calibration(calibration_path, baseline=baseline)["calibration"]
    setup = _filter_setup(spectra_path, sky, cluster, baseline)
    parts, belts = [], {}
    for path in shard_paths:
        ds = _maps(path, realizations)
        est = _estimates(ds, setup)
        masses, n_nonpositive = masses_by_z(
            est, calibration, setup, sigma_int=sigma_int, m_true=ds.m200c.values, belts=belts
        )
        intervals = {k: masses[k] for k in (*INTERVAL_COLUMNS, "m200c_belt", "pit")}
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
                    "m200c_est": masses["m200c_est"],
                    "amplitude": est["amplitude_fixed"],
                    "amplitude_err": est["amplitude_fixed_err"],
                    "snr": est["snr_fixed"],
                    "snr_best_scale": est["snr"],
                    "ln_m_err": masses["ln_m_err"],
                    **intervals,
                }
            )
        )
        log.info(
            "%s: %d maps, %d non-detections",
            path,
            ds.sizes["realization"],
            int(n_nonpositive),
        )
    table = pd.concat(parts, ignore_index=True)
    assert list(table.columns[: len(PREDICTION_COLUMNS)]) == list(PREDICTION_COLUMNS)
    write_csv_atomic(table, out_predictions)
    return table
