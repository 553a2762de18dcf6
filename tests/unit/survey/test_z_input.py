"""``szmass predict`` with a model that takes the redshift (issue 16): each row's z goes into the
network, a missing z is an error naming the row, a z outside the trained range is flagged; the
card says the range and that the model takes z. A fixed-z model behaves as before."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from szmass.cli import DEFAULT_MODEL, main
from szmass.config import single_redshift
from szmass.network.model import build_mresunet
from szmass.survey.card import model_card
from szmass.survey.catalogue import InputError
from szmass.survey.predict import MF_Z, Z_OUTSIDE, Z_TOLERANCE, describe, predict_catalogue

from .test_inputs import PIXEL, car_header, write_map

pytestmark = [
    # Keras 3.15 converts TF variables with np.array(copy=False), which NumPy 2 deprecates.
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

#: The tiny z-input model's trained redshift range.
Z_RANGE = (0.3, 1.2)


@pytest.fixture(scope="module")
def noise_map(tmp_path_factory):
    """A 0.5 deg CAR map of 5 uK-arcmin white noise at RA 0 with a 1' beam keyword."""
    n = 120
    header = car_header(n)
    header["BEAMFWHM"] = 1.0
    data = np.random.default_rng(3).normal(0, 5.0 / PIXEL, (n, n))
    return write_map(tmp_path_factory.mktemp("zmap") / "map.fits", data, header)


@pytest.fixture(scope="module")
def z_model_dir(tmp_path_factory):
    """The committed model's directory with its network replaced by an untrained two-channel
    one, and a normalization and card of a training set at z 0.3-1.2."""
    root = tmp_path_factory.mktemp("zmodel") / "model"
    shutil.copytree(DEFAULT_MODEL, root)
    z_lo, z_hi = Z_RANGE
    norm = json.loads((root / "normalization.json").read_text())
    norm |= {
        "z_input": True,
        "z_centre": 0.5 * (z_lo + z_hi),
        "z_scale": 0.5 * (z_hi - z_lo),
        "z_min": z_lo,
        "z_max": z_hi,
    }
    (root / "normalization.json").write_text(json.dumps(norm))
    card = json.loads((root / "model_card.json").read_text())
    card |= {"redshift": {"min": z_lo, "max": z_hi}, "z_input": True}
    (root / "model_card.json").write_text(json.dumps(card))
    net = build_mresunet(input_size=40, input_channels=2, base_filters=2, depth=1, dropout=0.0)
    net.save(root / "mresunet.keras")
    return root


def _catalogue(path, rows):
    pd.DataFrame(rows, columns=["name", "ra", "dec", "z"]).to_csv(path, index=False)
    return path


def _predict(noise_map, cat, out, model):
    return predict_catalogue(map_path=noise_map, catalogue_path=cat, out_path=out, model_dir=model)


def test_each_row_z_goes_into_the_network(noise_map, z_model_dir, tmp_path):
    cat = _catalogue(
        tmp_path / "cat.csv",
        [
            ("a_low", 0.0, 0.0, 0.4),
            ("a_high", 0.0, 0.0, 1.1),
            ("a_edge", 0.0, 0.0, 1.2),
            ("b_out", 0.02, 0.02, 1.3),
            ("c_out", 0.02, -0.02, 0.25),
        ],
    )
    table = _predict(noise_map, cat, tmp_path / "out.csv", z_model_dir)
    flags = dict(zip(table["name"], table["flag"], strict=True))
    # the range is the trained one, without the fixed-z model's tolerance
    assert Z_OUTSIDE not in flags["a_low"] and Z_OUTSIDE not in flags["a_high"]
    assert Z_OUTSIDE not in flags["a_edge"]
    assert Z_OUTSIDE in flags["b_out"] and Z_OUTSIDE in flags["c_out"]
    m = table["m200c"].to_numpy()
    assert np.all(np.isfinite(m))
    # the same cutout at another z: another estimate (the z channel reaches the network)
    assert m[0] != m[1]


def test_nan_z_is_an_error_naming_the_row(noise_map, z_model_dir, tmp_path, capsys):
    cat = _catalogue(tmp_path / "cat.csv", [("a", 0.0, 0.0, 0.5), ("b", 0.0, 0.0, np.nan)])
    out = tmp_path / "out.csv"
    with pytest.raises(InputError, match=r"row 2, column z: missing.*takes each cluster's"):
        _predict(noise_map, cat, out, z_model_dir)
    args = ["predict", "--map", str(noise_map), "--catalogue", str(cat), "--out", str(out)]
    assert main([*args, "--model", str(z_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("szmass predict: ") and len(err.splitlines()) == 1
    assert "row 2" in err and "z 0.3-1.2" in err
    assert not out.exists()


def test_no_z_column_is_an_error(noise_map, z_model_dir, tmp_path):
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"name": ["a"], "ra": [0.0], "dec": [0.0]}).to_csv(cat, index=False)
    with pytest.raises(InputError, match="has no z column"):
        _predict(noise_map, cat, tmp_path / "out.csv", z_model_dir)


def test_fixed_z_model_flags_other_redshifts_and_needs_no_z(noise_map, tmp_path):
    """The committed (fixed z = 0.7) model: a missing z is the card's, others are flagged."""
    cat = _catalogue(
        tmp_path / "cat.csv",
        [("near", 0.0, 0.0, 0.73), ("none", 0.0, 0.0, np.nan), ("far", 0.0, 0.0, 1.0)],
    )
    table = _predict(noise_map, cat, tmp_path / "out.csv", DEFAULT_MODEL)
    flags = dict(zip(table["name"], table["flag"], strict=True))
    assert Z_OUTSIDE not in flags["near"] and Z_OUTSIDE not in flags["none"]
    assert Z_OUTSIDE in flags["far"]
    # the network takes no z: the same cutout gives the same estimate at any z
    assert table["m200c"].nunique() == 1


def test_card_states_the_trained_range_and_the_z_input(z_model_dir):
    assert "z 0.3-1.2 (a network input)" in describe(z_model_dir)
    assert "z 0.7-0.7," in describe(DEFAULT_MODEL)
    kwargs = {
        "sky": json.loads((DEFAULT_MODEL / "model_card.json").read_text())["sky"],
        "cluster": {"redshift": 0.7, "sigma_int": 0.2},
        "cosmo": {},
        "train_masses_1e14": [1, 8],
        "model": {},
        "training": {},
        "summary": None,
    }
    fixed = model_card(normalization={"best_epoch": 3}, **kwargs)
    assert fixed["redshift"] == {"min": 0.7, "max": 0.7} and fixed["z_input"] is False
    norm = {"z_input": True, "z_min": 0.2, "z_max": 1.5, "z_centre": 0.85, "z_scale": 0.65}
    card = model_card(normalization=norm, **kwargs)
    assert card["redshift"] == {"min": 0.2, "max": 1.5} and card["z_input"] is True


def test_matched_filter_columns_only_near_the_filters_redshift(noise_map, z_model_dir, tmp_path):
    """A z-input model's one matched filter is built at the middle of the trained range
    (``config.single_redshift``): clusters further than Z_TOLERANCE from it get NaN ``mf_``
    columns and the MF_Z flag, not a mass from a template of another redshift."""
    model = tmp_path / "model"
    shutil.copytree(z_model_dir, model)
    card = json.loads((model / "model_card.json").read_text())
    z_filter = single_redshift({"distribution": "uniform", "range": list(Z_RANGE)})
    assert z_filter == pytest.approx(0.75)
    card["matched_filter_z"] = z_filter
    (model / "model_card.json").write_text(json.dumps(card))
    near, far = 0.75 + 0.5 * Z_TOLERANCE, 1.1
    cat = _catalogue(tmp_path / "cat.csv", [("near", 0.0, 0.0, near), ("far", 0.0, 0.0, far)])
    table = _predict(noise_map, cat, tmp_path / "out.csv", model).set_index("name")
    mf_columns = [c for c in table.columns if c.startswith("mf_")]
    # a noise map: the near row's amplitude is a non-detection, with an S/N and an upper limit
    assert np.all(np.isfinite(table.loc["near", ["mf_snr", "mf_m200c_hi84", "mf_m200c_hi97p5"]]))
    assert table.loc["far", mf_columns].isna().all()
    assert MF_Z in table.loc["far", "flag"] and MF_Z not in table.loc["near", "flag"]
    assert np.isfinite(table.loc["far", "m200c"])  # the network still measures it
    assert single_redshift(0.7) == 0.7
