"""Zarr shards on disk: atomic writes and checked reads."""

import os
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path

import xarray as xr

SHARD_VARIABLES = ("sky", "sz", "m200c", "m500c", "z", "ln_scatter")


class ShardError(RuntimeError):
    """A shard is missing, unreadable or lacks what it should hold; the message names it."""


def write_zarr_atomic(ds: xr.Dataset, path: str | os.PathLike, *, chunk: int = 200) -> None:
    """Write ``ds`` as a Zarr store beside ``path``, then rename it into place.

    A job killed mid-write leaves only a hidden ``.<name>.tmp-<pid>`` directory, never
    something at ``path``. Metadata are consolidated (so plain ``xr.open_zarr`` is quick
    and silent); zarr 3 warns that consolidation is not in the v3 spec, which we accept.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    dim = next(iter(ds.dims))
    ds = ds.chunk({dim: min(chunk, ds.sizes[dim])})
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not")
            ds.to_zarr(tmp, mode="w", consolidated=True)
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_shard(
    path: str | os.PathLike, *, variables: Iterable[str] = SHARD_VARIABLES
) -> xr.Dataset:
    """Open a shard lazily, checking it exists, opens and holds ``variables``.

    Raises:
        ShardError: naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ShardError(f"shard {path} does not exist")
    try:
        ds = xr.open_zarr(path, consolidated=True)
    except Exception as err:  # zarr raises many kinds for a damaged store
        raise ShardError(f"shard {path} is corrupt or not a Zarr store: {err}") from err
    missing = [v for v in variables if v not in ds]
    if missing:
        raise ShardError(f"shard {path} lacks variables {missing}")
    return ds
