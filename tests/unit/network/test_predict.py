"""Predictions of a (tiny, untrained) network on test shards, and the checks that stop a model
from being used on data it was not trained for."""

import numpy as np
import pandas as pd
import pytest

from szmass.intervals import INTERVAL_COLUMNS
from szmass.network import predict as predict_mod
from szmass.network.dataset import read_normalization, write_normalization
from szmass.network.model import build_mresunet
from szmass.network.predict import (
    PREDICTION_COLUMNS,
    calibrate_network,
    calibrated,
    check_normalizations,
    predict_set,
    read_calibration,
)

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
    intervals = [*INTERVAL_COLUMNS, "m200c_belt", "pit"]
    assert list(written.columns) == [*PREDICTION_COLUMNS, "m200c_cal", "m200c_tpl", *intervals]
    assert np.all(np.isfinite(written["m200c_tpl"]))
    assert written[["m200c_cal", *intervals]].isna().all().all()  # no calibration given
    n_test = TEST[1] - TEST[0]
    assert len(written) == len(MASSES) * n_test
    np.testing.assert_allclose(written["m200c_true"], np.repeat(np.array(MASSES) * 1e14, n_test))
    np.testing.assert_array_equal(written["realization"], np.tile(np.arange(*TEST), len(MASSES)))
    assert np.all(np.isfinite(written["m200c_est"]))
    assert written["cluster_name"].isna().all()  # simulated maps have no names
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
    # the mean SZ residual's standard error per pixel: the residuals' std over the maps / sqrt(n)
    labels = prepare(open_shard(shards16[0]), norm, realizations=slice(*TEST))["labels"]
    resid = (out[..., 0] - labels[..., 0]) * norm["sz_scale"]
    with np.load(tmp_path / "mean_maps.npz") as maps:
        sem = resid.std(0, ddof=1) / np.sqrt(len(resid))
        np.testing.assert_allclose(maps["sz_sem"][0], sem, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            maps["sz_pred"][0] - maps["sz_true"][0], resid.mean(0), rtol=1e-4, atol=1e-4
        )


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


#: The fake network's response: raw estimate = RESPONSE_A * (M / 1e14) ** RESPONSE_B * 1e14.
RESPONSE_A, RESPONSE_B = 0.7, 0.8
#: The fake response passes through the network's float32 output: ~1e-7 relative per value.
FLOAT32_RTOL = 1e-6


def _fake_predict(model16):
    """A stand-in for the network's forward pass whose central mass pixel responds to the
    true mass as a power law (the truth read from the prepared labels)."""
    norm = read_normalization(model16 / "normalization.json")

    def fake(net, inputs, progress):
        import xarray as xr

        m = xr.open_zarr(model16 / "val.zarr", consolidated=True)["m200c"].values
        out = np.zeros(inputs.shape[:3] + (2,), dtype=np.float32)
        c = inputs.shape[1] // 2
        out[:, c, c, 1] = RESPONSE_A * (m / 1e14) ** RESPONSE_B * 1e14 / norm["m_norm_msun"]
        return out

    return fake


def _calibrate(model16, out):
    return calibrate_network(
        model_path=str(model16 / "mresunet.keras"),
        model_normalization_path=str(model16 / "model_normalization.json"),
        data_normalization_path=str(model16 / "normalization.json"),
        val_path=str(model16 / "val.zarr"),
        out_path=str(out),
    )


def test_calibration_on_the_validation_set_inverts_the_response(model16, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_mod, "_predict", _fake_predict(model16))
    out = tmp_path / "calibration.json"
    result = _calibrate(model16, out)
    assert result["masses"] == [m * 1e14 for m in MASSES]
    fit = read_calibration(out)
    # ln M = a + b ln M_raw inverts ln M_raw = ln(A 1e14) + B (ln M - ln 1e14)
    assert fit["b"] == pytest.approx(1 / RESPONSE_B, rel=FLOAT32_RTOL)
    raw = RESPONSE_A * np.array(MASSES, float) ** RESPONSE_B * 1e14
    np.testing.assert_allclose(calibrated(raw, fit), np.array(MASSES) * 1e14, rtol=FLOAT32_RTOL)


def test_calibrated_estimates_and_refusals(tmp_path):
    fit = {"a": 1.0, "b": 0.5, "scatter": 0.1}
    got = calibrated(np.array([4.0, -1.0, 0.0]), fit)
    np.testing.assert_allclose(got, [np.exp(1.0 + 0.5 * np.log(4.0)), 0.0, 0.0])
    assert np.isnan(calibrated(np.array([1.0]), None)).all()
    with pytest.raises(FileNotFoundError, match="calibrate_network"):
        read_calibration(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"calibration": {"a": 1}}')
    with pytest.raises(ValueError, match="bad.json"):
        read_calibration(tmp_path / "bad.json")


def test_predictions_carry_the_calibrated_estimate(model16, shards16, tmp_path):
    cal = tmp_path / "calibration.json"
    cal.write_text('{"calibration": {"a": 0.5, "b": 0.98, "scatter": 0.1}}')
    table = _predict(model16, shards16, tmp_path, calibration_path=str(cal))
    expected = calibrated(table["m200c_est"].to_numpy(), read_calibration(cal))
    np.testing.assert_allclose(table["m200c_cal"], expected, rtol=1e-12)


def test_no_calibration_from_an_untrained_network(model16, tmp_path, monkeypatch):
    """Medians <= 0 give no fit: the file says why, and the calibrated estimates are NaN."""

    def negative(net, inputs, progress):
        return -np.ones(inputs.shape[:3] + (2,), dtype=np.float32)

    monkeypatch.setattr(predict_mod, "_predict", negative)
    out = tmp_path / "calibration.json"
    result = _calibrate(model16, out)
    assert result["calibration"] is None and "positive" in result["error"]
    assert read_calibration(out) is None
    assert np.isnan(calibrated(np.array([1e14]), read_calibration(out))).all()


def test_the_validation_belt_gives_every_test_map_its_intervals(
    model16, shards16, tmp_path, monkeypatch
):
    """calibrate_network fits the intervals' belt on the validation maps (a noisy response
    here); predict_set then gives each test map ordered intervals and a PIT."""
    rng = np.random.default_rng(0)
    exact = _fake_predict(model16)

    def noisy(net, inputs, progress):
        out = exact(net, inputs, progress)
        c = inputs.shape[1] // 2
        out[:, c, c, 1] *= np.exp(rng.normal(0, 0.2, len(out))).astype(np.float32)
        return out

    monkeypatch.setattr(predict_mod, "_predict", noisy)
    cal = tmp_path / "calibration.json"
    belt = _calibrate(model16, cal)["belt"]
    assert len(belt["ln_m200c"]) == len(MASSES) and belt["n_maps"][0] >= 3
    monkeypatch.undo()
    table = _predict(model16, shards16, tmp_path, calibration_path=str(cal))
    lo2, lo, hi, hi2 = (table[c].to_numpy() for c in INTERVAL_COLUMNS[:4])
    assert np.all((lo2 <= lo) & (lo <= hi) & (hi <= hi2)) and np.all(lo2 >= 0)
    assert np.all((table["pit"] >= 0) & (table["pit"] <= 1))
