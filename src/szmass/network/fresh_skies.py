"""Fresh skies every epoch: a new CMB + foreground + noise realization, and a new intrinsic
scatter draw, for every training cluster at every epoch (issue 12; beyond the paper, which
trains on fixed maps: Gupta & Reichardt 2020, arXiv:2003.06135, §3).

A fixed training set of 3200 maps is too small for the network's readout: it overfits the
particular CMB and noise behind each cluster. The simulator makes ~1000 maps/s, far faster than
training consumes them, so each epoch draws new ones. The cluster's own beam-convolved SZ map
is kept (its scatter-free shape from the training set); only the sky around it and its scatter
are new. Epoch e, cluster i draws from ``SeedSequence(seed, spawn_key=("fresh", e, i, ...))``
(``simulate.map_rng``), so a run is repeatable and a resumed run sees the same skies. For a
model that takes the redshift (issue 16), each cluster keeps its own z channel.

The 8 rotations and flips of the square map add nothing here: an A10 cluster map is symmetric
under them about its centre pixel, and the fresh fields are statistically isotropic.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..sky import maps
from ..sky.simulate import map_rng, sky_components
from ..sky.spectra import read_spectra

log = logging.getLogger("szmass.fresh_skies")

FRESH_SET = "fresh"


def scatter_free_sz(labels_sz: np.ndarray, ln_scatter: np.ndarray, sz_scale: float) -> np.ndarray:
    """The clusters' beam-convolved SZ maps [uK] without their drawn scatter, (n, H, W), from
    the training set's SZ label channel (n, H, W) and ``ln_scatter`` (n,)."""
    return labels_sz * sz_scale * np.exp(-ln_scatter)[:, None, None]


class FreshSkies:
    """Draws, per epoch, the network inputs and SZ labels of every training cluster on a new sky.

    Args:
        sz_uk: the clusters' scatter-free SZ maps [uK], (n, H, W); None where they are
            streamed (``draw`` is then given them a buffer at a time, ``epoch`` cannot be used).
        spectra_path: the spectra table (its ``cl_total`` is the field's C_l).
        sky: the simulation's ``sky`` config (npix, pixel, beam, noise, apodization, padding).
        sigma_int: the intrinsic scatter of the new draws (ln units).
        sky_scale, sz_scale: the normalization constants of inputs and SZ labels.
        z_channel: the clusters' normalised redshifts (n,), the second input channel of a
            model that takes z (``dataset.z_channel``); None for a fixed-z model (1 channel).
    """

    def __init__(
        self,
        *,
        sz_uk: np.ndarray | None,
        spectra_path: str,
        sky: dict[str, Any],
        sigma_int: float,
        seed: int,
        sky_scale: float,
        sz_scale: float,
        threads: int = 1,
        z_channel: np.ndarray | None = None,
    ):
        spectra = read_spectra(spectra_path)
        self.ell = np.asarray(spectra["ell"], dtype=float)
        self.cl = np.asarray(spectra["cl_total"], dtype=float)
        self.sz_uk = np.zeros((0, sky["npix"], sky["npix"])) if sz_uk is None else sz_uk
        self.sz_uk = np.asarray(self.sz_uk, dtype=np.float64)
        self.sky, self.sigma_int, self.seed = sky, float(sigma_int), int(seed)
        self.sky_scale, self.sz_scale, self.threads = sky_scale, sz_scale, threads
        self.window = maps.apodization_window(sky["npix"], sky["apodization_width_pix"])
        self.z_channel = None if z_channel is None else np.asarray(z_channel, dtype=np.float32)
        self.channels = 1 if z_channel is None else 2
        if self.z_channel is not None and self.z_channel.shape != (len(self.sz_uk),):
            raise ValueError(
                f"z_channel has shape {self.z_channel.shape}, expected ({len(self.sz_uk)},)"
            )
        if self.sz_uk.shape[1:] != (sky["npix"], sky["npix"]):
            raise ValueError(
                f"training maps are {self.sz_uk.shape[1]}x{self.sz_uk.shape[2]}, the sky "
                f"config says {sky['npix']}x{sky['npix']}"
            )

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs (n, H, W, channels) and SZ labels (n, H, W) of epoch ``epoch``, float32,
        normalised."""
        return self.draw(epoch, np.arange(len(self.sz_uk)), self.sz_uk, self.z_channel)

    def draw(
        self, epoch: int, rows: np.ndarray, sz_uk: np.ndarray, z_channel: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``epoch`` for the training maps ``rows`` (n,) only, given their scatter-free SZ maps
        (n, H, W) and z channel (n,) or None: the same maps as those rows of ``epoch`` (the
        streamed input, ``stream.py``, draws a buffer at a time)."""
        rows = np.asarray(rows)
        n = len(rows)
        inputs = np.empty((n, *sz_uk.shape[1:], 1 if z_channel is None else 2), dtype=np.float32)
        if z_channel is not None:
            inputs[..., 1] = np.asarray(z_channel, dtype=np.float32)[:, None, None]
        labels_sz = np.empty(sz_uk.shape, dtype=np.float32)
        components = sky_components(
            spectra_ell=self.ell,
            spectra_cl=self.cl,
            sky=self.sky,
            set_name=FRESH_SET,
            seed=self.seed,
            keys=np.full(n, epoch),
            realizations=rows,
            threads=self.threads,
        )
        for i, field, noise in components:
            rng = map_rng(self.seed, FRESH_SET, epoch, rows[i], "scatter")
            sz = sz_uk[i] * np.exp(self.sigma_int * rng.standard_normal())
            inputs[i, ..., 0] = self.window * (field + sz + noise) / self.sky_scale
            labels_sz[i] = sz / self.sz_scale
        return inputs, labels_sz


def fresh_epoch_batches(
    fresh,
    mass_maps: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    last_epoch: int,
    draw_seconds: dict[int, float],
):
    """A tf.data stream of the batches of epochs first..last-1, each epoch on its own fresh
    skies (``FreshSkies.epoch``) in a shuffle keyed on (seed, epoch); the next epoch's skies
    are drawn in a thread while this one trains. ``draw_seconds[epoch]`` records each draw."""
    import tensorflow as tf

    n, (h, w) = len(mass_maps), mass_maps.shape[1:]

    def draw(epoch):
        t0 = time.perf_counter()
        x, sz = fresh.epoch(epoch)
        y = np.stack([sz, mass_maps], axis=-1).astype(np.float32)
        draw_seconds[epoch] = time.perf_counter() - t0
        return x, y

    def generate():
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(draw, first_epoch)
            for epoch in range(first_epoch, last_epoch):
                x, y = pending.result()
                if epoch + 1 < last_epoch:
                    pending = pool.submit(draw, epoch + 1)
                order = np.random.default_rng([seed, epoch]).permutation(n)
                for start in range(0, n, batch_size):
                    idx = np.sort(order[start : start + batch_size])
                    yield x[idx], y[idx]

    signature = (
        tf.TensorSpec((None, h, w, getattr(fresh, "channels", 1)), tf.float32),
        tf.TensorSpec((None, h, w, 2), tf.float32),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
