"""The redshift as a network input (issue 16): a training set at several redshifts gives the
network a second, constant input channel of the normalised z, stored in the normalization; a
set at one redshift gives exactly the single-channel inputs and normalization of before."""

import json
import logging
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from szmass.cli import DEFAULT_MODEL
from szmass.io import open_shard
from szmass.network.dataset import (
    NORMALIZATION_KEYS,
    Z_KEYS,
    input_channels,
    network_inputs,
    normalization_from_training,
    prepare,
    read_normalization,
    takes_z,
    write_normalization,
    z_normalization,
)
from szmass.network.fresh_skies import FreshSkies, scatter_free_sz
from szmass.network.model import build_mresunet
from szmass.network.predict import check_normalizations, load_network, predict_set
from szmass.network.train import load_set
from szmass.sky.simulate import simulate_shard

from ..conftest import CLUSTER, SHARD_SEED, TRAIN, VAL, sky, split, write_spectra
from .test_train import TRAINING, _tolerant_thread_settings

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

NPIX = 8
#: The two redshifts of the two-z set: the channel is (z - 0.6) / 0.3, i.e. -1 and +1.
REDSHIFTS = (0.3, 0.9)
MASSES = (2, 4)
TINY = {"base_filters": 2, "depth": 1, "n_substages": 4, "dropout": 0.0}


def _simulate(directory: Path, *, z: float, mass: float, spectra: Path) -> str:
    path = directory / f"M{mass:g}_z{z:g}.zarr"
    simulate_shard(
        spectra_path=str(spectra),
        out_path=str(path),
        set_name="grid",
        seed=SHARD_SEED,
        sky=sky(NPIX),
        cluster={**CLUSTER, "redshift": z},
        sigma_int=0.2,
        mass_1e14=mass,
        n_realizations=12,
    )
    return str(path)


@pytest.fixture(scope="module")
def twoz(tmp_path_factory):
    """Shards of masses 2 and 4e14 at z = 0.3 and 0.9 (8x8 pixels, 12 realizations each), split
    into a training and validation set."""
    root = tmp_path_factory.mktemp("twoz")
    spectra = write_spectra(root / "spectra.ecsv")
    shards = [_simulate(root, z=z, mass=m, spectra=spectra) for z in REDSHIFTS for m in MASSES]
    norm = split(shards, root)
    return {"root": root, "shards": shards, "norm": norm, "spectra": spectra}


def test_fixed_z_set_has_one_channel_and_the_old_keys(prepared8):
    norm = read_normalization(prepared8 / "normalization.json")
    assert set(norm) == {*NORMALIZATION_KEYS, "szmass_version"}
    assert not takes_z(norm) and input_channels(norm) == 1
    x, _ = load_set(prepared8 / "train.zarr", channels=1)
    assert x.shape[-1] == 1


def test_one_redshift_adds_no_keys():
    assert z_normalization(np.full(5, 0.7)) == {}
    with pytest.raises(ValueError, match="NaN"):
        z_normalization(np.array([0.3, np.nan]))


def test_two_z_set_has_the_z_channel(twoz):
    norm, root = twoz["norm"], twoz["root"]
    assert norm["z_input"] is True
    assert norm["z_min"] == pytest.approx(0.3) and norm["z_max"] == pytest.approx(0.9)
    assert norm["z_centre"] == pytest.approx(0.6) and norm["z_scale"] == pytest.approx(0.3)
    saved = read_normalization(root / "normalization.json")
    assert set(saved) == {*NORMALIZATION_KEYS, *Z_KEYS, "szmass_version"}
    train = xr.open_zarr(root / "train.zarr", consolidated=True)
    x = train["inputs"].values
    assert x.shape[-1] == 2 and x.dtype == np.float32
    # channel 1: constant over each map, -1 at z = 0.3 and +1 at z = 0.9 (shard order)
    n = TRAIN[1] - TRAIN[0]
    expected = np.repeat([-1.0, -1.0, 1.0, 1.0], n).astype(np.float32)
    np.testing.assert_allclose(x[..., 1], np.broadcast_to(expected[:, None, None], x.shape[:3]))
    # channel 0: the map over sky_scale, as for a fixed-z set
    sky0 = open_shard(twoz["shards"][0]).sky.isel(realization=slice(*TRAIN)).values
    np.testing.assert_array_equal(x[:n, ..., 0], sky0 / np.float32(norm["sky_scale"]))


def test_network_inputs_of_a_fixed_z_model_are_bit_for_bit_the_old_ones():
    """The committed model's normalization reads as before and its inputs are those of the
    expression used before issue 16 (float32 shards and float64 survey cutouts alike)."""
    norm = read_normalization(DEFAULT_MODEL / "normalization.json")
    assert not takes_z(norm)
    rng = np.random.default_rng(0)
    for sky_uk in (
        rng.normal(0, 50, (3, 40, 40)).astype(np.float32),
        rng.normal(0, 50, (3, 40, 40)),
    ):
        old_prepare = (sky_uk / norm["sky_scale"])[..., None].astype(np.float32)
        old_survey = (sky_uk / norm["sky_scale"]).astype(np.float32)[..., None]
        new = network_inputs(sky_uk, np.full(3, 0.4), norm)
        np.testing.assert_array_equal(new, old_prepare)
        np.testing.assert_array_equal(new, old_survey)


def test_committed_model_still_takes_one_channel():
    norm = read_normalization(DEFAULT_MODEL / "normalization.json")
    net = load_network(
        DEFAULT_MODEL / "mresunet.keras", npix=40, threads=1, source="test", channels=1
    )
    x = network_inputs(np.zeros((2, 40, 40), np.float32), None, norm)
    assert net.predict_on_batch(x).shape == (2, 40, 40, 2)
    with pytest.raises(ValueError, match="takes 1 input channel.*says 2"):
        load_network(DEFAULT_MODEL / "mresunet.keras", npix=40, threads=1, source="it", channels=2)


def test_read_normalization_checks_the_z_keys(twoz, tmp_path):
    norm = dict(twoz["norm"])
    del norm["z_scale"]
    write_normalization(norm, tmp_path / "n.json")
    with pytest.raises(ValueError, match="lacks.*z_scale"):
        read_normalization(tmp_path / "n.json")
    write_normalization({**twoz["norm"], "z_scale": 0.0}, tmp_path / "n.json")
    with pytest.raises(ValueError, match="z_scale = 0.0"):
        read_normalization(tmp_path / "n.json")


def test_z_model_and_fixed_z_data_are_refused(twoz, prepared8):
    fixed = read_normalization(prepared8 / "normalization.json")
    with pytest.raises(ValueError, match="z_input.*True.*False"):
        check_normalizations(twoz["norm"], fixed, model_path="m", data_path="d")
    other = {**twoz["norm"], "z_centre": 0.5}
    with pytest.raises(ValueError, match="z_centre"):
        check_normalizations(twoz["norm"], other, model_path="m", data_path="d")


def test_shard_with_nan_z_is_refused(twoz, tmp_path):
    ds = open_shard(twoz["shards"][0]).load()
    ds["z"] = ds.z.copy(data=np.where(np.arange(ds.sizes["realization"]) == 3, np.nan, ds.z))
    with pytest.raises(ValueError, match="bad-z.*'z' holds NaN"):
        prepare(ds, twoz["norm"], where="bad-z")


def test_fresh_skies_keep_each_cluster_z(twoz):
    train = xr.open_zarr(twoz["root"] / "train.zarr", consolidated=True)
    norm, labels, x = twoz["norm"], train["labels"].values, train["inputs"].values
    fresh = FreshSkies(
        sz_uk=scatter_free_sz(labels[..., 0], train["ln_scatter"].values, norm["sz_scale"]),
        spectra_path=str(twoz["spectra"]),
        sky=sky(NPIX),
        sigma_int=0.2,
        seed=SHARD_SEED,
        sky_scale=norm["sky_scale"],
        sz_scale=norm["sz_scale"],
        z_channel=x[:, 0, 0, 1],
    )
    inputs, _ = fresh.epoch(0)
    assert inputs.shape == x.shape
    np.testing.assert_array_equal(inputs[..., 1], x[..., 1])
    assert not np.allclose(inputs[..., 0], x[..., 0])  # new skies, same z


@pytest.fixture(scope="module")
def z_model(twoz, tmp_path_factory):
    """A tiny network trained one epoch (fresh skies) on the two-z set."""
    from szmass.network.train import train_model

    out = tmp_path_factory.mktemp("zmodel")
    root = twoz["root"]
    with _tolerant_thread_settings():
        state = train_model(
            train_path=str(root / "train.zarr"),
            val_path=str(root / "val.zarr"),
            normalization_path=str(root / "normalization.json"),
            out_model=str(out / "mresunet.keras"),
            out_history=str(out / "history.csv"),
            out_normalization=str(out / "normalization.json"),
            model=TINY,
            training={**TRAINING, "max_epochs": 1, "fresh_skies": True},
            seed=5,
            spectra_path=str(twoz["spectra"]),
            sky=sky(NPIX),
            sigma_int=0.2,
        )
    return {"out": out, "state": state}


def test_z_model_trains_and_takes_two_channels(z_model):
    import keras

    net = keras.saving.load_model(z_model["out"] / "mresunet.keras", compile=False)
    assert net.input_shape == (None, NPIX, NPIX, 2)
    saved = json.loads((z_model["out"] / "normalization.json").read_text())
    assert saved["z_input"] is True and saved["z_min"] == pytest.approx(0.3)
    assert z_model["state"]["epochs_done"] == 1


def test_z_model_predicts_with_each_map_z(z_model, twoz, tmp_path, caplog):
    import keras

    out, root = z_model["out"], twoz["root"]
    with caplog.at_level(logging.WARNING, logger="szmass.evaluate"):
        table = predict_set(
            model_path=str(out / "mresunet.keras"),
            model_normalization_path=str(out / "normalization.json"),
            data_normalization_path=str(root / "normalization.json"),
            shard_paths=twoz["shards"],
            realizations=list(VAL),
            out_predictions=str(tmp_path / "p.csv"),
        )
    assert np.all(np.isfinite(table["m200c_est"]))
    np.testing.assert_allclose(table["z"], np.repeat(REDSHIFTS, len(MASSES) * 4))
    # every map lies inside the trained range: no warning of it
    assert not [r for r in caplog.records if "redshift range" in r.getMessage()]
    # the estimate is the network's on the map and its own z; another z gives another answer
    norm = read_normalization(out / "normalization.json")
    net = keras.saving.load_model(out / "mresunet.keras", compile=False)
    ds = open_shard(twoz["shards"][0]).isel(realization=slice(*VAL))
    x = network_inputs(ds.sky.values, ds.z.values, norm)
    c = NPIX // 2
    own = net.predict_on_batch(x)[:, c, c, 1] * norm["m_norm_msun"]
    np.testing.assert_allclose(table["m200c_est"][:4], own, rtol=1e-5)
    x_other = network_inputs(ds.sky.values, np.full(4, 0.9), norm)
    other = net.predict_on_batch(x_other)[:, c, c, 1] * norm["m_norm_msun"]
    assert not np.allclose(other, own)


def test_z_model_warns_of_maps_outside_its_range(z_model, twoz, tmp_path, caplog):
    """A test shard at z = 1.5 for a model trained on 0.3-0.9: predicted, and logged."""
    out = z_model["out"]
    far = _simulate(tmp_path, z=1.5, mass=2, spectra=twoz["spectra"])
    with caplog.at_level(logging.WARNING, logger="szmass.evaluate"):
        predict_set(
            model_path=str(out / "mresunet.keras"),
            model_normalization_path=str(out / "normalization.json"),
            data_normalization_path=str(twoz["root"] / "normalization.json"),
            shard_paths=[far],
            realizations=list(VAL),
            out_predictions=str(tmp_path / "p.csv"),
        )
    assert any("outside the trained redshift range 0.3-0.9" in r.message for r in caplog.records)
    assert pd.read_csv(tmp_path / "p.csv")["z"].eq(1.5).all()


def test_model_builds_with_a_z_channel():
    wider = {**TINY, "base_filters": 4}
    net = build_mresunet(input_size=NPIX, input_channels=2, **wider)
    assert net.input_shape == (None, NPIX, NPIX, 2) and net.output_shape == (None, NPIX, NPIX, 2)
    one = build_mresunet(input_size=NPIX, **wider)
    assert one.input_shape == (None, NPIX, NPIX, 1)
    # the extra channel costs one input weight per filter of the first 3x3 convolution and of
    # its 1x1 projection
    assert net.count_params() - one.count_params() == 4 * 9 + 4
    with pytest.raises(ValueError, match="input_channels"):
        build_mresunet(input_size=NPIX, input_channels=0, **TINY)


def _film_pair(seed=0):
    """A channel-only and a FiLM network of the same weights (copied by layer name)."""
    wider = {**TINY, "base_filters": 4}
    keras.utils.set_random_seed(seed)
    channel = build_mresunet(input_size=NPIX, input_channels=2, **wider)
    film = build_mresunet(input_size=NPIX, input_channels=2, z_conditioning="film", **wider)
    for layer in channel.layers:
        if layer.weights:
            film.get_layer(layer.name).set_weights(layer.get_weights())
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, NPIX, NPIX, 2)).astype("float32")
    x[..., 1] = np.array([-1.0, 0.0, 0.8])[:, None, None]  # each map's constant z channel
    return channel, film, x


def test_film_starts_as_the_channel_network():
    """FiLM's scale starts at 1 and its shift at 0: the same weights give the same maps."""
    channel, film, x = _film_pair()
    film_only = [n for n in (layer.name for layer in film.layers) if "film" in n]
    assert film_only and not any("film" in layer.name for layer in channel.layers)
    np.testing.assert_allclose(film(x), channel(x), rtol=1e-5, atol=1e-6)
    # z's selector (2 fixed weights), 32 hidden units (32 + 32), then per block (depth 1:
    # enc0 4 filters, bridge 8, dec0 4) a scale and a shift of (32 + 1) weights per filter
    assert film.count_params() - channel.count_params() == 2 + 64 + 2 * 33 * (4 + 8 + 4)
    assert film.get_layer("film_z").trainable is False


def test_film_conditions_the_blocks_on_z():
    """With the first convolution blind to the z channel, only FiLM carries z: the output
    changes with z through a non-zero FiLM weight and not without it."""
    channel, film, x = _film_pair(1)
    for net in (channel, film):
        for name in ("enc0_d1_conv", "enc0_d1_proj"):
            kernel, bias = net.get_layer(name).get_weights()
            kernel[:, :, 1, :] = 0.0  # the z channel's weights
            net.get_layer(name).set_weights([kernel, bias])
    other_z = x.copy()
    other_z[..., 1] = 0.3
    np.testing.assert_allclose(channel(x), channel(other_z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(film(x), film(other_z), rtol=1e-5, atol=1e-6)  # identity FiLM
    g = film.get_layer("bridge_film_g")
    kernel, bias = g.get_weights()
    g.set_weights([np.full_like(kernel, 0.5), bias])
    assert not np.allclose(film(x), film(other_z), rtol=1e-3, atol=1e-4)


def test_film_round_trips_and_needs_a_z_input(tmp_path):
    _, film, x = _film_pair(2)
    film.save(tmp_path / "film.keras")
    loaded = keras.saving.load_model(tmp_path / "film.keras")
    np.testing.assert_array_equal(loaded(x), film(x))
    with pytest.raises(ValueError, match="z_conditioning 'film' needs a model that takes"):
        build_mresunet(input_size=NPIX, z_conditioning="film", **TINY)
    with pytest.raises(ValueError, match="z_conditioning is 'dense'"):
        build_mresunet(input_size=NPIX, input_channels=2, z_conditioning="dense", **TINY)


def test_normalization_from_training_of_a_single_z(shards16):
    norm = normalization_from_training([(open_shard(p), range(*TRAIN)) for p in shards16])
    assert not any(k.startswith("z_") for k in norm)
