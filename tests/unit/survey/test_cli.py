"""The ``szmass`` command on the committed CPU model: its options, the output catalogue's
layout and flags on a small noise map, and one clear error per bad input before any work."""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from szmass.cli import DEFAULT_MODEL, main
from szmass.survey.predict import OUTPUT_COLUMNS

from .test_inputs import PIXEL, car_header, write_map


@pytest.fixture(scope="module")
def noise_map(tmp_path_factory):
    """A 0.5 deg CAR map of 5 uK-arcmin white noise at RA 0 with a 1' beam keyword."""
    root = tmp_path_factory.mktemp("cli")
    n = 120
    header = car_header(n)
    header["BEAMFWHM"] = 1.0
    data = np.random.default_rng(2).normal(0, 5.0 / PIXEL, (n, n))
    return write_map(root / "map.fits", data, header)


def _catalogue(path, rows):
    pd.DataFrame(rows, columns=["name", "ra", "dec", "z", "richness"]).to_csv(path, index=False)
    return path


def test_help_explains_every_option_with_units():
    out = subprocess.run(
        [sys.executable, "-m", "szmass", "predict", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--map", "--catalogue", "--out", "--model", "--weights", "--beam-fwhm"):
        assert option in out
    assert "[deg]" in out and "[arcmin]" in out and "uK" in out


def test_info_prints_the_card(capsys):
    assert main(["info", str(DEFAULT_MODEL)]) == 0
    out = capsys.readouterr().out
    assert "beam 1' FWHM" in out and "z 0.7-0.7" in out and "scatter0" in out


def test_predict_writes_every_row_in_order_with_flags(noise_map, tmp_path):
    # the map's centre is RA 0, Dec 0; its half-side 0.25 deg: "edge" is 0.23 deg west
    cat = _catalogue(
        tmp_path / "cat.csv",
        [
            ("centre", 0.0, 0.0, 0.7, 5),
            ("far", 30.0, 0.0, 0.7, 6),
            ("edge", 359.77, 0.0, 0.7, 7),
            ("low_z", 0.05, 0.05, 0.2, 8),
        ],
    )
    out = tmp_path / "out.csv"
    assert (
        main(["predict", "--map", str(noise_map), "--catalogue", str(cat), "--out", str(out)]) == 0
    )
    table = pd.read_csv(out)
    assert list(table["name"]) == ["centre", "far", "edge", "low_z"]
    assert list(table["richness"]) == [5, 6, 7, 8]
    assert set(OUTPUT_COLUMNS) <= set(table.columns)
    flags = dict(zip(table["name"], table["flag"], strict=True))
    assert flags["far"] == "outside_map" and np.isnan(table["m200c"][1])
    assert flags["edge"].startswith("edge")
    assert "z_outside_training" in flags["low_z"]
    # a noise map holds no cluster: the filter's S/N is noise, |S/N| < 4 at every position
    assert np.all(np.abs(table["mf_snr"].dropna()) < 4)


def test_predict_writes_a_fits_table_and_keeps_clashing_columns(noise_map, tmp_path):
    """A catalogue's own m500c (a survey's, say) is kept as m500c_input beside szmass's; the
    index column pandas writes ("Unnamed: 0") becomes a FITS-safe name."""
    cat = tmp_path / "cat.csv"
    pd.DataFrame({"name": ["a"], "ra": [0.0], "dec": [0.0], "m500c": [3e14]}).to_csv(cat)
    out = tmp_path / "out.fits"
    main(["predict", "--map", str(noise_map), "--catalogue", str(cat), "--out", str(out)])
    table = Table.read(out)
    assert list(table["name"]) == ["a"] and table["m500c_input"][0] == 3e14
    assert table["m500c"][0] != 3e14 and "Unnamed__0" in table.colnames


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--map": "missing.fits"}, "map .*missing.fits does not exist"),
        ({"--catalogue": "missing.csv"}, "catalogue .*missing.csv does not exist"),
        ({"--model": "."}, "lacks mresunet.keras"),
        ({"--beam-fwhm": "1.4"}, "beam FWHM 1.4' differs from the model's 1'"),
    ],
)
def test_bad_inputs_give_one_clear_error(noise_map, tmp_path, capsys, change, message):
    cat = _catalogue(tmp_path / "cat.csv", [("a", 0.0, 0.0, 0.7, 1)])
    args = {"--map": str(noise_map), "--catalogue": str(cat), "--out": str(tmp_path / "o.csv")}
    args.update(
        {k: str(tmp_path / v) if v.endswith((".fits", ".csv")) else v for k, v in change.items()}
    )
    if change.get("--model") == ".":
        args["--model"] = str(tmp_path)
    assert main(["predict", *(x for kv in args.items() for x in kv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("szmass predict: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "o.csv").exists()
