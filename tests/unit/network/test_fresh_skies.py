"""szmass.fresh_skies: new skies per epoch, repeatable, around the training set's own clusters."""

import numpy as np
import pytest
import xarray as xr

from szmass.network.dataset import read_normalization
from szmass.network.fresh_skies import FreshSkies, scatter_free_sz
from szmass.sky.maps import apodization_window

from ..conftest import SHARD_SEED, sky, write_spectra

#: Relative tolerance on the per-pixel rms of 24 fresh 8x8 skies against the shard's own
#: (24 x 64 correlated pixels each: ~10% sampling error on a standard deviation, 3 sigma).
RMS_RTOL = 0.3


@pytest.fixture(scope="module")
def fresh8(prepared8, tmp_path_factory):
    train = xr.open_zarr(prepared8 / "train.zarr", consolidated=True)
    norm = read_normalization(prepared8 / "normalization.json")
    spectra = write_spectra(tmp_path_factory.mktemp("spectra") / "spectra.ecsv")
    labels = train["labels"].values
    sz = scatter_free_sz(labels[..., 0], train["ln_scatter"].values, norm["sz_scale"])
    make = lambda sigma: FreshSkies(  # noqa: E731
        sz_uk=sz,
        spectra_path=str(spectra),
        sky=sky(8),
        sigma_int=sigma,
        seed=SHARD_SEED,
        sky_scale=norm["sky_scale"],
        sz_scale=norm["sz_scale"],
    )
    return {"train": train, "norm": norm, "sz": sz, "make": make}


def test_scatter_free_sz_is_the_template(fresh8, prepared8):
    """Every realization of one mass has the same scatter-free map: the shard's template."""
    train, sz = fresh8["train"], fresh8["sz"]
    m = train["m200c"].values
    for mass in np.unique(m):
        same = sz[m == mass]
        np.testing.assert_allclose(same, np.broadcast_to(same[0], same.shape), rtol=1e-5)


def test_epochs_repeat_and_differ(fresh8):
    fresh = fresh8["make"](0.2)
    x1, s1 = fresh.epoch(1)
    x1b, s1b = fresh8["make"](0.2).epoch(1)
    x2, _ = fresh.epoch(2)
    np.testing.assert_array_equal(x1, x1b)
    np.testing.assert_array_equal(s1, s1b)
    assert x1.shape == (len(fresh8["sz"]), 8, 8, 1) and x1.dtype == np.float32
    assert not np.allclose(x1, x2)


def test_sky_around_the_cluster_matches_the_shard(fresh8, prepared8):
    """The fresh sky minus the cluster has the per-pixel rms of the shard's sky minus its
    cluster (same spectrum, beam, noise and window), and the scatter is drawn anew."""
    fresh, norm, train = fresh8["make"](0.2), fresh8["norm"], fresh8["train"]
    x, s = fresh.epoch(3)
    window = apodization_window(8, sky(8)["apodization_width_pix"])
    inner = window > 0.99
    fresh_bg = (x[..., 0] * norm["sky_scale"] - window * s * norm["sz_scale"])[:, inner]
    shard_bg = (
        train["inputs"].values[..., 0] * norm["sky_scale"]
        - window * train["labels"].values[..., 0] * norm["sz_scale"]
    )[:, inner]
    assert fresh_bg.std() == pytest.approx(shard_bg.std(), rel=RMS_RTOL)
    ratio = np.log(s[:, 4, 4] * norm["sz_scale"] / fresh8["sz"][:, 4, 4])
    assert not np.allclose(ratio, train["ln_scatter"].values)
    assert 0.1 < ratio.std() < 0.35  # 24 draws of sigma_int = 0.2


def test_no_scatter_keeps_the_template(fresh8):
    _, s = fresh8["make"](0.0).epoch(0)
    np.testing.assert_allclose(s * fresh8["norm"]["sz_scale"], fresh8["sz"], rtol=1e-5, atol=1e-4)


def test_wrong_map_size_is_refused(fresh8, tmp_path):
    with pytest.raises(ValueError, match="8x8.*16x16"):
        FreshSkies(
            sz_uk=fresh8["sz"],
            spectra_path=str(write_spectra(tmp_path / "s.ecsv")),
            sky=sky(16),
            sigma_int=0.2,
            seed=1,
            sky_scale=1.0,
            sz_scale=1.0,
        )
