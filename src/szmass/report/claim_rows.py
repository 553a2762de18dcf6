"""One row of the claims table (``claims``, and the coverage and redshift claims beside their
statistics in ``coverage`` and ``redshift``): claim, the paper's value, ours, the verdict."""

import math
from collections.abc import Iterable

#: The verdict of a claim this run cannot judge (too few maps or clusters, a smoke test).
NOT_ASSESSED = "not assessed"


def claim_row(
    claim: str,
    paper: str,
    ours: str,
    agrees: bool | None,
    note: str = "",
    *,
    medians: Iterable[float | None] = (),
) -> dict:
    """One row of the table; ``medians`` are the median estimates (or M_est/M_true) the
    verdict rests on: one that is <= 0 or not finite makes the row "not assessed"."""
    verdict = {True: "agrees", False: "differs", None: "n/a"}[agrees]
    row = {"claim": claim, "paper": paper, "ours": ours, "verdict": verdict, "note": note}
    bad = [m for m in medians if m is None or not (math.isfinite(m) and m > 0)]
    if bad:
        value = "missing" if bad[0] is None else f"{bad[0]:.3g}"
        return unassessed(row, f"a median estimate is {value}, <= 0 or not finite")
    return row


def unassessed(row: dict, reason: str) -> dict:
    """``row`` with verdict "not assessed" and ``reason`` first in its note."""
    note = f"{NOT_ASSESSED}: {reason}" + (f"; {row['note']}" if row["note"] else "")
    return {**row, "verdict": NOT_ASSESSED, "note": note}
