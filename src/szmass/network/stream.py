"""Training input streamed from the prepared Zarr set, a buffer of chunks at a time (issue 16).

``training.streaming: false`` (the default) loads the training set into memory
(``load_set``), which costs ~20 kB per 40x40 map with its labels (three float32 channels,
plus the copies TensorFlow and the fresh skies keep): ~2 GB at 10^5 maps, ~20 GB at 10^6.
With ``streaming: true`` only a buffer of ``BUFFER_MAPS`` maps is in memory at a time:

- every epoch, the set's chunks (``write_zarr_atomic`` writes 200 maps per chunk) are taken in
  an order drawn from (seed, epoch); a buffer of whole chunks is read, its maps shuffled, and
  cut into batches (maps left over carry into the next buffer, so an epoch has the same
  ceil(n / batch) batches as in memory). The next buffer is read in a thread while this one
  trains.
- a grid set stores its masses in order, one chunk holding one mass, so a buffer mixes
  ``BUFFER_MAPS`` / 200 chunks of (mostly) different masses rather than the whole set: a
  coarser shuffle than in memory, the price of bounded memory.
- with fresh skies, each map's new sky is drawn when its buffer is read, keyed on (seed,
  epoch, map index) as in memory (``FreshSkies.draw``), so a streamed map and an in-memory map
  of the same epoch are the same map.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

#: Maps in memory at a time (whole chunks; at least one chunk): ~80 MB of inputs and labels.
BUFFER_MAPS = 4096


def check_set_shapes(path, x_shape, y_shape, *, input_size=None, channels=None) -> None:
    """Raise ValueError naming ``path`` unless inputs and labels are (n, H, W, C) and
    (n, H, W, 2) with H = W = ``input_size`` and C = ``channels`` (where given)."""
    if len(x_shape) != 4 or tuple(y_shape[:3]) != tuple(x_shape[:3]):
        raise ValueError(
            f"data set {path}: inputs {tuple(x_shape)} and labels {tuple(y_shape)} do not match"
        )
    if input_size is not None and tuple(x_shape[1:3]) != (input_size, input_size):
        raise ValueError(
            f"data set {path}: maps are {x_shape[1]}x{x_shape[2]}, the model "
            f"expects {input_size}x{input_size}"
        )
    if channels is not None and x_shape[-1] != channels:
        raise ValueError(
            f"data set {path}: inputs have {x_shape[-1]} channel(s), the normalization says "
            f"{channels} (1: the map; 2: the map and the redshift); rerun split_dataset"
        )


def load_set(
    path: str | os.PathLike, *, input_size: int | None = None, channels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, H, W, channels) and labels (n, H, W, 2) of a prepared set, in memory, checked.

    Raises ValueError naming the file if it is missing, holds NaNs, or its maps are not
    ``input_size`` on a side or have not ``channels`` input channels (the map, and the
    redshift for a model that takes it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data set {path} does not exist (run split_dataset)")
    try:
        ds = xr.open_zarr(path, consolidated=True)
        x, y = ds["inputs"].values, ds["labels"].values
    except Exception as err:
        raise ValueError(f"data set {path} cannot be read: {err}") from err
    check_set_shapes(path, x.shape, y.shape, input_size=input_size, channels=channels)
    for name, arr in (("inputs", x), ("labels", y)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"data set {path}: {name} hold NaN or inf values")
    return x, y


class StreamedSet:
    """A prepared set (``dataset.split_dataset``) on disk, read a chunk of maps at a time.

    Raises FileNotFoundError or ValueError naming the file as ``train.load_set`` does; a
    chunk that holds NaN or inf is refused when it is read, naming its maps.
    """

    def __init__(self, path, *, input_size: int | None = None, channels: int | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"data set {self.path} does not exist (run split_dataset)")
        try:
            self.ds = xr.open_zarr(self.path, consolidated=True)
            inputs, labels = self.ds["inputs"], self.ds["labels"]
        except Exception as err:
            raise ValueError(f"data set {self.path} cannot be read: {err}") from err
        check_set_shapes(
            self.path, inputs.shape, labels.shape, input_size=input_size, channels=channels
        )
        self.n = int(inputs.shape[0])
        self.chunk = int(inputs.encoding.get("chunks", (self.n,))[0]) or self.n
        self.n_chunks = -(-self.n // self.chunk)

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels of maps start..stop-1, float32, checked finite."""
        sel = {self.ds["inputs"].dims[0]: slice(start, stop)}
        x = self.ds["inputs"].isel(sel).values
        y = self.ds["labels"].isel(sel).values
        for name, arr in (("inputs", x), ("labels", y)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"data set {self.path}: {name} of maps {start}-{stop - 1} hold NaN or inf"
                )
        return x, y

    def chunk_rows(self, k: int) -> tuple[int, int]:
        return k * self.chunk, min(self.n, (k + 1) * self.chunk)

    def variable(self, name: str) -> np.ndarray:
        """A per-map variable (e.g. ``ln_scatter``), whole: n values."""
        return self.ds[name].values

    def every(self, step: int) -> np.ndarray:
        """The inputs of every ``step``-th map (the batch-norm recalibration's maps)."""
        idx = np.arange(0, self.n, max(1, step))
        return self.ds["inputs"].isel({self.ds["inputs"].dims[0]: idx}).values

    def update_digest(self, digest) -> None:
        """Feed the inputs, then the labels, chunk by chunk: the same bytes, so the same
        sha256, as the whole arrays (``train._code_and_data_digest``)."""
        for var in ("inputs", "labels"):
            for k in range(self.n_chunks):
                start, stop = self.chunk_rows(k)
                arr = self.ds[var].isel({self.ds[var].dims[0]: slice(start, stop)}).values
                digest.update(np.ascontiguousarray(arr).tobytes())


def buffers(n_chunks: int, chunk: int, buffer_maps: int = BUFFER_MAPS) -> int:
    """Chunks per buffer: as many whole chunks as fit in ``buffer_maps`` (at least one)."""
    return max(1, min(n_chunks, buffer_maps // max(1, chunk)))


def streamed_epoch_batches(
    data: StreamedSet,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    last_epoch: int,
    fresh: Any = None,
    ln_scatter: np.ndarray | None = None,
    sz_scale: float | None = None,
    draw_seconds: dict[int, float] | None = None,
    buffer_maps: int = BUFFER_MAPS,
):
    """A tf.data stream of the batches of epochs first..last-1 read from ``data`` a buffer at a
    time (see the module docstring); with ``fresh`` (a ``FreshSkies``), each map on its own new
    sky, for which ``ln_scatter`` (n,) and ``sz_scale`` undo the stored scatter. The seconds
    spent reading and drawing are added up per epoch in ``draw_seconds``."""
    import tensorflow as tf

    from .fresh_skies import scatter_free_sz

    per_buffer = buffers(data.n_chunks, data.chunk, buffer_maps)
    seconds = {} if draw_seconds is None else draw_seconds
    x0, _ = data.rows(0, 1)

    def read(epoch, chunks):
        t0 = time.perf_counter()
        parts = [data.rows(*data.chunk_rows(k)) for k in chunks]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if fresh is not None:
            idx = np.concatenate([np.arange(*data.chunk_rows(k)) for k in chunks])
            sz_uk = scatter_free_sz(y[..., 0], ln_scatter[idx], sz_scale)
            z = x[:, 0, 0, 1] if x.shape[-1] > 1 else None
            x, sz = fresh.draw(epoch, idx, sz_uk, z)
            y = np.stack([sz, y[..., 1]], axis=-1).astype(np.float32)
        rng = np.random.default_rng([seed, epoch, int(chunks[0])])
        perm = rng.permutation(len(x))
        seconds[epoch] = seconds.get(epoch, 0.0) + time.perf_counter() - t0
        return x[perm], y[perm]

    def plan():
        for epoch in range(first_epoch, last_epoch):
            order = np.random.default_rng([seed, epoch]).permutation(data.n_chunks)
            for g in range(0, data.n_chunks, per_buffer):
                yield epoch, order[g : g + per_buffer], g + per_buffer >= data.n_chunks

    def generate():
        with ThreadPoolExecutor(1) as pool:
            steps = plan()
            step = next(steps, None)
            pending = pool.submit(read, step[0], step[1]) if step else None
            carry = None
            while step is not None:
                _, _, last_of_epoch = step
                x, y = pending.result()
                step = next(steps, None)
                if step is not None:
                    pending = pool.submit(read, step[0], step[1])
                if carry is not None:
                    x, y = np.concatenate([carry[0], x]), np.concatenate([carry[1], y])
                full = len(x) // batch_size * batch_size
                for start in range(0, full, batch_size):
                    yield x[start : start + batch_size], y[start : start + batch_size]
                carry = (x[full:], y[full:]) if full < len(x) else None
                if last_of_epoch and carry is not None:
                    yield carry
                    carry = None

    h, w, channels = x0.shape[1:]
    signature = (
        tf.TensorSpec((None, h, w, channels), tf.float32),
        tf.TensorSpec((None, h, w, 2), tf.float32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
