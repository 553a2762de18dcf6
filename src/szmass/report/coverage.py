"""How often the per-cluster intervals (``szmass.intervals``) hold the true mass, on every test
set, for the network and the matched filter (issue 14): per set, and per mass bin (each true
mass of a grid set; bins of true mass on the scatter and realistic sets), and the claim rows
that judge them (``coverage_claims``, in the table of ``claims``).
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..intervals import INTERVAL_COLUMNS, coverage
from .claim_rows import claim_row, unassessed

#: Edges [1e14 Msun] of the true-mass bins of the sets that are not on the mass grid.
MASS_BIN_EDGES_1E14 = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, np.inf)
#: Bins with fewer maps than this are left out of the per-bin figures.
MIN_BIN_MAPS = 20


def has_intervals(table: pd.DataFrame) -> bool:
    """Whether a predictions table carries intervals (a model calibrated without a belt, or an
    older table, does not)."""
    return set(INTERVAL_COLUMNS) <= set(table.columns) and table["m200c_lo16"].notna().any()


def mass_bins(table: pd.DataFrame, *, grid: bool) -> list[tuple[str, float, pd.DataFrame]]:
    """(label, representative mass [Msun], rows) per mass bin."""
    m = table["m200c_true"].to_numpy(float)
    if grid:
        return [(f"{v / 1e14:g}", float(v), table[m == v]) for v in np.unique(m)]
    out = []
    edges = np.asarray(MASS_BIN_EDGES_1E14) * 1e14
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = table[(m >= lo) & (m < hi)]
        if len(rows) >= MIN_BIN_MAPS:
            label = f"{lo / 1e14:g}-{hi / 1e14:g}" if np.isfinite(hi) else f">={lo / 1e14:g}"
            out.append((label, float(np.median(rows["m200c_true"])), rows))
    return out


def set_coverage(table: pd.DataFrame, *, grid: bool) -> dict[str, Any]:
    """``intervals.coverage`` of a whole set and of each mass bin."""
    pit = table["pit"] if "pit" in table else None
    out = coverage(table, pit=pit)
    out["bins"] = [
        {"bin": label, "m200c": mass, **coverage(rows, pit=None if pit is None else rows["pit"])}
        for label, mass, rows in mass_bins(table, grid=grid)
    ]
    return out


def coverage_summary(
    tables: Mapping[str, Mapping[str, pd.DataFrame]], grid_sets: tuple[str, ...]
) -> dict[str, Any]:
    """{estimator: {set: set_coverage}} for the estimators' tables that carry intervals;
    ``tables`` maps an estimator ("network", "matched_filter") to its tables by set."""
    return {
        estimator: {
            name: set_coverage(t, grid=name in grid_sets)
            for name, t in by_set.items()
            if has_intervals(t)
        }
        for estimator, by_set in tables.items()
        if any(has_intervals(t) for t in by_set.values())
    }


def markdown_lines(block: Mapping[str, Any]) -> list[str]:
    """The coverage tables of ``summary.md``: per estimator and set, then per mass bin."""
    if not block:
        return []
    lines = [
        "",
        "## Intervals: how often they hold the true mass",
        "",
        "| estimator | set | maps | in 68% | in 95% | median 68% width (ln M) | open | PIT KS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for estimator, sets in block.items():
        for name, c in sets.items():
            lines.append(
                f"| {estimator} | {name} | {c['n']} | {c['coverage_68']:.3f} | "
                f"{c['coverage_95']:.3f} | {c['median_width_68_ln']:.3f} | "
                f"{c['open_fraction']:.2f} | {c.get('pit_ks', float('nan')):.3f} |"
            )
    lines += [
        "",
        "| estimator | set | mass bin [1e14] | maps | in 68% | in 95% |",
        "|---|---|---|---|---|---|",
    ]
    for estimator, sets in block.items():
        for name, c in sets.items():
            for b in c["bins"]:
                lines.append(
                    f"| {estimator} | {name} | {b['bin']} | {b['n']} | {b['coverage_68']:.3f} | "
                    f"{b['coverage_95']:.3f} |"
                )
    return lines


# --- the claims (issue 14) ---------------------------------------------------------------

#: Issue 14: the intervals' coverage, nominal +- tolerance, and how close their median 68%
#: width must come to the estimates' own 16-84% spread on the no-scatter set.
COVERAGE_TARGETS = {68: (0.6827, 0.03), 95: (0.9545, 0.02)}
WIDTH_TOLERANCE = 0.10
#: The estimators of the coverage block, as the claims name them.
ESTIMATOR_LABELS = {"network": "mResUNet", "matched_filter": "matched filter"}


def _coverage_text(values: Mapping[str, float]) -> str:
    return ", ".join(f"{v:.3f} ({k})" for k, v in values.items())


def coverage_claims(summary: dict, **_: object) -> list[dict]:
    """Issue 14: each estimator's 68% and 95% intervals hold the truth at their nominal rate on
    the scatter sets and in every trained and interpolated mass bin; they are as narrow as the
    estimates' spread; at extrapolated masses they do not claim a precision they lack."""
    out = []
    for estimator, sets in summary.get("coverage", {}).items():
        label = ESTIMATOR_LABELS.get(estimator, estimator)
        scatter = {n: c for n, c in sets.items() if n.startswith("scatter")}
        bins = {
            f"{n} {b['bin']}e14": b
            for n in ("trained", "interpolated")
            for b in sets.get(n, {}).get("bins", [])
        }
        for level, (nominal, tol) in COVERAGE_TARGETS.items():
            key = f"coverage_{level}"
            if scatter:
                values = {n: c[key] for n, c in scatter.items()}
                out.append(
                    claim_row(
                        f"{label}: {level}% intervals, scatter sets",
                        f"(issue 14) hold the truth in {nominal:.3f} ± {tol:g} of maps",
                        _coverage_text(values),
                        all(abs(v - nominal) <= tol for v in values.values()),
                    )
                )
            if bins:
                worst = max(bins, key=lambda b: abs(bins[b][key] - nominal))
                out.append(
                    claim_row(
                        f"{label}: {level}% intervals, every trained and interpolated mass",
                        f"(issue 14) {nominal:.3f} ± {tol:g} in every mass bin",
                        f"worst {bins[worst][key]:.3f} ({worst}); "
                        f"{sum(abs(b[key] - nominal) <= tol for b in bins.values())} of "
                        f"{len(bins)} bins within",
                        all(abs(b[key] - nominal) <= tol for b in bins.values()),
                        _binomial_note(bins.values(), key, nominal),
                    )
                )
        out += _width_claim(summary, estimator, label, sets)
        extra = sets.get("extrapolated", {}).get("bins", [])
        if extra:
            nominal, tol = COVERAGE_TARGETS[68]
            out.append(
                claim_row(
                    f"{label}: 68% intervals at extrapolated masses",
                    "(issue 14) wider or open, not falsely precise",
                    ", ".join(
                        f"{b['coverage_68']:.2f} ({b['bin']}e14, {b['open_fraction']:.0%} open)"
                        for b in extra
                    ),
                    all(b["coverage_68"] >= nominal - tol for b in extra),
                )
            )
        if "realistic" in sets:
            c = sets["realistic"]
            out.append(
                claim_row(
                    f"{label}: intervals on the realistic profiles",
                    "(issue 14) reported, not tuned",
                    f"{c['coverage_68']:.3f} in 68%, {c['coverage_95']:.3f} in 95%",
                    None,
                )
            )
    return out


def _binomial_note(bins: Iterable[Mapping], key: str, nominal: float) -> str:
    """How far the bins lie from nominal in units of their own binomial noise: a bin of n
    maps scatters by sqrt(p (1 - p) / n) from its test maps alone (0.033 at 68% for 200)."""
    pulls = [(b[key] - nominal) / math.sqrt(nominal * (1 - nominal) / b["n"]) for b in bins]
    n_min = min(b["n"] for b in bins)
    return (
        f"binomial noise of a {n_min}-map bin: {math.sqrt(nominal * (1 - nominal) / n_min):.3f}; "
        f"bins' (coverage - nominal) / noise: max abs {max(map(abs, pulls)):.1f}, "
        f"chi2 {sum(x * x for x in pulls):.1f} for {len(pulls)} bins"
    )


def _width_claim(summary: dict, estimator: str, label: str, sets: Mapping) -> list[dict]:
    """The median 68% width on the no-scatter set against the estimates' 16-84% spread."""
    fits = (
        summary["scatter"]["fits"]
        if estimator == "network"
        else (summary.get("baseline", {}).get("scatter_fits", {}))
    )
    name = next((n for n in sets if n.startswith("scatter") and float(n[7:]) == 0), None)
    fit = fits.get(name, {}) if name else {}
    if "robust_half_width" not in fit:
        return []
    spread = 2 * fit["robust_half_width"]
    width = sets[name]["median_width_68_ln"]
    claim = f"{label}: 68% interval width, no-scatter set"
    paper = f"(issue 14) median width within {WIDTH_TOLERANCE:.0%} of the estimates' 16-84% spread"
    if not (spread > 0 and math.isfinite(width)):
        row = claim_row(claim, paper, f"{width:.3g} vs spread {spread:.3g}", None)
        return [unassessed(row, "the spread is 0 or the median width is not finite")]
    return [
        claim_row(
            claim,
            paper,
            f"{width:.3f} vs spread {spread:.3f} ({width / spread - 1:+.0%})",
            abs(width / spread - 1) <= WIDTH_TOLERANCE,
            "the intervals carry the intrinsic scatter of the validation maps; this set has none",
        )
    ]
