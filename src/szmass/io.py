"""Files on disk: atomic writes (Zarr stores, CSV tables, text) and checked reads of shards."""

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
import zarr

if TYPE_CHECKING:
    import pandas as pd

SHARD_VARIABLES = ("sky", "sz", "m200c", "m500c", "z", "ln_scatter")
#: Columns of a predictions table, one row per map.
PREDICTION_COLUMNS = (
    "shard",
    "realization",
    "cluster_id",
    "cluster_name",
    "z",
    "ln_scatter",
    "m200c_true",
    "m200c_est",
)


class ShardError(RuntimeError):
    """A shard is missing, unreadable or lacks what it should hold. The message names the file,
    the variable at fault where there is one, and the command that rebuilds the shard."""


def write_zarr_atomic(
    ds: xr.Dataset | Iterable[xr.Dataset], path: str | os.PathLike, *, chunk: int = 200
) -> None:
    """Write ``ds`` as a Zarr store beside ``path``, then rename it into place.

    ``ds`` may be an iterable of pieces along their first dimension, written one after
    another (cut into whole ``chunk``s; the attributes are the first piece's), so a store
    larger than memory is written a piece at a time.

    A job killed mid-write leaves only a hidden ``.<name>.tmp-<pid>`` directory (removed by
    the next write), never something at ``path``; an existing store is moved aside before the
    rename and deleted after it. Metadata are consolidated, so a plain ``xr.open_zarr`` is
    quick and silent (zarr 3 warns that consolidation is not in the v3 spec; we accept that).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    trash = path.with_name(f".{path.name}.old-{os.getpid()}")
    pieces = [ds] if isinstance(ds, xr.Dataset) else ds
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not")
            written = 0
            for piece in _whole_chunks(pieces, chunk):
                dim = next(iter(piece.dims))
                piece = piece.chunk({dim: min(chunk, piece.sizes[dim])})
                if written:
                    piece.to_zarr(tmp, mode="a", append_dim=dim, consolidated=True)
                else:
                    piece.to_zarr(tmp, mode="w", consolidated=True)
                written += 1
        if not written:
            raise ValueError(f"{path}: nothing to write (no pieces)")
        if path.exists():
            os.rename(path, trash)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)


def _whole_chunks(pieces: Iterable[xr.Dataset], chunk: int) -> Iterator[xr.Dataset]:
    """The pieces re-cut so that every one but the last spans whole ``chunk``s of their first
    dimension: an append then never writes into a chunk already written."""
    pending: list[xr.Dataset] = []
    for piece in pieces:
        pending.append(piece)
        dim = next(iter(piece.dims))
        n = sum(p.sizes[dim] for p in pending)
        if n >= chunk:
            joined = pending[0] if len(pending) == 1 else xr.concat(pending, dim)
            cut = n // chunk * chunk
            yield joined.isel({dim: slice(0, cut)})
            pending = [joined.isel({dim: slice(cut, None)})] if cut < n else []
    if pending:
        yield pending[0] if len(pending) == 1 else xr.concat(pending, next(iter(pending[0].dims)))


def open_shard(
    path: str | os.PathLike, *, variables: Iterable[str] = SHARD_VARIABLES, load: bool = True
) -> xr.Dataset:
    """Open a shard, checking it exists, holds ``variables`` with all their chunks, and (with
    ``load``, the default: a shard is ~10 MB) that every chunk decodes.

    Raises:
        ShardError: naming the file, the variable at fault where there is one, and the
            ``snakemake -f`` command that rebuilds the shard.
    """
    path = Path(path)
    if not path.exists():
        raise _shard_error(path, "does not exist")
    variables = list(variables)
    try:
        group = zarr.open_group(path, mode="r", use_consolidated=False)
    except Exception as err:  # zarr and the codecs raise many kinds for a damaged store
        raise _shard_error(path, f"corrupt, or not a Zarr store ({err})") from err
    _check_variables(path, group, variables)
    try:
        ds = xr.open_zarr(path, consolidated=True)
        if load:
            ds = ds.load()
    except Exception as err:
        # Only now, on the failure path, read each array again to name the one at fault.
        with warnings.catch_warnings():  # Snakemake's .snakemake_timestamp inside the store
            warnings.filterwarnings("ignore", message="Object at .* is not recognized")
            others = sorted(set(group.array_keys()) - set(variables))
        for name in [*variables, *others]:
            try:
                group[name][...]
            except Exception as bad:
                problem = f"variable {name!r} does not decode ({type(bad).__name__}: {bad})"
                raise _shard_error(path, problem) from bad
        raise _shard_error(path, f"corrupt, or not a Zarr store ({err})") from err
    return ds


def _check_variables(path: Path, group: zarr.Group, variables: list[str]) -> None:
    """Raise a ShardError unless ``group`` holds each of ``variables`` with all its chunks."""
    arrays, missing = {}, []
    for name in variables:
        try:
            if name in group:
                arrays[name] = group[name]
            else:
                missing.append(name)
        except Exception as err:  # damaged metadata of this one variable
            raise _shard_error(path, f"variable {name!r} is unreadable ({err})") from err
    if missing:
        raise _shard_error(path, f"variables {missing} are missing")
    for name, array in arrays.items():
        if array.nchunks_initialized != array.nchunks:
            raise _shard_error(
                path,
                f"variable {name!r} has {array.nchunks_initialized} of {array.nchunks} chunks",
            )


def _shard_error(path: Path, problem: str) -> ShardError:
    """A ShardError in two lines: the shard and its problem, then how to rebuild it.

    A rule's shard path is relative to the workflow's directory, where the command runs; an
    absolute path below the working directory is shown relative to it, as Snakemake names it.
    """
    shown = path
    if path.is_absolute():
        with contextlib.suppress(ValueError):
            shown = path.relative_to(Path.cwd())
    return ShardError(
        f"shard {path}: {problem}\n"
        f"Rebuild it with `snakemake -f {shown}` (and the run's --configfile, if it had one), "
        "then rerun the run's command."
    )


def map_cluster_names(ds: xr.Dataset) -> np.ndarray:
    """The name of each map's cluster, from a real-map shard's ``cluster_names`` attribute
    (one per ``cluster``, whose coordinate is the maps' ``cluster_id``); "" for simulated maps."""
    if "cluster_names" not in ds.attrs:
        return np.full(ds.sizes["realization"], "", dtype=object)
    name_of = dict(zip(ds.cluster.values.tolist(), ds.attrs["cluster_names"], strict=True))
    return np.array([name_of[int(c)] for c in ds.cluster_id.values], dtype=object)


def write_csv_atomic(table: "pd.DataFrame", path: str | os.PathLike) -> None:
    """Write a CSV beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a text file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
