"""The user's cluster list: CSV or a FITS table with ``name``, ``ra``, ``dec`` [deg] and an
optional ``z``; every other column passes through to the output catalogue."""

import os
from pathlib import Path

import numpy as np
import pandas as pd

#: Columns the catalogue must have, and the optional one.
REQUIRED = ("name", "ra", "dec")
OPTIONAL = ("z",)


class InputError(ValueError):
    """A user's map, catalogue or model that cannot be used, with the file (and column, row or
    value) named."""


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".fits", ".fit", ".fts"):
        from astropy.table import Table

        table = Table.read(path)
        return table.to_pandas()
    return pd.read_csv(path)


def read_catalogue(path: str | os.PathLike) -> pd.DataFrame:
    """The catalogue as a table, coordinates checked; ``ra`` wrapped into [0, 360).

    Column names are matched without regard to case (``RA``, ``Dec``). Raises InputError
    naming the file, and the column or the (1-based data) row at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"catalogue {path} does not exist")
    try:
        table = _read_table(path)
    except Exception as err:
        raise InputError(f"catalogue {path} cannot be read: {err}") from err
    lower = {c.lower(): c for c in table.columns}
    missing = [c for c in REQUIRED if c not in lower]
    if missing:
        raise InputError(
            f"catalogue {path} lacks the column(s) {', '.join(missing)} "
            f"(it has: {', '.join(map(str, table.columns))}); name, ra and dec [deg] are needed"
        )
    table = table.rename(columns={lower[c]: c for c in (*REQUIRED, *OPTIONAL) if c in lower})
    if len(table) == 0:
        raise InputError(f"catalogue {path} has no rows")
    for column in ("ra", "dec", *(c for c in OPTIONAL if c in table)):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))
        if column != "z" and bad.size:
            raise InputError(
                f"catalogue {path}, row {bad[0] + 1}: {column} = {table[column].iloc[bad[0]]!r} "
                f"is not a number ({bad.size} such row(s))"
            )
        table[column] = values.astype(float)
    dec = table["dec"].to_numpy()
    out = np.flatnonzero(np.abs(dec) > 90)
    if out.size:
        raise InputError(
            f"catalogue {path}, row {out[0] + 1}: dec = {dec[out[0]]} lies outside [-90, 90] deg"
        )
    if "z" in table:
        z = table["z"].to_numpy()
        negative = np.flatnonzero(z < 0)
        if negative.size:
            raise InputError(f"catalogue {path}, row {negative[0] + 1}: z = {z[negative[0]]} < 0")
    table["ra"] = np.mod(table["ra"].to_numpy(), 360.0)
    table["name"] = table["name"].astype(str).str.strip()
    return table.reset_index(drop=True)
