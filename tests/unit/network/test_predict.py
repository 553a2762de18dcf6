"""Predictions of a (tiny, untrained) network on test shards, and the checks that stop a model
from being used on data it was not trained for."""

import numpy as np
import pandas as pd
import pytest

from szmass.network.dataset import read_normalization, write_normalization
from szmass.network.model import build_mresunet
from szmass.network.predict import PREDICTION_COLUMNS, check_normalizations, predict_set

from ..conftest import MASSES, N_REALIZATIONS, simulate_grid, sky, split

NPIX = 16
TEST = [8, 12]  # the realizations a test set takes from each shard


@pytest.fixture(scope="module")
def model16(shards16, tmp_path_factory):
    """An untrained depth-1 network saved as .keras, with the normalization of shards16."""
    root = tmp_path_factory.mktemp("model16")
    norm = split(shards16, root)
    net = build_mresunet(input_size=NPIX, base_filters=2, depth=1)
    net.save(root / "mresunet.keras")
    write_normalization(norm, root / "model_normalization.json")
    return root


def _predict(model16, shards, tmp_path, **kw):
    return predict_set(
        model_path=str(model16 / "mresunet.keras"),
        model_normalization_path=str(model16 / "model_normalization.json"),
        data_normalization_path=str(model16 / "normalization.json"),
        shard_paths=shards,
        realizations=TEST,
        out_predictions=str(tmp_path / "predictions.csv"),
        out_maps=str(tmp_path / "mean_maps.npz"),
        **kw,
    )


def test_predictions_table_and_mean_maps(model16, shards16, tmp_path):
    table = _predict(model16, shards16, tmp_path)
    written = pd.read_csv(tmp_path / "predictions.csv")
    assert list(written.columns) == list(PREDICTION_COLUMNS)
    n_test = TEST[1] - TEST[0]
    assert len(written) == len(MASSES) * n_test
    np.testing.assert_allclose(written["m200c_true"], np.repeat(np.array(MASSES) * 1e14, n_test))
    np.testing.assert_array_equal(written["realization"], np.tile(np.arange(*TEST), len(MASSES)))
    assert np.all(np.isfinite(written["m200c_est"]))
    np.testing.assert_allclose(written["m200c_est"], table["m200c_est"], rtol=1e-12)
    with np.load(tmp_path / "mean_maps.npz") as maps:
        assert maps["sz_true"].shape == (len(MASSES), NPIX, NPIX)
        assert maps["sz_pred"].shape == maps["mass_pred"].shape == maps["sz_true"].shape
        np.testing.assert_allclose(maps["m200c"], np.array(MASSES) * 1e14)
        # the true mean map is the shards' own sz mean (labels undone by sz_scale)
        import xarray as xr

        sz = xr.open_zarr(shards16[0]).sz.isel(realization=slice(*TEST)).mean("realization")
        np.testing.assert_allclose(maps["sz_true"][0], sz.values, rtol=1e-5, atol=1e-4)
    assert not list(tmp_path.glob(".*tmp*"))


def test_estimate_is_the_central_pixel_times_m_norm(model16, shards16, tmp_path):
    """The mass estimate: channel 1's central pixel times M_norm, for the prepared input."""
    import keras

    from szmass.io import open_shard
    from szmass.network.dataset import prepare

    table = _predict(model16, shards16[:1], tmp_path)
    norm = read_normalization(model16 / "normalization.json")
    net = keras.saving.load_model(model16 / "mresunet.keras")
    inputs = prepare(open_shard(shards16[0]), norm, realizations=slice(*TEST))["inputs"]
    out = net.predict(inputs, verbose=0)
    expected = out[:, NPIX // 2, NPIX // 2, 1] * norm["m_norm_msun"]
    np.testing.assert_allclose(table["m200c_est"], expected, rtol=1e-5)


def test_normalization_mismatch_names_both_values(model16, shards16, tmp_path):
    norm = read_normalization(model16 / "model_normalization.json")
    other = {**norm, "sky_scale": norm["sky_scale"] * 1.5}
    write_normalization(other, tmp_path / "other.json")
    with pytest.raises(ValueError, match="sky_scale") as err:
        predict_set(
            model_path=str(model16 / "mresunet.keras"),
            model_normalization_path=str(tmp_path / "other.json"),
            data_normalization_path=str(model16 / "normalization.json"),
            shard_paths=shards16,
            realizations=TEST,
            out_predictions=str(tmp_path / "p.csv"),
        )
    assert f"{other['sky_scale']}" in str(err.value) and f"{norm['sky_scale']}" in str(err.value)
    assert not (tmp_path / "p.csv").exists()


def test_check_normalizations_accepts_equal_constants():
    norm = {
        "sky_scale": 1.0,
        "sz_scale": 2.0,
        "m_norm_msun": 4.5e14,
        "npix": 40,
        "pixel_arcmin": 0.25,
    }
    check_normalizations(norm, dict(norm), model_path="a", data_path="b")
    with pytest.raises(ValueError, match="npix.*40.*32"):
        check_normalizations(norm, {**norm, "npix": 32}, model_path="a", data_path="b")


def test_shard_of_another_pixel_size_is_refused(model16, tmp_path):
    """A test shard at 0.5' pixels against a model trained on 0.25': an error naming both."""
    import szmass.sky.simulate as simulate

    from ..conftest import CLUSTER, SHARD_SEED, write_spectra

    spectra = write_spectra(tmp_path / "spectra.ecsv")
    path = tmp_path / "M2.zarr"
    simulate.simulate_shard(
        spectra_path=str(spectra),
        out_path=str(path),
        set_name="grid",
        seed=SHARD_SEED,
        sky={**sky(NPIX), "pixel_arcmin": 0.5},
        cluster=CLUSTER,
        sigma_int=0.2,
        mass_1e14=2,
        n_realizations=N_REALIZATIONS,
    )
    with pytest.raises(ValueError, match=r"pixel is 0.5', the training set's is 0.25'"):
        _predict(model16, [str(path)], tmp_path)
    assert not (tmp_path / "predictions.csv").exists()


def test_shard_of_another_map_size_is_refused(model16, tmp_path):
    shards = simulate_grid(tmp_path / "sims8", npix=8, masses=(2,))
    with pytest.raises(ValueError, match=r"8x8 pixels, the training set's are 16x16"):
        _predict(model16, shards, tmp_path)
