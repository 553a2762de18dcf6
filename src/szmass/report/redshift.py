"""Evaluation by redshift (issue 16; SPEC §7, "Redshift range"): when a test set's maps span
more than one z (``cluster.redshift`` a distribution), the bias, width and coverage of
ln(M_est/M_true) per z bin, pooled over mass and per mass bin, for the network (raw) and the
matched filter on the same maps, with the filter's median S/N; and, per z bin, whether the
network meets issue 16's target against the filter (``target_bins``) and its claim row
(``redshift_claims``, in the table of ``claims``). A run at one fixed z has no such block.

Default z bins (D): edges at multiples of ``Z_BIN_WIDTH`` (0.2, ``evaluation.redshift_bin_width``)
inside the maps' z range rounded outward to ``Z_ROUND``; an end bin narrower than half a width
is merged into its neighbour (0.2-1.5 gives 0.2-0.4, ..., 1.0-1.2, 1.2-1.5). Equal-width bins
with round edges read the same in every set and run, and a uniform z draw fills them equally;
equal-count bins would move their edges from set to set.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..intervals import coverage
from .claim_rows import claim_row, unassessed
from .coverage import MIN_BIN_MAPS, has_intervals, mass_bins

#: Width of the default z bins (``evaluation.redshift_bin_width``, D).
Z_BIN_WIDTH = 0.2
#: The outer bin edges are the maps' z range rounded outward to a multiple of this.
Z_ROUND = 0.05
#: Issue 16's target in every z bin where the filter's median S/N exceeds ``TARGET_MIN_SNR``:
#: the network's abs(mean ln ratio) at most ``TARGET_MAX_ABS_MEAN_LN`` and its fitted width at
#: most (1 + ``TARGET_WIDTH_TOLERANCE``) times the filter's (narrower is never a failure).
TARGET_MAX_ABS_MEAN_LN = 0.03
TARGET_WIDTH_TOLERANCE = 0.10
TARGET_MIN_SNR = 5.0
#: The estimators of the block: key -> label in the tables.
ESTIMATORS = {"network": "mResUNet (raw)", "matched_filter": "matched filter"}
#: The mass bin of a row pooled over every mass.
ALL_MASSES = "all"


def spans_redshifts(table: pd.DataFrame) -> bool:
    """Whether a predictions table's maps lie at more than one z."""
    return "z" in table and table["z"].nunique() > 1


def redshift_edges(z: Sequence[float] | np.ndarray, *, width: float = Z_BIN_WIDTH) -> np.ndarray:
    """The z bin edges for maps at redshifts ``z`` (see the module's docstring)."""
    z = np.asarray(z, dtype=float)
    z = z[np.isfinite(z)]
    if not z.size or width <= 0:
        raise ValueError(f"z bins need finite redshifts and a width > 0 (got width {width})")
    lo = np.floor(z.min() / Z_ROUND + 1e-9) * Z_ROUND
    hi = max(np.ceil(z.max() / Z_ROUND - 1e-9) * Z_ROUND, lo + Z_ROUND)
    inner = np.arange(np.ceil(lo / width + 1e-9), np.floor(hi / width - 1e-9) + 1) * width
    edges = [lo, *(e for e in inner if lo + 1e-9 < e < hi - 1e-9), hi]
    if len(edges) > 2 and edges[1] - lo <= width / 2 + 1e-9:
        del edges[1]
    if len(edges) > 2 and hi - edges[-2] <= width / 2 + 1e-9:
        del edges[-2]
    return np.round(np.asarray(edges), 10)


def signal_to_noise(table: pd.DataFrame) -> np.ndarray | None:
    """The filter's S/N per map: ``snr`` (its fixed-scale amplitude over that amplitude's
    noise, the amplitude its mass comes from), else ``amplitude / amplitude_err``; None for a
    table without either (the network's)."""
    if "snr" in table:
        return table["snr"].to_numpy(float)
    if {"amplitude", "amplitude_err"} <= set(table.columns):
        return table["amplitude"].to_numpy(float) / table["amplitude_err"].to_numpy(float)
    return None


def estimator_stats(rows: pd.DataFrame, *, fit: Callable[[pd.DataFrame], dict]) -> dict:
    """One estimator in one bin: ``fit(rows)`` (``summary.ln_ratio_fit``: n, mean ln ratio
    and its error, fitted sigma, 16-84% half-width), the intervals' 68/95% coverage
    (``intervals.coverage``) where the table has them, and the median S/N where it has one."""
    out = dict(fit(rows))
    if has_intervals(rows):
        c = coverage(rows)
        out.update({k: c[k] for k in ("coverage_68", "coverage_95", "median_width_68_ln")})
    snr = signal_to_noise(rows)
    if snr is not None and np.isfinite(snr).any():
        out["median_snr"] = float(np.nanmedian(snr))
    if "snr_best_scale" in rows:
        out["median_snr_best_scale"] = float(np.nanmedian(rows["snr_best_scale"]))
    return out


def _z_groups(table: pd.DataFrame, edges: np.ndarray) -> list[pd.DataFrame]:
    """The rows of each z bin [edges[i], edges[i + 1]) (the last bin holds its upper edge)."""
    idx = np.searchsorted(edges[1:-1], table["z"].to_numpy(float), side="right")
    return [table[idx == i] for i in range(len(edges) - 1)]


def _cells(table: pd.DataFrame, *, grid: bool) -> dict[str, tuple[float, pd.DataFrame]]:
    """{mass bin: (median true mass, rows)}: every mass pooled, then each mass bin
    (``coverage.mass_bins``) of at least ``MIN_BIN_MAPS`` maps."""
    out = {ALL_MASSES: (float(np.median(table["m200c_true"])), table)}
    for label, mass, rows in mass_bins(table, grid=grid):
        if len(rows) >= MIN_BIN_MAPS:
            out[label] = (mass, rows)
    return out


def set_redshift_bins(
    tables: Mapping[str, pd.DataFrame],
    edges: np.ndarray,
    *,
    grid: bool,
    fit: Callable[[pd.DataFrame], dict],
) -> list[dict[str, Any]]:
    """One test set's rows, per z bin of at least ``MIN_BIN_MAPS`` maps and mass bin (pooled
    first): {z_bin, z_lo, z_hi, z_median, mass_bin, m200c, n, then one ``estimator_stats``
    per estimator in ``tables`` (estimator -> that set's predictions, the same maps)}."""
    groups = {name: _z_groups(t, edges) for name, t in tables.items()}
    first = next(iter(tables))
    rows = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        if len(groups[first][i]) < MIN_BIN_MAPS:
            continue
        cells = {name: _cells(g[i], grid=grid) for name, g in groups.items()}
        for label, (mass, part) in cells[first].items():
            row = {
                "z_bin": f"{lo:g}-{hi:g}",
                "z_lo": float(lo),
                "z_hi": float(hi),
                "z_median": float(np.median(part["z"])),
                "mass_bin": label,
                "m200c": mass,
                "n": len(part),
            }
            for name, by_label in cells.items():
                if label in by_label:
                    row[name] = estimator_stats(by_label[label][1], fit=fit)
            rows.append(row)
    return rows


def redshift_summary(
    tables: Mapping[str, Mapping[str, pd.DataFrame]],
    grid_sets: Sequence[str],
    *,
    fit: Callable[[pd.DataFrame], dict],
    bin_width: float = Z_BIN_WIDTH,
) -> dict[str, Any] | None:
    """The ``redshift`` block of the summary, or None when no grid or scatter set spans more
    than one z (a fixed-z run; the realistic set's own z spread is not the simulation's).

    ``tables`` maps an estimator ("network", "matched_filter") to its predictions by set;
    every set of the network's that spans more than one z is binned, with the filter's table
    of the same set where there is one. The edges (``redshift_edges``) are common to all sets.
    """
    net = tables["network"]
    names = [
        n for n in net if (n in grid_sets or n.startswith("scatter")) and spans_redshifts(net[n])
    ]
    if not names:
        return None
    edges = redshift_edges(
        np.concatenate([net[n]["z"].to_numpy(float) for n in names]), width=bin_width
    )
    sets = {}
    for name in names:
        by_estimator = {e: t[name] for e, t in tables.items() if name in t}
        sets[name] = {
            "z_range": [float(net[name]["z"].min()), float(net[name]["z"].max())],
            "bins": set_redshift_bins(by_estimator, edges, grid=name in grid_sets, fit=fit),
        }
    return {"bin_width": bin_width, "edges": edges.tolist(), "sets": sets}


def target_bins(bins: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Issue 16's target per z bin (the rows pooled over mass): the filter's median S/N,
    whether it exceeds ``TARGET_MIN_SNR`` (``assessed``), the network's mean ln ratio and its
    error, the ratio of its fitted width to the filter's, and whether each is within target.
    A bin whose network fit failed fails; one whose filter fit failed is not assessed."""
    out = []
    for b in bins:
        if b["mass_bin"] != ALL_MASSES or "matched_filter" not in b:
            continue
        net, mf = b["network"], b["matched_filter"]
        snr = mf.get("median_snr", float("nan"))
        row = {"z_bin": b["z_bin"], "median_snr": snr, "assessed": bool(snr > TARGET_MIN_SNR)}
        row["median_ratio"] = net.get("median_ratio")
        if "sigma" not in mf:
            row["assessed"] = False
        elif "sigma" not in net:
            row.update(bias_ok=False, width_ok=False, error=net.get("error", "no fit"))
        else:
            ratio = net["sigma"] / mf["sigma"] if mf["sigma"] > 0 else float("inf")
            row.update(mean=net["mean"], mean_err=net["mean_err"], width_ratio=ratio)
            row["bias_ok"] = abs(net["mean"]) <= TARGET_MAX_ABS_MEAN_LN
            row["width_ok"] = ratio <= 1 + TARGET_WIDTH_TOLERANCE
        out.append(row)
    return out


def markdown_lines(block: Mapping[str, Any] | None) -> list[str]:
    """The ``summary.md`` tables of the block: one per set, a row per z bin and mass bin."""
    if not block:
        return []
    lines = []
    for name, s in block["sets"].items():
        lines += [
            "",
            f"## {name}: ln(M_est/M_true) by redshift",
            "",
            "| z bin | mass bin [1e14] | n | estimator | mean | fitted sigma | 16-84% half-width "
            "| in 68% | in 95% | filter S/N |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in s["bins"]:
            for key, label in ESTIMATORS.items():
                if key in b:
                    lines.append(_markdown_row(b, label, b[key]))
    return lines


def _markdown_row(b: Mapping[str, Any], label: str, f: Mapping[str, Any]) -> str:
    def num(key: str, fmt: str) -> str:
        value = f.get(key)
        return "—" if value is None or not np.isfinite(value) else format(value, fmt)

    mean = f"{f['mean']:+.3f} ± {f['mean_err']:.3f}" if "mean" in f else f.get("error", "—")
    sigma = f"{f['sigma']:.3f} ± {f['sigma_err']:.3f}" if "sigma" in f else "—"
    return (
        f"| {b['z_bin']} | {b['mass_bin']} | {b['n']} | {label} | {mean} | {sigma} | "
        f"{num('robust_half_width', '.3f')} | {num('coverage_68', '.3f')} | "
        f"{num('coverage_95', '.3f')} | {num('median_snr', '.1f')} |"
    )


# --- the claim (issue 16) -----------------------------------------------------------------


def redshift_claims(summary: dict, **_: object) -> list[dict]:
    """Issue 16, per scatter set: in every z bin (pooled over mass) where the filter's median
    S/N exceeds ``TARGET_MIN_SNR``, the network's mean ln ratio within
    ``TARGET_MAX_ABS_MEAN_LN`` of 0 and its fitted width at most ``TARGET_WIDTH_TOLERANCE``
    above the filter's. The grid sets' z bins are in the tables, not judged: their per-mass
    cells are too small for a 0.03 test."""
    out = []
    for name, block in summary.get("redshift", {}).get("sets", {}).items():
        if not name.startswith("scatter"):
            continue
        bins = target_bins(block["bins"])
        if not bins:
            continue
        out.append(_redshift_claim(name, bins))
    return out


def _redshift_claim(name: str, bins: Sequence[Mapping]) -> dict:
    """One set's row of ``redshift_claims`` from its ``target_bins``."""
    tol, snr_min = TARGET_WIDTH_TOLERANCE, TARGET_MIN_SNR
    claim = f"{name}: bias and width per z bin vs the matched filter (beyond the paper)"
    paper = (
        f"(issue 16) abs(mean ln ratio) <= {TARGET_MAX_ABS_MEAN_LN} and width <= "
        f"{1 + tol:g}x the filter's in every z bin where its median S/N > {snr_min:g}"
    )
    judged = [b for b in bins if b["assessed"]]
    skipped = [f"{b['z_bin']} (S/N {b['median_snr']:.1f})" for b in bins if not b["assessed"]]
    note = f"not judged, filter S/N <= {snr_min:g}: {', '.join(skipped)}" if skipped else ""
    if not judged:
        row = claim_row(claim, paper, f"{len(bins)} z bins, none judged", None, note)
        return unassessed(row, f"no z bin where the filter's median S/N > {snr_min:g}")
    failed = [b for b in judged if not (b["bias_ok"] and b["width_ok"])]
    parts = [f"{len(judged) - len(failed)} of {len(judged)} z bins within"]
    fitted = [b for b in judged if "mean" in b]
    if fitted:
        worst = max(fitted, key=lambda b: abs(b["mean"]))
        wide = max(fitted, key=lambda b: b["width_ratio"])
        parts.append(
            f"worst bias {worst['mean']:+.3f} ± {worst['mean_err']:.3f} ({worst['z_bin']}), "
            f"worst width ratio {wide['width_ratio']:.2f} ({wide['z_bin']})"
        )
    if failed:
        parts.append("outside: " + ", ".join(_redshift_failure(b) for b in failed))
    return claim_row(
        claim,
        paper,
        "; ".join(parts),
        not failed,
        note,
        medians=[b["median_ratio"] for b in judged],
    )


def _redshift_failure(b: Mapping) -> str:
    if "error" in b:
        return f"{b['z_bin']} ({b['error']})"
    what = [f"bias {b['mean']:+.3f}"] if not b["bias_ok"] else []
    what += [f"width ratio {b['width_ratio']:.2f}"] if not b["width_ok"] else []
    return f"{b['z_bin']} ({', '.join(what)})"
