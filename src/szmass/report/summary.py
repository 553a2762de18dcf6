"""Headline numbers of a run beside the paper's claims (SPEC §4 and §6; Gupta & Reichardt 2020,
arXiv:2003.06135, §4): ``summary.json`` (every number) and ``summary.md`` (a table a reader can
check at a glance).
"""

import csv
import functools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..io import open_shard, write_csv_atomic, write_text_atomic
from . import stats
from .claims import PAPER_MEAN_R, claims
from .coverage import coverage_summary, markdown_lines
from .redshift import Z_BIN_WIDTH, redshift_summary
from .redshift import markdown_lines as redshift_markdown_lines

log = logging.getLogger("szmass.summary")

GRID_SETS = ("trained", "interpolated", "extrapolated")
#: Estimates below this fraction of the true mass count as it in the robust width.
LN_FLOOR = 1e-3
#: A Y-M slope within this many standard errors of zero gives no scatter in ln M: the
#: scatter / |slope| it implies is unbounded (three clusters of equal Y give slope 0 ± 0).
MIN_SLOPE_SIGNIFICANCE = 2.0


#: The network's other estimates in its predictions tables, each summarised as an estimator of
#: its own: summary block -> (column, label in the tables).
NETWORK_ALTERNATIVES = {
    "network_calibrated": ("m200c_cal", "mResUNet (calibrated)"),
    "network_template": ("m200c_tpl", "mResUNet (template readout)"),
}


def alternative_tables(tables: Mapping[str, pd.DataFrame], column: str) -> dict[str, pd.DataFrame]:
    """The network's tables with the estimate in ``column`` (``m200c_cal``, ``m200c_tpl``) as
    ``m200c_est``; empty when the predictions do not carry it."""
    return {
        name: t.assign(m200c_est=t[column])
        for name, t in tables.items()
        if column in t and t[column].notna().all()
    }


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """A predictions table; raises naming the file if it is empty."""
    table = pd.read_csv(path)
    if table.empty:
        raise ValueError(f"predictions {path} hold no maps")
    return table


def per_mass_table(predictions: Mapping[str, pd.DataFrame], estimator: str) -> pd.DataFrame:
    """``stats.per_mass_summary`` of each grid set, stacked with ``estimator`` and ``set``
    columns; the matched filter's tables add the median best-scale S/N per mass."""
    parts = []
    for name in GRID_SETS:
        if name in predictions:
            t = predictions[name]
            part = stats.per_mass_summary(
                m_true=t["m200c_true"].values, m_est=t["m200c_est"].values
            )
            if "snr_best_scale" in t:
                snr = t.groupby("m200c_true")["snr_best_scale"].median()
                part["median_snr"] = snr.reindex(part["m_true"], method="nearest").to_numpy()
            part.insert(0, "set", name)
            part.insert(0, "estimator", estimator)
            parts.append(part)
    if not parts:
        raise ValueError(f"no grid test set among {sorted(predictions)}")
    return pd.concat(parts, ignore_index=True)


def signal_slope(sz_shard: str) -> dict[str, float]:
    """d ln(integrated SZ signal) / d ln M200c from the noise-free ``sz`` maps of a shard with
    no intrinsic scatter (SPEC §4 issue: the floor the intrinsic scatter sets)."""
    ds = open_shard(sz_shard, variables=("sz", "m200c", "ln_scatter"))
    if np.any(ds.ln_scatter.values != 0):
        raise ValueError(f"{sz_shard}: the slope needs a shard without intrinsic scatter")
    signal = stats.integrated_signal(ds.sz.values)
    return stats.log_slope(x=ds.m200c.values, y=signal)


def sz_residual_ratios(maps_paths: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per mass of the grid sets: max |mean predicted - mean true SZ map| / max |mean true|,
    and the mean residual's standard error at that pixel over the same (what noise alone
    gives; absent from maps written without ``sz_sem``)."""
    ratios, sems = {}, {}
    for path in maps_paths:
        with np.load(path) as f:
            has_sem = "sz_sem" in f.files
            for i, m in enumerate(f["m200c"]):
                key, resid = f"{m / 1e14:g}", np.abs(f["sz_pred"][i] - f["sz_true"][i])
                peak = np.max(np.abs(f["sz_true"][i]))
                ratios[key] = float(np.max(resid) / peak)
                if has_sem:
                    sems[key] = float(f["sz_sem"][i].flat[np.argmax(resid)] / peak)
    return ratios, sems


def ln_ratio_fit(table: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Gaussian fit to ln(M_est/M_true) over the positive estimates, with how many were not,
    and the robust half-width (half the 16-84 percentile range) over all of them.

    ``median_ratio`` is the median M_est/M_true over the finite estimates (NaN if none is): a
    claim whose median is <= 0 is never an agreement. A set of fewer than two maps, or with
    fewer than two positive estimates (an untrained network), gets ``error`` instead of a fit,
    said in the claims table rather than hidden as NaN.
    """
    est, true = table["m200c_est"].to_numpy(), table["m200c_true"].to_numpy()
    finite = np.isfinite(est)
    positive = finite & (est > 0)
    out: dict[str, Any] = {"n_maps": len(est), "n_nonpositive": int((~positive).sum())}
    out["median_ratio"] = float(np.median(est[finite] / true[finite])) if finite.any() else np.nan
    ratio = np.log(np.maximum(np.where(finite, est, 0) / true, LN_FLOOR))
    lo, hi = np.percentile(ratio, [16, 84])
    out["robust_half_width"] = float((hi - lo) / 2)  # estimates <= 0 rank lowest
    if len(est) < 2:
        out["error"] = f"{len(est)} map: a Gaussian fit needs at least 2"
        return out
    try:
        out.update(
            stats.gaussian_fit(np.log(est[positive] / true[positive]), n_boot=n_boot, seed=seed)
        )
    except ValueError as err:
        out["error"] = f"no fit: {err}"
    return out


def training_wall_minutes(benchmark_path: str) -> float:
    """The training job's wall time in minutes, from its Snakemake benchmark file (a TSV with a
    column ``s``; a resumed job's file holds its last call only)."""
    with open(benchmark_path) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{benchmark_path}: no 's' column of seconds (a Snakemake benchmark)")
    return float(rows[-1]["s"]) / 60.0


def training_outcome(
    model_summary_path: str,
    history_path: str,
    max_epochs: int,
    benchmark_path: str | None = None,
) -> dict:
    """How training ended: best epoch, epochs run, whether early stopping or the cap did, and
    (given the training job's benchmark file) its wall time."""
    info = json.loads(Path(model_summary_path).read_text())
    with open(history_path) as fh:
        history = list(csv.DictReader(fh))
    out = {
        "epochs_run": len(history),
        "best_epoch": info.get("best_epoch"),
        "best_val_loss": info.get("best_val_loss"),
        "stopped_by": "early stopping" if info.get("stopped_early") else "epoch cap",
        "max_epochs": max_epochs,
    }
    if benchmark_path:
        out["wall_minutes"] = training_wall_minutes(benchmark_path)
    if info.get("finetune_epochs"):  # the first phase's end, then the fine-tune's
        out["finetune_epochs"] = info["finetune_epochs"]
        out["pretrain_best_epoch"] = info.get("pretrain_best_epoch")
        out["finetune_stopped_by"] = (
            "early stopping" if info.get("finetune_stopped_early") else "its epoch count"
        )
    return out


def summarize(
    *,
    predictions: Mapping[str, str],
    maps: Sequence[str],
    no_scatter_shard: str | None,
    sigma_int: float,
    model_summary: str,
    history: str,
    max_epochs: int,
    train_masses_1e14: Sequence[float],
    out_json: str,
    out_markdown: str,
    out_per_mass: str,
    out_claims: str,
    baseline_predictions: Mapping[str, str] | None = None,
    baseline_calibration: str | None = None,
    realistic_shard: str | None = None,
    training_benchmark: str | None = None,
    sz_masses_1e14: Sequence[float] = (2, 4, 6),
    n_boot: int = 1000,
    seed: int = 0,
    smoke_test: bool = False,
    redshift_bin_width: float = Z_BIN_WIDTH,
) -> dict[str, Any]:
    """Every headline number of a run, and the table of claims, from the predictions.

    ``predictions`` / ``baseline_predictions`` map a test-set name to the network's / the
    matched filter's predictions table; ``training_benchmark``, the training job's Snakemake
    benchmark file (its wall time goes into the training claims). ``smoke_test``
    (``evaluation.smoke_test``): the training only checked that every stage runs, and no claim
    is assessed. Where the grid or scatter sets' maps span more than one z, the ``redshift``
    block bins them in z (``redshift_bin_width``, ``evaluation.redshift_bin_width``); a fixed-z
    run has none.
    """
    tables = {name: read_predictions(path) for name, path in predictions.items()}
    per_mass = per_mass_table(tables, "network")
    summary: dict[str, Any] = {
        "training": training_outcome(model_summary, history, max_epochs, training_benchmark),
        "per_mass": _per_mass_blocks(per_mass),
    }
    slope = signal_slope(no_scatter_shard) if no_scatter_shard else None
    floor = stats.scatter_floor(sigma_int=sigma_int, slope=slope["slope"]) if slope else None
    fit = {"n_boot": n_boot, "seed": seed}
    scatter = {n: ln_ratio_fit(t, **fit) for n, t in tables.items() if n.startswith("scatter")}
    summary["scatter"] = {"fits": scatter, "signal_slope": slope, "floor_sigma_int": floor}
    alternatives = {}  # block -> (per-mass table, scatter fits)
    for block, (column, _) in NETWORK_ALTERNATIVES.items():
        alt = alternative_tables(tables, column)
        if alt:
            alt_per_mass = per_mass_table(alt, block)
            alt_scatter = {
                n: ln_ratio_fit(t, **fit) for n, t in alt.items() if n.startswith("scatter")
            }
            alternatives[block] = (alt_per_mass, alt_scatter)
            summary[block] = {
                "per_mass": _per_mass_blocks(alt_per_mass),
                "scatter_fits": alt_scatter,
            }
    if baseline_predictions:
        mf_tables = {n: read_predictions(p) for n, p in baseline_predictions.items()}
        mf_per_mass = per_mass_table(mf_tables, "matched_filter")
        mf_scatter = {
            n: ln_ratio_fit(t, **fit) for n, t in mf_tables.items() if n.startswith("scatter")
        }
        summary["baseline"] = {
            "calibration": json.loads(Path(baseline_calibration).read_text())
            if baseline_calibration
            else None,
            "per_mass": _per_mass_blocks(mf_per_mass),
            "scatter_fits": mf_scatter,
            "comparison": compare(per_mass, mf_per_mass, scatter, mf_scatter),
        }
        for block, (alt_per_mass, alt_scatter) in alternatives.items():
            summary[block]["comparison"] = compare(
                alt_per_mass, mf_per_mass, alt_scatter, mf_scatter
            )
        per_mass = pd.concat([per_mass, mf_per_mass], ignore_index=True)
        noise = [f["sigma"] for n, f in mf_scatter.items() if float(n[7:]) == 0 and "sigma" in f]
        if floor is not None and noise:
            summary["scatter"]["noise_floor_matched_filter"] = noise[0]
            summary["scatter"]["floor_combined"] = stats.scatter_floor(
                sigma_int=sigma_int, slope=slope["slope"], noise_floor=noise[0]
            )
    if realistic_shard and "realistic" in tables:
        summary["realistic"] = realistic_summary(tables["realistic"], realistic_shard, **fit)
        if baseline_predictions and "realistic" in baseline_predictions:
            summary["realistic"]["matched_filter"] = realistic_summary(
                mf_tables["realistic"], realistic_shard, **fit
            )
    per_mass = pd.concat([per_mass, *(pm for pm, _ in alternatives.values())], ignore_index=True)
    summary["coverage"] = coverage_summary(
        {"network": tables, "matched_filter": mf_tables if baseline_predictions else {}},
        GRID_SETS,
    )
    by_z = redshift_summary(
        {"network": tables, "matched_filter": mf_tables if baseline_predictions else {}},
        GRID_SETS,
        fit=functools.partial(ln_ratio_fit, **fit),
        bin_width=redshift_bin_width,
    )
    if by_z:
        summary["redshift"] = by_z
    summary["sz_residual_ratio"], summary["sz_residual_sem_ratio"] = sz_residual_ratios(maps)
    summary["sz_residual_masses"] = [f"{m:g}" for m in sz_masses_1e14]
    summary["smoke_test"] = smoke_test
    summary["claims"] = claims(
        summary, sigma_int=sigma_int, train_masses_1e14=train_masses_1e14, smoke_test=smoke_test
    )
    write_csv_atomic(per_mass, out_per_mass)
    write_csv_atomic(pd.DataFrame(summary["claims"]), out_claims)
    write_text_atomic(json.dumps(_plain(summary), indent=2) + "\n", out_json)
    write_text_atomic(markdown(summary), out_markdown)
    return summary


def _per_mass_blocks(per_mass: pd.DataFrame) -> dict[str, Any]:
    blocks = {}
    for name in GRID_SETS:
        rows = per_mass[per_mass["set"] == name]
        if not rows.empty:
            blocks[name] = {
                "max_dm_over_m": float(rows["dm_over_m"].max()),
                "median_dm_over_m": float(rows["dm_over_m"].median()),
                "max_abs_pull": float(rows["pull"].abs().max()),
                "masses": rows.drop(columns=["set", "estimator"]).to_dict(orient="records"),
            }
    return blocks


def compare(
    net: pd.DataFrame, mf: pd.DataFrame, net_scatter: Mapping, mf_scatter: Mapping
) -> dict[str, Any]:
    """Network against matched filter on identical maps: per grid set, the median over masses
    of dM/M and of |bias|, and the lower of the two; per scatter set, the Gaussian widths."""
    out: dict[str, Any] = {}
    for name in GRID_SETS:
        a, b = net[net["set"] == name], mf[mf["set"] == name]
        if a.empty or b.empty:
            continue
        dm = {
            "network": float(a["dm_over_m"].median()),
            "matched_filter": float(b["dm_over_m"].median()),
        }
        bias = {
            "network": float(a["bias"].abs().median()),
            "matched_filter": float(b["bias"].abs().median()),
        }
        out[name] = {
            "median_dm_over_m": dm,
            "median_abs_bias": bias,
            "lower_dm_over_m": min(dm, key=dm.get),
            "dm_over_m_ratio_network_to_filter": dm["network"] / dm["matched_filter"],
        }
    for name, fit in net_scatter.items():
        other = mf_scatter.get(name, {})
        if "sigma" in fit and "sigma" in other:
            widths = {"network": fit["sigma"], "matched_filter": other["sigma"]}
            out[name] = {
                "width": widths,
                "robust_half_width": {
                    "network": fit["robust_half_width"],
                    "matched_filter": other["robust_half_width"],
                },
                "width_err": {"network": fit["sigma_err"], "matched_filter": other["sigma_err"]},
                "mean": {"network": fit["mean"], "matched_filter": other["mean"]},
                "median_ratio": {
                    "network": fit["median_ratio"],
                    "matched_filter": other["median_ratio"],
                },
                "narrower": min(widths, key=widths.get),
            }
    return out


def cluster_rescaling(ds) -> tuple[np.ndarray, str]:
    """Each realistic cluster's r (analytic where the shard has it, else measured from its
    noise-free map) and which one it is."""
    if "cluster_r_analytic" in ds:
        return ds.cluster_r_analytic.values, "analytic"
    return ds.cluster_r_measured.values, "measured"


def rescaled_estimates(table: pd.DataFrame, ds) -> np.ndarray:
    """r M_est per map: the map's ``cluster_id`` is looked up among the shard's cluster keys
    (catalogue rows for real cutouts, which need not be 0..n-1)."""
    r, _ = cluster_rescaling(ds)
    position = {int(key): i for i, key in enumerate(ds.cluster.values)}
    idx = np.array([position[int(c)] for c in table["cluster_id"]])
    return table["m200c_est"].to_numpy() * r[idx]


def y_m_relation(*, m200c: np.ndarray, y_cyl: np.ndarray) -> dict[str, Any]:
    """ln Y_cyl fitted against ln M200c over the realistic clusters (``stats.log_slope``) with
    the intrinsic scatter in ln M it implies, scatter / |slope|; where the clusters cannot give
    that (fewer than 3, one mass, Y <= 0, a slope consistent with zero), ``error`` says why."""
    n = np.size(m200c)
    try:
        rel = stats.log_slope(x=m200c, y=y_cyl)
    except ValueError as err:
        return {"error": f"no Y-M fit from {n} cluster{'s' if n != 1 else ''}: {err}"}
    if not abs(rel["slope"]) > MIN_SLOPE_SIGNIFICANCE * rel["slope_err"]:
        slope = f"{rel['slope']:.3g} ± {rel['slope_err']:.2g}"
        return {**rel, "error": f"the Y-M slope {slope} is consistent with zero ({n} clusters)"}
    return {**rel, "intrinsic_scatter_ln_m": rel["scatter"] / abs(rel["slope"])}


def realistic_summary(table: pd.DataFrame, shard: str, *, n_boot: int, seed: int) -> dict:
    """The realistic-profile test (SPEC §4): estimates rescaled by each cluster's r, the mean r
    beside the paper's, and the Gaussian fit to ln(r M_est / M_true); ``source`` is the
    shard's ``realistic.source`` (standin or fits)."""
    ds = open_shard(shard, variables=("cluster_m200c", "cluster_r_measured"))
    r, r_used = cluster_rescaling(ds)
    scaled = table.assign(m200c_est=rescaled_estimates(table, ds))
    out = {
        "source": ds.attrs.get("realistic_source", "standin"),
        "n_clusters": int(ds.sizes["cluster"]),
        "r_used": r_used,
        "mean_r": float(np.mean(r)),
        "mean_r_measured": float(np.mean(ds.cluster_r_measured.values)),
        "paper_mean_r": PAPER_MEAN_R,
        "fit_scaled": ln_ratio_fit(scaled, n_boot=n_boot, seed=seed),
        "fit_unscaled": ln_ratio_fit(table, n_boot=n_boot, seed=seed),
    }
    if "cluster_y_cyl" in ds:
        rel = y_m_relation(m200c=ds.cluster_m200c.values, y_cyl=ds.cluster_y_cyl.values)
        if "intrinsic_scatter_ln_m" in rel:
            out["intrinsic_scatter_ln_m"] = rel.pop("intrinsic_scatter_ln_m")
        out["y_m_relation"] = rel
    return out


def markdown(summary: dict) -> str:
    """The claims table as Markdown, with the per-mass numbers of the trained set."""
    lines = ["# szmass: this run beside the paper", ""]
    if summary.get("smoke_test"):
        lines += [
            "This run is a smoke test (`evaluation.smoke_test: true`): its training only shows",
            "that every stage runs, so no claim is assessed.",
            "",
        ]
    lines += [
        "| claim | paper | this run | verdict | note |",
        "|---|---|---|---|---|",
    ]
    for c in summary["claims"]:
        lines.append(
            f"| {c['claim']} | {c['paper']} | {c['ours']} | {c['verdict']} | {c['note']} |"
        )
    lines += _estimator_table(summary)
    lines += markdown_lines(summary.get("coverage", {}))
    lines += redshift_markdown_lines(summary.get("redshift"))
    for name, block in summary["per_mass"].items():
        lines += [
            "",
            f"## {name} masses",
            "",
            "| M200c [1e14] | n | median [1e14] | dM/M | pull | mean ln ratio |",
            "|---|---|---|---|---|---|",
        ]
        for r in block["masses"]:
            lines.append(
                f"| {r['m_true'] / 1e14:g} | {r['n']} | {r['median'] / 1e14:.3f} | "
                f"{r['dm_over_m']:.3f} | {r['pull']:+.2f} | {r['mean_ln_ratio']:+.3f} |"
            )
    return "\n".join(lines) + "\n"


def _estimator_table(summary: dict) -> list[str]:
    """The scatter sets' ln(M_est/M_true) per estimator: the network's (raw, calibrated,
    template readout) and the filter's."""
    estimators = {
        "mResUNet (raw)": summary["scatter"]["fits"],
        **{
            label: summary.get(block, {}).get("scatter_fits", {})
            for block, (_, label) in NETWORK_ALTERNATIVES.items()
        },
        "matched filter": summary.get("baseline", {}).get("scatter_fits", {}),
    }
    lines = [
        "",
        "## Scatter sets: ln(M_est/M_true) per estimator",
        "",
        "| set | estimator | mean | fitted sigma | 16-84% half-width |",
        "|---|---|---|---|---|",
    ]
    for name in summary["scatter"]["fits"]:
        for label, fits in estimators.items():
            f = fits.get(name)
            if f and "sigma" in f:
                lines.append(
                    f"| {name} | {label} | {f['mean']:+.3f} ± {f['mean_err']:.3f} | "
                    f"{f['sigma']:.3f} ± {f['sigma_err']:.3f} | {f['robust_half_width']:.3f} |"
                )
    return lines


def _plain(value):
    """JSON-ready copy: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
