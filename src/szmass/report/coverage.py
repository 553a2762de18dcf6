"""How often the per-cluster intervals (``szmass.intervals``) hold the true mass, on every test
set, for the network and the matched filter (issue 14): per set, and per mass bin (each true
mass of a grid set; bins of true mass on the scatter and realistic sets).
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..intervals import INTERVAL_COLUMNS, coverage

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
