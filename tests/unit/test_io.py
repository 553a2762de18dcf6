"""szmass.io: atomic Zarr writes and checked reads of shards."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from szmass.io import SHARD_VARIABLES, ShardError, open_shard, write_zarr_atomic
from szmass.sky.simulate import shard_dataset

N, NPIX = 6, 8


def _shard(seed: int = 0) -> xr.Dataset:
    """A small dataset with the shard schema (shard_dataset of random maps)."""
    rng = np.random.default_rng(seed)
    sims = {
        "sky": rng.standard_normal((N, NPIX, NPIX)).astype(np.float32),
        "sz": rng.standard_normal((N, NPIX, NPIX)).astype(np.float32),
        "m200c": np.full(N, 3e14),
        "m500c": np.full(N, 2e14),
        "z": np.full(N, 0.7),
        "ln_scatter": rng.standard_normal(N),
    }
    attrs = {"set": "grid", "seed": 7, "sky_npix": NPIX, "mass_range_1e14": [2, 7]}
    return shard_dataset(sims, realizations=np.arange(N), pixel_arcmin=0.25, attrs=attrs)


@pytest.fixture
def shard_path(tmp_path):
    """A valid shard on disk, written in chunks of 2 realizations (so 3 chunks per variable)."""
    path = tmp_path / "sims" / "M1.zarr"
    write_zarr_atomic(_shard(), path, chunk=2)
    return path


def _siblings(path):
    return sorted(os.listdir(path.parent))


# --- round trip ---------------------------------------------------------------------------


def test_round_trip(shard_path):
    ds = open_shard(shard_path)
    xr.testing.assert_identical(ds.load(), _shard())
    assert ds.sky.dtype == np.float32
    assert _siblings(shard_path) == ["M1.zarr"]  # no temporary left beside it


def test_overwrite_replaces_the_store(shard_path):
    write_zarr_atomic(_shard(seed=1), shard_path, chunk=2)
    xr.testing.assert_identical(open_shard(shard_path).load(), _shard(seed=1))
    assert _siblings(shard_path) == ["M1.zarr"]


def test_pieces_are_written_as_the_whole_in_whole_chunks(tmp_path):
    # pieces of 1, 2 and 3 realizations written with chunks of 2: the store is the whole
    # dataset, chunked as one write would chunk it, with the first piece's attributes
    whole = xr.concat([_shard(0), _shard(1), _shard(2)], "realization")
    cuts = [0, 1, 3, 6, 12, 15, 18]
    pieces = [whole.isel(realization=slice(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]
    path = tmp_path / "set.zarr"
    write_zarr_atomic(iter(pieces), path, chunk=2)
    ds = open_shard(path, load=False)
    xr.testing.assert_identical(ds.load(), whole)
    assert ds.sky.encoding["chunks"][0] == 2
    assert _siblings(path) == ["set.zarr"]


def test_no_pieces_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="set.zarr: nothing to write"):
        write_zarr_atomic(iter([]), tmp_path / "set.zarr")
    assert os.listdir(tmp_path) == []


def test_plain_open_zarr_is_silent(shard_path, recwarn):
    """Metadata are consolidated: a plain xr.open_zarr reads them without warnings."""
    xr.open_zarr(shard_path).load()
    assert not [str(w.message) for w in recwarn]


# --- failed writes ------------------------------------------------------------------------


def _failing_to_zarr(self, store, *args, **kwargs):
    """Write part of a store, then fail like a full disk."""
    os.makedirs(store)
    with open(os.path.join(store, "zarr.json"), "w") as f:
        f.write('{"zarr_format": 3, "node_type": "group"}')
    raise OSError("No space left on device")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "sims" / "M1.zarr"
    monkeypatch.setattr(xr.Dataset, "to_zarr", _failing_to_zarr)
    with pytest.raises(OSError, match="No space left"):
        write_zarr_atomic(_shard(), target)
    assert not target.exists()
    assert os.listdir(target.parent) == []  # no temporary directory either


def test_failed_overwrite_keeps_the_old_store(shard_path, monkeypatch):
    monkeypatch.setattr(xr.Dataset, "to_zarr", _failing_to_zarr)
    with pytest.raises(OSError):
        write_zarr_atomic(_shard(seed=1), shard_path)
    monkeypatch.undo()
    xr.testing.assert_identical(open_shard(shard_path).load(), _shard())
    assert _siblings(shard_path) == ["M1.zarr"]


# --- open_shard on bad input: ShardError naming the path ----------------------------------


def _raises_shard_error(path, **kwargs) -> str:
    """open_shard raises a two-line ShardError: the shard, then the command that rebuilds it."""
    with pytest.raises(ShardError) as err:
        open_shard(path, **kwargs)
    message = str(err.value)
    problem, hint = message.splitlines()
    assert str(path) in problem
    assert "snakemake -f " in hint and "--configfile" in hint
    return message


def test_missing_path(tmp_path):
    _raises_shard_error(tmp_path / "nope.zarr")


def test_directory_that_is_not_a_store(tmp_path):
    path = tmp_path / "M1.zarr"
    path.mkdir()
    (path / "notes.txt").write_text("not zarr")
    _raises_shard_error(path)


def test_plain_file_is_not_a_store(tmp_path):
    path = tmp_path / "M1.zarr"
    path.write_text("not zarr")
    _raises_shard_error(path)


def test_deleted_root_metadata(shard_path):
    (shard_path / "zarr.json").unlink()
    _raises_shard_error(shard_path)


def test_corrupted_root_metadata(shard_path):
    (shard_path / "zarr.json").write_text('{"zarr_format": 3, "node_')
    _raises_shard_error(shard_path)


@pytest.mark.parametrize("variable", ["sky", "ln_scatter"])
def test_missing_variable(tmp_path, variable):
    path = tmp_path / "M1.zarr"
    write_zarr_atomic(_shard().drop_vars(variable), path)
    with pytest.raises(ShardError, match=variable) as err:
        open_shard(path)
    assert str(path) in str(err.value)


def test_variables_argument(shard_path):
    open_shard(shard_path, variables=["sky"])
    with pytest.raises(ShardError, match="label"):
        open_shard(shard_path, variables=[*SHARD_VARIABLES, "label"])


def test_deleted_chunk(shard_path):
    (shard_path / "sky" / "c" / "1" / "0" / "0").unlink()
    _raises_shard_error(shard_path)


def test_corrupted_chunk(shard_path):
    (shard_path / "sky" / "c" / "1" / "0" / "0").write_bytes(b"\x00garbage\xff" * 8)
    _raises_shard_error(shard_path)


@pytest.mark.parametrize(
    "variable, chunk",
    [
        ("sky", ("c", "1", "0", "0")),  # a map, decoded by .load()
        ("ln_scatter", ("c", "2")),  # a per-realization value, also its last chunk
        ("x", ("c", "0")),  # an index coordinate, decoded already by xr.open_zarr
    ],
)
def test_corrupted_chunk_names_the_variable(shard_path, variable, chunk, recwarn):
    """A chunk that does not decode: the error names its variable, as well as the shard; the
    timestamp Snakemake leaves in a directory() output raises no warning on the way."""
    (shard_path / ".snakemake_timestamp").touch()
    shard_path.joinpath(variable, *chunk).write_bytes(b"\x00garbage\xff" * 8)
    problem = _raises_shard_error(shard_path).splitlines()[0]
    assert not [str(w.message) for w in recwarn]
    assert f"variable {variable!r} does not decode" in problem
    assert "Zstd" in problem  # the codec's own words, for whoever digs further


def test_corrupted_variable_metadata_names_the_variable(shard_path):
    (shard_path / "m200c" / "zarr.json").write_text('{"zarr_format": 3, "node_')
    assert "'m200c'" in _raises_shard_error(shard_path).splitlines()[0]


def test_rebuild_command_names_the_shard_as_snakemake_does(shard_path, monkeypatch):
    """The hint's path is the rule's output path: relative to the workflow's directory, where
    the command runs, whether the shard was opened by a relative or an absolute path."""
    (shard_path / "sky" / "c" / "1" / "0" / "0").write_bytes(b"\x00garbage\xff" * 8)
    monkeypatch.chdir(shard_path.parents[1])
    relative = Path("sims", "M1.zarr")
    for opened in (relative, shard_path):
        hint = _raises_shard_error(opened).splitlines()[1]
        assert f"`snakemake -f {relative}`" in hint


def test_deleted_variable_metadata(shard_path):
    (shard_path / "m200c" / "zarr.json").unlink()
    _raises_shard_error(shard_path)


def test_chunk_layout_is_what_the_corruption_tests_assume(shard_path):
    """Guards the corruption tests above: they must damage a file that really exists."""
    assert (shard_path / "sky" / "c" / "1" / "0" / "0").is_file()
    assert (shard_path / "ln_scatter" / "c" / "2").is_file()
    assert (shard_path / "x" / "c" / "0").is_file()
    assert (shard_path / "m200c" / "zarr.json").is_file()


def test_failed_csv_write_leaves_nothing(tmp_path, monkeypatch):
    """A table write that dies half-way leaves neither the table nor a temporary file."""
    from szmass.io import write_csv_atomic

    def half_write(self, path, **kw):
        Path(path).write_text("shard,realization\nM1,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "predictions.csv")
    assert list(tmp_path.iterdir()) == []
