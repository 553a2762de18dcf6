"""Masses for the clusters of a user's map (``szmass predict``): a cutout per catalogue position
on the training grid (``cutouts``), the network's estimate (the central pixel of the predicted
mass map, as on the test sets) and the matched filter's at the same position, checked against
the model card, written as a catalogue with every input row in order.

A model that takes the redshift (issue 16; ``z_input`` in its card and normalization) gets each
row's ``z`` from the catalogue: a missing z is an error naming the row; a z outside the trained
range [z_min, z_max] is flagged ``z_outside_training``. A fixed-z model takes no z: the
catalogue's z (the card's where it has none) only converts to M500c, and rows further than
``Z_TOLERANCE`` from the trained redshift are flagged, as before.
"""

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..calibration import apply_calibration
from ..intervals import INTERVAL_COLUMNS, filter_intervals
from ..io import write_csv_atomic
from ..network.dataset import input_channels, network_inputs, takes_z
from ..network.predict import interval_columns, load_network
from ..sky.maps import apodization_window
from ..sky.profiles import m200c_to_m500c
from .card import read_model_dir
from .catalogue import InputError, read_catalogue
from .cutouts import OUTSIDE, cutouts
from .skymap import high_pass, read_sky_map, training_ell_min, white_noise_uk_arcmin

log = logging.getLogger("szmass.survey")

#: The map's beam may differ from the card's by at most this fraction.
BEAM_TOLERANCE = 0.05
#: A measured white-noise level further than this fraction from the card's is warned about.
NOISE_TOLERANCE = 0.20
#: A cluster's z further than this from a fixed-z model's redshift is flagged (a z-input
#: model flags any z outside its trained range).
Z_TOLERANCE = 0.05
#: The high-pass of the network's map rises from 0 to 1 between these multiples of the training
#: maps' lowest multipole (``skymap.training_ell_min``).
HIGH_PASS = (0.75, 1.25)
#: Positions per chunk: cutouts, inference and filter run chunk by chunk (flat memory; chunks of
#: 1024 raised the peak memory at 10^4 positions by 25%, measured with bench/bench_predict.py).
CHUNK = 512
#: The flag of a cluster with nothing to report, and the flags beyond the cutout's.
OK, Z_OUTSIDE, MASS_OUTSIDE = "ok", "z_outside_training", "mass_outside_training"
#: The flag of a z-input model's cluster further than ``Z_TOLERANCE`` from the redshift of
#: the one matched filter beside the model (its ``mf_`` columns are then NaN).
MF_Z = "matched_filter_at_other_z"
#: Output columns added after the catalogue's own: the network's estimate and its intervals
#: (``szmass.intervals``; NaN for a model calibrated without them), the filter's, the flag.
OUTPUT_COLUMNS = (
    "m200c",
    *INTERVAL_COLUMNS,
    "m200c_cal",
    "m500c",
    "mf_m200c",
    *(f"mf_{c}" for c in INTERVAL_COLUMNS),
    "mf_snr",
    "mf_ln_m_err",
    "flag",
)


def check_beam(card: dict[str, Any], *, beam_fwhm_arcmin: float | None, map_path: Path) -> float:
    """The map's beam FWHM [arcmin], refused when it differs from the card's by more than
    ``BEAM_TOLERANCE``."""
    trained = float(card["sky"]["beam_fwhm_arcmin"])
    if beam_fwhm_arcmin is None:
        raise InputError(
            f"map {map_path}: its beam is unknown (no BEAMFWHM, FWHM or BMAJ keyword); give "
            f"--beam-fwhm in arcmin (the model was trained for {trained}')"
        )
    if abs(beam_fwhm_arcmin - trained) > BEAM_TOLERANCE * trained:
        raise InputError(
            f"map {map_path}: beam FWHM {beam_fwhm_arcmin:.3g}' differs from the model's "
            f"{trained:.3g}' by more than {BEAM_TOLERANCE:.0%}; this model cannot measure it"
        )
    return beam_fwhm_arcmin


def trained_z_range(card: dict[str, Any], norm: dict[str, Any]) -> tuple[float, float]:
    """The redshifts a cluster is not flagged at: a z-input model's trained range [z_min,
    z_max] (its normalization's), a fixed-z model's redshift +- ``Z_TOLERANCE``."""
    if takes_z(norm):
        return float(norm["z_min"]), float(norm["z_max"])
    return card["redshift"]["min"] - Z_TOLERANCE, card["redshift"]["max"] + Z_TOLERANCE


def catalogue_z(table: pd.DataFrame, model: dict[str, Any], catalogue_path) -> np.ndarray:
    """Each row's redshift. A z-input model needs the catalogue's: a missing ``z`` column or a
    missing (NaN) value raises InputError naming the catalogue, column and (1-based) row. A
    fixed-z model fills the missing ones with the card's redshift."""
    card, n = model["card"], len(table)
    if not takes_z(model["normalization"]):
        z_card = card["redshift"]["min"]
        return table["z"].fillna(z_card).to_numpy() if "z" in table else np.full(n, z_card)
    z_lo, z_hi = trained_z_range(card, model["normalization"])
    need = f"model {model['dir']} takes each cluster's redshift (trained on z {z_lo:g}-{z_hi:g})"
    if "z" not in table:
        raise InputError(f"catalogue {catalogue_path} has no z column: {need}")
    z = table["z"].to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(z))
    if bad.size:
        raise InputError(
            f"catalogue {catalogue_path}, row {bad[0] + 1}, column z: missing or not a number "
            f"({bad.size} such row(s)); {need}"
        )
    return z


def _far_from_filter(z, card, norm) -> np.ndarray:
    """Rows a z-input model's matched filter (built at the card's ``matched_filter_z``) cannot
    measure: further than ``Z_TOLERANCE`` from that z. A fixed-z model's filter is at its
    training z, whose other redshifts the z flag already marks: none."""
    if not takes_z(norm) or "matched_filter_z" not in card:
        return np.zeros(len(z), dtype=bool)
    return np.abs(np.asarray(z, float) - float(card["matched_filter_z"])) > Z_TOLERANCE


def _flags(cutout_flags, z, m200c, card, norm, far_from_filter) -> list[str]:
    z_lo, z_hi = trained_z_range(card, norm)
    masses = card["training_masses_m200c_1e14"]
    m_lo, m_hi = masses["min"] * 1e14, masses["max"] * 1e14
    out = []
    rows = zip(cutout_flags, z, m200c, far_from_filter, strict=True)
    for flag, zi, mi, far in rows:
        found = [] if flag == OK else [flag]
        if not z_lo <= zi <= z_hi:
            found.append(Z_OUTSIDE)
        if flag != OUTSIDE and not (np.isfinite(mi) and m_lo <= mi <= m_hi):
            found.append(MASS_OUTSIDE)
        if far:
            found.append(MF_Z)
        out.append(";".join(found) or OK)
    return out


def predict_catalogue(
    *,
    map_path: str | os.PathLike,
    catalogue_path: str | os.PathLike,
    out_path: str | os.PathLike,
    model_dir: str | os.PathLike,
    weights_path: str | os.PathLike | None = None,
    beam_fwhm_arcmin: float | None = None,
    unit: str | None = None,
    order: str = "shift",
    threads: int = 1,
) -> pd.DataFrame:
    """Masses for every row of the catalogue, written to ``out_path`` (CSV, or a FITS table
    when it ends in .fits) and returned.

    The inputs are all checked before any work (InputError naming the file, column or row).
    ``m200c`` is the network's raw estimate [Msun] and ``m200c_cal`` its calibrated one,
    ``m500c`` the raw estimate converted with the Diemer & Kravtsov 2015 concentrations at the
    cluster's z (the card's where the catalogue has none), ``mf_*`` the matched filter's
    estimate, S/N and ln M error, and ``flag`` ``ok`` or the problems found, ';'-joined.
    """
    t0 = time.perf_counter()
    model = read_model_dir(model_dir)
    card, mf = model["card"], model["filter"]
    table = read_catalogue(catalogue_path)
    clash = [c for c in table.columns if c in OUTPUT_COLUMNS]
    if clash:
        log.warning(
            "catalogue %s: its column(s) %s are renamed <name>_input (szmass writes its own)",
            catalogue_path,
            ", ".join(clash),
        )
        table = table.rename(columns={c: f"{c}_input" for c in clash})
    z = catalogue_z(table, model, catalogue_path)
    sky_map = read_sky_map(map_path, weights_path=weights_path, unit=unit)
    beam = check_beam(
        card,
        beam_fwhm_arcmin=beam_fwhm_arcmin
        if beam_fwhm_arcmin is not None
        else sky_map.beam_fwhm_arcmin,
        map_path=sky_map.path,
    )
    _check_noise(sky_map, beam=beam, card=card)
    timings = {"read_inputs": time.perf_counter() - t0}

    m_est, mf_amp, cutout_flags = _measure(sky_map, table, z, model, order, threads, timings)
    t1 = time.perf_counter()
    n = len(table)
    outside = np.array([f == OUTSIDE for f in cutout_flags])
    m_est[outside] = np.nan
    mf_amp[outside] = np.nan
    filt = apply_calibration(mf["calibration"], amplitude=mf_amp, amplitude_err=mf["sigma"])
    cal = model["calibration"]
    result = table.copy()
    result["m200c"] = m_est
    network_intervals = interval_columns(m_est, model["belt"])
    for column in INTERVAL_COLUMNS:
        result[column] = network_intervals[column]
    result["m200c_cal"] = (
        apply_calibration(cal, amplitude=m_est, amplitude_err=0.0)["m200c_est"] if cal else np.nan
    )
    result["m500c"] = _m500c(m_est, z, card)
    result["mf_m200c"] = filt["m200c_est"]
    mf_intervals = filter_intervals(
        mf_amp, mf["sigma"], mf["calibration"], sigma_int=card["intrinsic_scatter_ln"]
    )
    for column in INTERVAL_COLUMNS:
        result[f"mf_{column}"] = mf_intervals[column]
    result["mf_snr"] = mf_amp / mf["sigma"]
    result["mf_ln_m_err"] = filt["ln_m_err"]
    far = _far_from_filter(z, card, model["normalization"])
    result.loc[far, [c for c in OUTPUT_COLUMNS if c.startswith("mf_")]] = np.nan
    result["flag"] = _flags(cutout_flags, z, m_est, card, model["normalization"], far)
    _write(result, Path(out_path))
    timings["masses_and_write"] = time.perf_counter() - t1
    result.attrs["timings"] = timings
    counts = result["flag"].value_counts()
    log.info(
        "wrote %s: %d clusters (%s) in %.0f s",
        out_path,
        n,
        ", ".join(f"{k}: {v}" for k, v in counts.items()),
        time.perf_counter() - t0,
    )
    return result


def _measure(sky_map, table, z, model, order, threads, timings):
    """The network's raw estimate, the filter's amplitude and the cutout's flag per row, chunk
    by chunk (``z``: each row's redshift, the network's second input where it takes one); the
    stages' seconds added to ``timings``."""
    t0 = time.perf_counter()
    card = model["card"]
    npix, pixel = int(card["sky"]["npix"]), float(card["sky"]["pixel_arcmin"])
    # The network's cutouts come from the map without the scales the training maps lack; the
    # filter's from the map as it is (its weights ignore them; high-passing takes a little of
    # the clusters' own large-scale signal: -0.012 in ln M on the test map)
    ell_min = training_ell_min(card["sky"])
    planes = np.stack(
        [
            high_pass(
                sky_map.data_uk,
                pixel_arcmin=sky_map.pixel_arcmin,
                ell_lo=HIGH_PASS[0] * ell_min,
                ell_hi=HIGH_PASS[1] * ell_min,
            ),
            sky_map.data_uk,
        ]
    )
    window = apodization_window(npix, int(card["sky"]["apodization_width_pix"]))
    timings["high_pass"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        net = load_network(
            model["model_path"],
            npix=npix,
            threads=threads,
            source="its card",
            deterministic=False,
            channels=input_channels(model["normalization"]),
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    timings["load_model"] = time.perf_counter() - t0
    timings.update(cutouts=0.0, network=0.0, matched_filter=0.0)
    mf = model["filter"]
    c, n, norm = npix // 2, len(table), model["normalization"]
    m_est, mf_amp, cutout_flags = np.empty(n), np.empty(n), []
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        t0 = time.perf_counter()
        maps, flags = cutouts(
            sky_map._replace(data_uk=planes),
            table["ra"].to_numpy()[start:stop],
            table["dec"].to_numpy()[start:stop],
            npix=npix,
            pixel_arcmin=pixel,
            order=order,
        )
        t1 = time.perf_counter()
        timings["cutouts"] += t1 - t0
        windowed = window * maps  # (n, 2 planes, npix, npix)
        inputs = network_inputs(windowed[:, 0], z[start:stop], norm)
        pred = np.concatenate(
            [net.predict_on_batch(inputs[i : i + 64]) for i in range(0, len(inputs), 64)]
        )
        m_est[start:stop] = pred[:, c, c, 1] * norm["m_norm_msun"]
        t2 = time.perf_counter()
        mf_amp[start:stop] = windowed[:, 1].reshape(len(maps), -1) @ mf["weights"]
        timings["network"] += t2 - t1
        timings["matched_filter"] += time.perf_counter() - t2
        cutout_flags += flags
        log.info("%d of %d clusters measured", stop, n)
    return m_est, mf_amp, cutout_flags


def _check_noise(sky_map, *, beam: float, card: dict[str, Any]) -> None:
    """Warn when the map's white noise differs from the card's by more than NOISE_TOLERANCE."""
    noise = white_noise_uk_arcmin(sky_map, beam_fwhm_arcmin=beam)
    trained_noise = float(card["sky"]["noise_uk_arcmin"])
    if noise is None:
        log.warning("map %s: its white-noise level could not be measured", sky_map.path)
    elif abs(noise - trained_noise) > NOISE_TOLERANCE * trained_noise:
        log.warning(
            "map %s: white noise %.2f uK-arcmin, the model was trained with %.2f: its "
            "estimates and their spread are not those of the evaluation",
            sky_map.path,
            noise,
            trained_noise,
        )
    else:
        log.info(
            "map %s: white noise %.2f uK-arcmin (model: %.2f)", sky_map.path, noise, trained_noise
        )


def _m500c(m200c: np.ndarray, z: np.ndarray, card: dict[str, Any]) -> np.ndarray:
    """M500c [Msun] of each positive estimate at its z (NaN elsewhere), one colossus call per
    distinct z."""
    cosmo = card["cosmology"]
    out = np.full(len(m200c), np.nan)
    good = np.isfinite(m200c) & (m200c > 0)
    for zi in np.unique(z[good]):
        sel = good & (z == zi)
        out[sel] = m200c_to_m500c(m200c[sel], z=float(zi), cosmo=cosmo)
    return out


def _write(table: pd.DataFrame, path: Path) -> None:
    """CSV, or a FITS binary table when the name ends in .fits; written beside and renamed."""
    if path.suffix.lower() != ".fits":
        write_csv_atomic(table, path)
        return
    from astropy.table import Table

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.fits")
    # FITS column names: letters, digits and _ (astropy cannot read back e.g. pandas'
    # "Unnamed: 0" index column)
    safe = {c: re.sub(r"[^A-Za-z0-9_]", "_", str(c)) for c in table.columns}
    Table.from_pandas(table.rename(columns=safe)).write(tmp, overwrite=True)
    os.replace(tmp, path)


def describe(model_dir: str | os.PathLike) -> str:
    """The model card, as lines a person reads (``szmass info``)."""
    model = read_model_dir(model_dir)
    card = model["card"]
    sky, masses = card["sky"], card["training_masses_m200c_1e14"]
    lines = [
        f"model {model['dir']} (szmass {card['szmass_version']}, training "
        f"{card['training_digest']})",
        f"  sky: {sky['freq_ghz']:g} GHz, beam {sky['beam_fwhm_arcmin']:g}' FWHM, white noise "
        f"{sky['noise_uk_arcmin']:g} uK-arcmin, {sky['npix']}x{sky['npix']} cutouts of "
        f"{sky['pixel_arcmin']:g}'",
        f"  clusters: z {card['redshift']['min']:g}-{card['redshift']['max']:g}"
        f"{' (a network input)' if card.get('z_input') else ''}, M200c "
        f"{masses['min']:g}-{masses['max']:g}e14 Msun ({masses['sampling']}), intrinsic "
        f"scatter {card['intrinsic_scatter_ln']:g} in ln Y",
        f"  network: base width {card['model'].get('base_filters')}, best epoch "
        f"{card['best_epoch']}, {'early stopping' if card['stopped_early'] else 'epoch cap'}",
    ]
    for name, estimators in card.get("evaluation", {}).items():
        for estimator, stats in estimators.items():
            if {"mean", "sigma", "robust_half_width"} <= set(stats):
                lines.append(
                    f"  {name}, {estimator}: ln(M_est/M_true) mean {stats['mean']:+.3f}, sigma "
                    f"{stats['sigma']:.3f}, 16-84% half-width {stats['robust_half_width']:.3f}"
                )
    lines.append(
        f"  matched filter: fixed scale M200c {model['filter']['fixed_m200c_msun'] / 1e14:g}e14"
    )
    belt = model["belt"]
    lines.append(
        "  intervals: the network's from a belt of "
        f"{min(belt['n_maps'])}-{max(belt['n_maps'])} validation maps per mass, "
        f"M200c {np.exp(belt['ln_m200c'][0]) / 1e14:g}-{np.exp(belt['ln_m200c'][-1]) / 1e14:g}e14"
        if belt
        else "  intervals: the filter's only (this model's calibration.json has no belt)"
    )
    return "\n".join(lines)
