"""szmass.network.stream: the training set read from its Zarr store a buffer of chunks at a time
gives every map once per epoch, repeatably, the same fresh skies as in memory, and the same
digest; bad sets are refused by name."""

import hashlib

import numpy as np
import pytest
import xarray as xr

from szmass.io import write_zarr_atomic
from szmass.network.dataset import read_normalization
from szmass.network.fresh_skies import FreshSkies, scatter_free_sz
from szmass.network.stream import BUFFER_MAPS, StreamedSet, buffers, streamed_epoch_batches
from szmass.network.train import load_set

from ..conftest import SHARD_SEED, sky, write_spectra

#: 24 maps in chunks of 5 (the last holds 4), two chunks per buffer: maps carry across buffers.
CHUNK, BUFFER = 5, 10


@pytest.fixture(scope="module")
def chunked(prepared8, tmp_path_factory):
    """prepared8's training set rewritten in chunks of CHUNK maps."""
    path = tmp_path_factory.mktemp("chunked") / "train.zarr"
    ds = xr.open_zarr(prepared8 / "train.zarr", consolidated=True).load()
    for var in ds.variables.values():
        var.encoding.clear()
    write_zarr_atomic(ds, path, chunk=CHUNK)
    return path


def _epochs(path, *, batch, epochs, seed=3, **kw):
    """The streamed batches of epochs 0..epochs-1 as lists of (x, y) numpy pairs, per epoch."""
    data = StreamedSet(path, input_size=8)
    stream = streamed_epoch_batches(
        data,
        batch_size=batch,
        seed=seed,
        first_epoch=0,
        last_epoch=epochs,
        buffer_maps=BUFFER,
        **kw,
    )
    batches = [(x.numpy(), y.numpy()) for x, y in stream]
    per_epoch = -(-data.n // batch)
    assert len(batches) == per_epoch * epochs
    return [batches[e * per_epoch : (e + 1) * per_epoch] for e in range(epochs)]


def _key(x):
    """One number per map that tells the maps apart (their pixel sums)."""
    return np.round(x.reshape(len(x), -1).astype(float).sum(axis=1), 4)


def test_chunks_and_buffers(chunked):
    data = StreamedSet(chunked, input_size=8)
    assert (data.n, data.chunk, data.n_chunks) == (24, CHUNK, 5)
    assert [data.chunk_rows(k) for k in (0, 4)] == [(0, 5), (20, 24)]
    assert buffers(5, CHUNK, BUFFER) == 2
    assert buffers(5, CHUNK, 1) == 1  # at least one chunk
    assert buffers(3, 200, BUFFER_MAPS) == 3  # never more chunks than the set has


@pytest.mark.parametrize("batch", [4, 7])
def test_every_map_once_per_epoch(chunked, prepared8, batch):
    x_mem, y_mem = load_set(prepared8 / "train.zarr", input_size=8)
    for epoch in _epochs(chunked, batch=batch, epochs=2):
        sizes = [len(x) for x, _ in epoch]
        assert sizes[:-1] == [batch] * (len(sizes) - 1) and sum(sizes) == 24
        x = np.concatenate([b[0] for b in epoch])
        y = np.concatenate([b[1] for b in epoch])
        order = np.argsort(_key(x))
        np.testing.assert_array_equal(x[order], x_mem[np.argsort(_key(x_mem))])
        np.testing.assert_array_equal(y[order], y_mem[np.argsort(_key(x_mem))])


def test_epochs_repeat_and_differ(chunked):
    a = _epochs(chunked, batch=4, epochs=2)
    b = _epochs(chunked, batch=4, epochs=2)
    first = lambda run, e: np.concatenate([x for x, _ in run[e]])  # noqa: E731
    np.testing.assert_array_equal(first(a, 0), first(b, 0))
    np.testing.assert_array_equal(first(a, 1), first(b, 1))
    assert not np.array_equal(first(a, 0), first(a, 1))  # a new order each epoch
    other = _epochs(chunked, batch=4, epochs=1, seed=4)
    assert not np.array_equal(first(a, 0), first(other, 0))


def test_fresh_skies_streamed_are_those_in_memory(chunked, prepared8, tmp_path):
    train = xr.open_zarr(prepared8 / "train.zarr", consolidated=True)
    norm = read_normalization(prepared8 / "normalization.json")
    ln_scatter = train["ln_scatter"].values
    sz = scatter_free_sz(train["labels"].values[..., 0], ln_scatter, norm["sz_scale"])
    make = lambda sz_uk: FreshSkies(  # noqa: E731
        sz_uk=sz_uk,
        spectra_path=str(write_spectra(tmp_path / "spectra.ecsv")),
        sky=sky(8),
        sigma_int=0.2,
        seed=SHARD_SEED,
        sky_scale=norm["sky_scale"],
        sz_scale=norm["sz_scale"],
    )
    in_memory = make(sz)
    x_mem, s_mem = in_memory.epoch(1)
    # a subset of rows, drawn alone, is those rows of the whole epoch
    rows = np.array([3, 17, 4])
    x_rows, s_rows = in_memory.draw(1, rows, sz[rows], None)
    np.testing.assert_array_equal(x_rows, x_mem[rows])
    np.testing.assert_array_equal(s_rows, s_mem[rows])
    # the streamed epoch 1 holds the same 24 maps
    epochs = _epochs(
        chunked,
        batch=4,
        epochs=2,
        fresh=make(None),
        ln_scatter=ln_scatter,
        sz_scale=norm["sz_scale"],
    )
    x = np.concatenate([b[0] for b in epochs[1]])
    y = np.concatenate([b[1] for b in epochs[1]])
    order, mem = np.argsort(_key(x)), np.argsort(_key(x_mem))
    np.testing.assert_allclose(x[order], x_mem[mem], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[order][..., 0], s_mem[mem], rtol=1e-6, atol=1e-6)
    mass = train["labels"].values[..., 1]
    np.testing.assert_array_equal(y[order][..., 1], mass[mem])
    assert not np.allclose(np.concatenate([b[0] for b in epochs[0]])[order], x_mem[mem])


def test_digest_is_that_of_the_whole_arrays(chunked, prepared8):
    x, y = load_set(prepared8 / "train.zarr", input_size=8)
    whole = hashlib.sha256()
    for arr in (x, y):
        whole.update(np.ascontiguousarray(arr).tobytes())
    streamed = hashlib.sha256()
    StreamedSet(chunked).update_digest(streamed)
    assert streamed.hexdigest() == whole.hexdigest()


def test_every_kth_map(chunked, prepared8):
    x, _ = load_set(prepared8 / "train.zarr")
    np.testing.assert_array_equal(StreamedSet(chunked).every(5), x[::5])
    np.testing.assert_array_equal(StreamedSet(chunked).every(0), x)


def test_missing_set_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.zarr"):
        StreamedSet(tmp_path / "nothere.zarr")


def test_wrong_map_size_is_named(chunked):
    with pytest.raises(ValueError, match=r"train.zarr: maps are 8x8, the model expects 16x16"):
        StreamedSet(chunked, input_size=16)


def test_a_nan_chunk_is_refused_with_its_maps(chunked, tmp_path):
    ds = xr.open_zarr(chunked, consolidated=True).load()
    ds["inputs"].values[12, 2, 2, 0] = np.nan
    for var in ds.variables.values():
        var.encoding.clear()
    bad = tmp_path / "bad.zarr"
    write_zarr_atomic(ds, bad, chunk=CHUNK)
    data = StreamedSet(bad)
    data.rows(0, 10)  # the chunks before it read
    with pytest.raises(ValueError, match=r"bad.zarr: inputs of maps 10-14 hold NaN"):
        data.rows(*data.chunk_rows(2))
