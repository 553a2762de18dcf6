"""The full tiny run (config/test.yaml) in a temporary directory: outputs, shard schema, the
training stage's sets and model, and what a change reruns."""

import csv
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from szmass.config import (
    REALISTIC_SHARD,
    eval_sets,
    grid_shards,
    mass_label,
    scatter_shards,
    train_shards,
)
from szmass.sky.cosmology import COSMOLOGY_KEYS
from szmass.sky.maps import apodization_window

from . import smk

pytestmark = pytest.mark.slow

with open(smk.REPO / "config" / "test.yaml") as _f:
    CONFIG = yaml.safe_load(_f)
SHARDS = grid_shards(CONFIG) + scatter_shards(CONFIG)
SPECTRA = "results/spectra/spectra.ecsv"
DATASETS = (
    "results/datasets/train.zarr",
    "results/datasets/val.zarr",
    "results/datasets/normalization.json",
)
MODEL_OUTPUTS = (
    "results/model/mresunet.keras",
    "results/model/history.csv",
    "results/model/normalization.json",
)
SPLIT, MODEL = DATASETS[0], MODEL_OUTPUTS[0]  # the jobs, by their first output
NETCAL = "results/model/calibration.json"  # the network's calibration (calibrate_network)
CARD = "results/model/model_card.json"  # the model card and its filter (write_model_card)
SURVEY = "results/survey/testmap.fits"  # the survey-like test map (make_survey_map)
PREDICTED = "results/predict/testmap.csv"  # szmass predict on it (predict_catalogue)


def _open(run_dir, shard) -> xr.Dataset:
    """A plain ``xr.open_zarr``, which must be silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(run_dir / shard)


def test_outputs_exist(tiny_run):
    assert (tiny_run.path / SPECTRA).is_file()
    for shard in SHARDS:
        assert (tiny_run.path / shard / "zarr.json").is_file(), shard
    # nothing else (no temporaries) beside the shards
    for set_name in ("grid", "scatter"):
        listed = sorted(os.listdir(tiny_run.path / "results" / "sims" / set_name))
        assert listed == sorted(s.split("/")[-1] for s in SHARDS if f"/{set_name}/" in s)
    # the training stage: its outputs and nothing else (no checkpoint, no temporaries)
    model_dir = (*MODEL_OUTPUTS, NETCAL, CARD, "results/model/matched_filter.npz")
    for directory, outputs in (("datasets", DATASETS), ("model", model_dir)):
        listed = sorted(os.listdir(tiny_run.path / "results" / directory))
        assert listed == sorted(p.split("/")[-1] for p in outputs), directory
    # the evaluation: its tables, figures and nothing else
    for name in SETS:
        listed = sorted(os.listdir(tiny_run.path / "results" / "eval" / name))
        assert listed == ["mean_maps.npz", "predictions.csv"], name
    listed = sorted(os.listdir(tiny_run.path / "results" / "baseline"))
    assert listed == sorted([*SETS, "calibration.json"])
    formats = CONFIG["figures"]["formats"]
    listed = sorted(os.listdir(tiny_run.path / "results" / "figures"))
    assert listed == sorted(f"{n}.{ext}" for n in FIGURE_RULES.values() for ext in formats)
    n_sets = len(eval_sets(CONFIG))
    assert smk.job_stats(tiny_run.output) == {
        "compute_spectra": 1,
        "simulate_shard": len(SHARDS),
        "simulate_realistic": 1,
        "split_dataset": 1,
        "train_model": 1,
        "calibrate_network": 1,
        "predict_set": n_sets,
        "calibrate_baseline": 1,
        "baseline_set": n_sets,
        "summarize_results": 1,
        **dict.fromkeys(FIGURE_RULES, 1),
        "write_model_card": 1,
        "make_survey_map": 1,
        "predict_catalogue": 1,
        "all": 1,
    }
    # szmass predict on the survey-like map: every truth row, the truth's masses kept aside
    predicted = pd.read_csv(tiny_run.path / PREDICTED)
    truth = pd.read_csv(tiny_run.path / "results/survey/testmap_truth.csv")
    assert list(predicted["name"]) == list(truth["name"])
    assert list(predicted["m200c_input"]) == list(truth["m200c"])


@pytest.mark.parametrize("shard", SHARDS)
def test_shard_schema(tiny_run, shard):
    ds = _open(tiny_run.path, shard)
    sky, npix = CONFIG["sky"], CONFIG["sky"]["npix"]
    n = CONFIG["grid"]["n_realizations"] if "/grid/" in shard else CONFIG["scatter"]["n_clusters"]

    for name in ("sky", "sz"):
        var = ds[name]
        assert var.dims == ("realization", "y", "x"), name
        assert var.shape == (n, npix, npix), name
        assert var.dtype == np.float32, name
        assert var.attrs["units"] == "uK", name
        assert np.all(np.isfinite(var.values)), name
    for name in ("m200c", "m500c", "z", "ln_scatter"):
        assert ds[name].dims == ("realization",), name
        assert ds[name].shape == (n,), name
        assert "units" in ds[name].attrs, name
    assert ds.m200c.attrs["units"] == ds.m500c.attrs["units"] == "Msun"
    np.testing.assert_array_equal(ds.realization.values, np.arange(n))

    for axis in ("x", "y"):
        coord = ds[axis]
        assert coord.dims == (axis,)
        assert coord.attrs["units"] == "arcmin"
        assert coord.values[npix // 2] == 0.0
        np.testing.assert_allclose(np.diff(coord.values), sky["pixel_arcmin"], rtol=1e-12)

    attrs = ds.attrs
    assert attrs["seed"] == CONFIG["seed"]
    for key, value in sky.items():
        assert attrs[f"sky_{key}"] == value, key
    for key in (*COSMOLOGY_KEYS, "sigma8"):
        assert f"cosmo_{key}" in attrs, key
    for key in COSMOLOGY_KEYS:
        assert attrs[f"cosmo_{key}"] == CONFIG["cosmology"][key], key
    assert 0.7 < attrs["cosmo_sigma8"] < 0.9
    assert attrs["szmass_version"]

    np.testing.assert_array_equal(ds.z.values, CONFIG["cluster"]["redshift"])
    assert np.all(ds.m500c.values < ds.m200c.values)
    # the cluster sits on pixel (npix/2, npix/2): tSZ at 150 GHz is a decrement
    mean_sz = ds.sz.mean("realization").values
    assert np.unravel_index(np.argmin(mean_sz), mean_sz.shape) == (npix // 2, npix // 2)


@pytest.mark.parametrize("mass", CONFIG["grid"]["masses"])
def test_grid_shard_contents(tiny_run, mass):
    ds = _open(tiny_run.path, f"results/sims/grid/M{mass_label(mass)}.zarr")
    assert ds.attrs["set"] == "grid"
    np.testing.assert_array_equal(ds.m200c.values, mass * 1e14)
    assert len(np.unique(ds.ln_scatter.values)) == ds.sizes["realization"]
    assert ds.attrs["sigma_int"] == CONFIG["cluster"]["sigma_int"]


def test_scatter_sets_share_clusters_and_sky(tiny_run):
    a = _open(tiny_run.path, "results/sims/scatter/sigma0.2.zarr").load()
    b = _open(tiny_run.path, "results/sims/scatter/sigma0.zarr").load()
    lo, hi = CONFIG["scatter"]["mass_range"]
    np.testing.assert_array_equal(a.m200c.values, b.m200c.values)
    np.testing.assert_array_equal(a.m500c.values, b.m500c.values)
    assert np.all((a.m200c.values >= lo * 1e14) & (a.m200c.values <= hi * 1e14))
    assert len(np.unique(a.m200c.values)) == a.sizes["realization"]
    assert np.all(b.ln_scatter.values == 0.0)
    assert np.all(a.ln_scatter.values != 0.0)
    # same CMB, foregrounds and noise: the sky minus the (apodized) cluster agrees
    window = apodization_window(CONFIG["sky"]["npix"], CONFIG["sky"]["apodization_width_pix"])
    rest_a = a.sky.values - window * a.sz.values
    rest_b = b.sky.values - window * b.sz.values
    np.testing.assert_allclose(rest_a, rest_b, atol=1e-3)  # float32 rounding, ~100 uK maps


def test_grid_shards_differ(tiny_run):
    """Each mass has its own streams: no two grid shards share a field."""
    skies = [_open(tiny_run.path, s).sky.values for s in grid_shards(CONFIG)]
    for i in range(len(skies)):
        for j in range(i + 1, len(skies)):
            assert not np.allclose(skies[i] - skies[j], 0.0, atol=50.0)


def test_datasets(tiny_run):
    """The training and validation sets of config/test.yaml's split, normalised."""
    norm = json.loads((tiny_run.path / DATASETS[2]).read_text())
    split, npix = CONFIG["split"], CONFIG["sky"]["npix"]
    masses = np.array(CONFIG["split"]["train_masses"]) * 1e14
    assert norm["npix"] == npix and norm["pixel_arcmin"] == CONFIG["sky"]["pixel_arcmin"]
    assert norm["m_norm_msun"] == pytest.approx(masses.mean(), rel=1e-12)
    for path, key in ((DATASETS[0], "train"), (DATASETS[1], "val")):
        ds = _open(tiny_run.path, path).load()
        lo, hi = split[key]
        n = (hi - lo) * len(masses)
        assert ds.inputs.shape == (n, npix, npix, 1), key
        assert ds.labels.shape == (n, npix, npix, 2), key
        np.testing.assert_array_equal(ds.m200c.values, np.repeat(masses, hi - lo))
        np.testing.assert_array_equal(ds.realization.values, np.tile(np.arange(lo, hi), 3))
        # the mass label peaks on the central pixel at M200c / M_norm
        centre = ds.labels.isel(label=1).values[:, npix // 2, npix // 2]
        np.testing.assert_allclose(centre, ds.m200c.values / norm["m_norm_msun"], rtol=1e-6)
        if key == "train":
            assert np.abs(ds.inputs.values).max() == 1.0
            assert norm["sky_scale"] == pytest.approx(
                max(
                    float(abs(_open(tiny_run.path, s).sky.values[lo:hi]).max())
                    for s in grid_shards(CONFIG)
                ),
                rel=1e-7,
            )


def test_trained_model(tiny_run):
    """The model loads with plain Keras, has the configured width, predicts two channels,
    and its normalization (the data set's, plus the training's summary) travels with it."""
    import keras

    from szmass.network.model import build_mresunet

    net = keras.saving.load_model(tiny_run.path / MODEL_OUTPUTS[0])
    npix = CONFIG["sky"]["npix"]
    assert net.count_params() == build_mresunet(input_size=npix, **CONFIG["model"]).count_params()
    val = _open(tiny_run.path, DATASETS[1]).load()
    pred = net.predict(val.inputs.values, verbose=0)
    assert pred.shape == (val.sizes["sample"], npix, npix, 2)
    assert np.all(np.isfinite(pred))

    with open(tiny_run.path / MODEL_OUTPUTS[1], newline="") as f:
        history = list(csv.DictReader(f))
    n_epochs = CONFIG["training"]["max_epochs"]
    assert [int(r["epoch"]) for r in history] == list(range(1, n_epochs + 1))
    summary = json.loads((tiny_run.path / MODEL_OUTPUTS[2]).read_text())
    norm = json.loads((tiny_run.path / DATASETS[2]).read_text())
    assert {k: summary[k] for k in norm} == norm
    val_losses = [float(r["val_loss"]) for r in history]
    assert summary["best_epoch"] == int(np.argmin(val_losses)) + 1
    log = (tiny_run.path / "logs" / "train_model.log").read_text()
    assert f"epoch {n_epochs}/{n_epochs}" in log


def _mtimes(run_dir):
    return {
        p: os.stat(run_dir / p).st_mtime_ns
        for p in [
            SPECTRA,
            *SHARDS,
            *DATASETS,
            *MODEL_OUTPUTS,
            *PRED.values(),
            *BASE.values(),
            CALIB,
            SUMMARY,
            *FIG.values(),
        ]
    }


def test_rerun_is_a_noop(tiny_run):
    before = _mtimes(tiny_run.path)
    proc = smk.run(tiny_run.path, "--cores", "2", "--configfile", "config/test.yaml")
    assert proc.returncode == 0, proc.stdout
    assert "Nothing to be done" in proc.stdout, proc.stdout
    assert _mtimes(tiny_run.path) == before


# --- what a config change reruns, and why -------------------------------------------------

GRID = {s for s in SHARDS if "/grid/" in s}
SCATTER = {s for s in SHARDS if "/scatter/" in s}
TRAIN_SHARDS = set(train_shards(CONFIG))
PARAMS_CHANGED = "Params have changed since last execution"
INPUTS_CHANGED = "Set of input files has changed since last execution"
MISSING = "Missing output files"
#: Any reason: a job downstream of a changed one (its inputs will be rewritten).
DOWNSTREAM = ""

SETS = eval_sets(CONFIG)
PRED = {name: f"results/eval/{name}/predictions.csv" for name in SETS}
BASE = {name: f"results/baseline/{name}/predictions.csv" for name in SETS}
CALIB = "results/baseline/calibration.json"
SUMMARY = "results/summary.json"
FIGURE_RULES = {
    "plot_example": "fig2_example",
    "plot_sz_maps": "fig3_sz_maps",
    "plot_mass_recovery": "fig4_mass_recovery",
    "plot_scatter": "fig5_scatter",
    "plot_realistic": "fig6_realistic",
    "plot_baseline": "fig7_baseline",
    "plot_coverage": "fig8_coverage",
}
FIG = {rule: f"results/figures/{name}.png" for rule, name in FIGURE_RULES.items()}
GRID_SETS = {name for name, s in SETS.items() if s["kind"] == "grid"}


def _set_of(shard: str) -> str:
    return next(name for name, s in SETS.items() if shard in s["shards"])


#: The workflow's DAG, written down independently of Snakemake: each job (by its first output)
#: -> the jobs that read one of its outputs.
DAG = {
    SPECTRA: {*SHARDS, REALISTIC_SHARD, CALIB, *BASE.values(), SURVEY, CARD},
    **{
        shard: {PRED[_set_of(shard)], BASE[_set_of(shard)]}
        | ({SPLIT, CALIB} if shard in TRAIN_SHARDS else set())
        | ({FIG["plot_example"]} if shard.endswith(f"/M{mass_label(4)}.zarr") else set())
        | ({SUMMARY} if shard.endswith("/sigma0.zarr") else set())
        for shard in SHARDS
    },
    REALISTIC_SHARD: {PRED["realistic"], BASE["realistic"], SUMMARY, FIG["plot_realistic"]},
    SPLIT: {MODEL, NETCAL, *PRED.values(), FIG["plot_example"]},
    MODEL: {NETCAL, *PRED.values(), SUMMARY, CARD, PREDICTED},
    NETCAL: {*PRED.values(), PREDICTED},
    CALIB: {*BASE.values(), SUMMARY, CARD},
    CARD: {PREDICTED},
    SURVEY: {PREDICTED},
    PREDICTED: set(),
    **{
        path: {SUMMARY}
        | ({FIG["plot_sz_maps"]} if name in GRID_SETS else set())
        | ({FIG["plot_scatter"]} if name.startswith("scatter") else set())
        | ({FIG["plot_realistic"]} if name == "realistic" else set())
        for name, path in PRED.items()
    },
    **{path: {SUMMARY} for path in BASE.values()},
    SUMMARY: {
        FIG[r]
        for r in (
            "plot_mass_recovery",
            "plot_scatter",
            "plot_realistic",
            "plot_baseline",
            "plot_coverage",
        )
    }
    | {CARD},
    **{path: set() for path in FIG.values()},
}


def rerun(direct: dict[str, str | tuple]) -> dict[str, str | tuple]:
    """The jobs ``direct`` and everything downstream of them in ``DAG``."""
    expected, todo = dict(direct), list(direct)
    while todo:
        for child in DAG.get(todo.pop(), ()):  # a job new to the config: its children are listed
            if child not in expected:
                expected[child] = DOWNSTREAM
                todo.append(child)
    return expected


def updated_by(*files: str) -> tuple[str, frozenset]:
    """The reason 'Input files updated by another job: <files>' (listed in any order)."""
    return ("Input files updated by another job", frozenset(files))


def reason_matches(reason: str, expected: str | tuple[str, frozenset]) -> bool:
    if isinstance(expected, str):  # one of the '; '-separated reasons
        return any(part.startswith(expected) for part in reason.split("; "))
    prefix, files = expected
    for part in reason.split("; "):
        head, _, listed = part.partition(": ")
        if head == prefix:
            return frozenset(listed.split(", ")) == files
    return False


#: Changed training data: the split reruns, and so does the training.
RETRAIN = {SPLIT: updated_by(*TRAIN_SHARDS), MODEL: updated_by(*DATASETS)}
#: Changed split: the training reruns.
NEW_SPLIT = {SPLIT: PARAMS_CHANGED, MODEL: updated_by(*DATASETS)}

RERUNS = {
    # changed key: (edit, {job: reason} of the jobs it changes directly; what follows them in
    # DAG must run too, and nothing else)
    "cluster.sigma_int": (
        smk.set_key("cluster", "sigma_int", 0.3),
        {**dict.fromkeys(GRID, PARAMS_CHANGED), **RETRAIN, SURVEY: PARAMS_CHANGED},
    ),
    "scatter.n_clusters": (
        # the scatter sets are test sets: no retraining
        smk.set_key("scatter", "n_clusters", 11),
        dict.fromkeys(SCATTER, PARAMS_CHANGED),
    ),
    "grid.n_realizations": (
        smk.set_key("grid", "n_realizations", 13),
        {**dict.fromkeys(GRID, PARAMS_CHANGED), **RETRAIN},
    ),
    "grid.masses": (
        # a new mass outside the training masses: its shard, and the extrapolated set's jobs
        smk.set_key("grid", "masses", [*CONFIG["grid"]["masses"], 5]),
        {
            "results/sims/grid/M5.zarr": MISSING,
            PRED["extrapolated"]: DOWNSTREAM,
            BASE["extrapolated"]: DOWNSTREAM,
        },
    ),
    "sky.noise_uk_arcmin": (
        # Snakemake names one reason: the filter jobs, whose params also changed, are listed
        # as updated by the new shards
        smk.set_key("sky", "noise_uk_arcmin", 6.0),
        {**dict.fromkeys([*SHARDS, REALISTIC_SHARD, SURVEY], PARAMS_CHANGED), **RETRAIN},
    ),
    "seed": (
        smk.set_key("seed", 8),
        {**dict.fromkeys([*SHARDS, REALISTIC_SHARD, SURVEY], PARAMS_CHANGED), **RETRAIN},
    ),
    "spectra.foregrounds": (
        smk.set_key("spectra", "foregrounds", "d3000_uk2", "ksz", 3.0),
        {SPECTRA: PARAMS_CHANGED, **dict.fromkeys(SHARDS, updated_by(SPECTRA)), **RETRAIN},
    ),
    "split.train": (smk.set_key("split", "train", [0, 5]), {**NEW_SPLIT, CALIB: PARAMS_CHANGED}),
    "split.val": (smk.set_key("split", "val", [6, 8]), NEW_SPLIT),
    "split.train_masses": (
        smk.set_key("split", "train_masses", [1, 2]),
        {SPLIT: INPUTS_CHANGED, MODEL: updated_by(*DATASETS), CALIB: INPUTS_CHANGED},
    ),
    "split.test": (
        # the grid test sets read the test range; the scatter and realistic sets do not
        smk.set_key("split", "test", [9, 11]),
        {PRED[n]: PARAMS_CHANGED for n in GRID_SETS} | {BASE[n]: PARAMS_CHANGED for n in GRID_SETS},
    ),
    "training.learning_rate": (
        smk.set_key("training", "learning_rate", 2e-3),
        {MODEL: PARAMS_CHANGED},
    ),
    "training.max_epochs": (smk.set_key("training", "max_epochs", 3), {MODEL: PARAMS_CHANGED}),
    "training.readout_weight": (
        smk.set_key("training", "readout_weight", 0.5),
        {MODEL: PARAMS_CHANGED},
    ),
    "model.base_filters": (smk.set_key("model", "base_filters", 8), {MODEL: PARAMS_CHANGED}),
    "model.dropout_placement": (
        smk.set_key("model", "dropout_placement", "encoder"),
        {MODEL: PARAMS_CHANGED},
    ),
    "realistic.n_clumps": (
        smk.set_key("realistic", "n_clumps", 2),
        {REALISTIC_SHARD: PARAMS_CHANGED},
    ),
    "baseline.n_scales": (
        smk.set_key("baseline", "n_scales", 8),
        {CALIB: PARAMS_CHANGED},
    ),
    "evaluation.n_bootstrap": (
        smk.set_key("evaluation", "n_bootstrap", 200),
        {SUMMARY: PARAMS_CHANGED},
    ),
    # figure options rerun only the figures
    "figures.dpi": (
        smk.set_key("figures", "dpi", 100),
        dict.fromkeys(FIG.values(), PARAMS_CHANGED),
    ),
    "figures.example_realization": (
        smk.set_key("figures", "example_realization", 1),
        {FIG["plot_example"]: PARAMS_CHANGED},
    ),
    "evaluation.sz_masses": (
        smk.set_key("evaluation", "sz_masses", [2]),
        {SUMMARY: PARAMS_CHANGED, FIG["plot_sz_maps"]: PARAMS_CHANGED},
    ),
}


@pytest.mark.parametrize("key", list(RERUNS))
def test_config_change_reruns_what_it_affects(tiny_run, tmp_path, key):
    edit, direct = RERUNS[key]
    expected = rerun(direct)
    config = smk.write_config(tmp_path / "changed.yaml", edit)
    proc = smk.run(tiny_run.path, "-n", "--configfile", str(config))
    assert proc.returncode == 0, proc.stdout
    jobs = smk.jobs(proc.stdout)
    jobs.pop("all", None)
    assert set(jobs) == set(expected), proc.stdout
    for job, reason in expected.items():
        assert reason_matches(jobs[job], reason), (job, jobs[job])


def test_config_key_order_does_not_rerun(tiny_run, tmp_path):
    with open(smk.REPO / "config" / "test.yaml") as f:
        config = yaml.safe_load(f)
    path = tmp_path / "sorted.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=True)
    proc = smk.run(tiny_run.path, "-n", "--configfile", str(path))
    assert proc.returncode == 0, proc.stdout
    assert "Nothing to be done" in proc.stdout, smk.job_stats(proc.stdout)


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        pytest.param("sky/spectra", {SPECTRA}, id="spectra"),
        pytest.param("units", {*SHARDS, REALISTIC_SHARD, SPLIT, SURVEY}, id="units"),
        pytest.param(
            "network/dataset", {SPLIT, MODEL, *PRED.values(), FIG["plot_example"]}, id="dataset"
        ),
        pytest.param("network/model", {MODEL}, id="model"),
        pytest.param("network/train", {MODEL}, id="train"),
        pytest.param("baseline/matched_filter", {CALIB, *BASE.values()}, id="matched_filter"),
        pytest.param("baseline/redshift", {CALIB, *BASE.values()}, id="baseline_redshift"),
        pytest.param(
            "calibration", {CALIB, *BASE.values(), NETCAL, *PRED.values()}, id="calibration"
        ),
        pytest.param("network/readout", {MODEL}, id="readout"),
        pytest.param("network/callback", {MODEL}, id="callback"),
        pytest.param("network/template", {NETCAL, *PRED.values()}, id="template"),
        pytest.param("realistic/standin", {REALISTIC_SHARD}, id="realistic"),
        pytest.param("realistic/b12", {REALISTIC_SHARD}, id="b12"),
        pytest.param("realistic/los_halos", {REALISTIC_SHARD}, id="los_halos"),
        pytest.param(
            "report/stats", {SUMMARY, FIG["plot_scatter"], FIG["plot_realistic"]}, id="stats"
        ),
        pytest.param("report/figures", set(FIG.values()), id="figures"),
        pytest.param("survey/testmap", {SURVEY}, id="testmap"),
        pytest.param("survey/card", {CARD}, id="card"),
        pytest.param("survey/cutouts", {PREDICTED}, id="cutouts"),
    ],
)
def test_code_change_reruns_its_stages(tiny_run_copy, module, expected):
    """An edit of a src/szmass module reruns the rules that list it as input, and what
    follows them.

    (Snakemake 9 ignores a bare mtime bump when the file's checksum is unchanged.)
    """
    with open(tiny_run_copy / "src" / "szmass" / f"{module}.py", "a") as f:
        f.write("\n# an edit\n")
    proc = smk.run(tiny_run_copy, "-n", "--configfile", "config/test.yaml")
    assert proc.returncode == 0, proc.stdout
    jobs = smk.jobs(proc.stdout)
    jobs.pop("all", None)
    assert set(jobs) == set(rerun(dict.fromkeys(expected, DOWNSTREAM))), proc.stdout


def test_copied_run_is_up_to_date(tiny_run_copy):
    """Guards test_code_change_reruns_its_stages: the copy alone reruns nothing."""
    proc = smk.run(tiny_run_copy, "-n", "--configfile", "config/test.yaml")
    assert "Nothing to be done" in proc.stdout, proc.stdout


def test_report_holds_figures_captions_and_tables(tiny_run_copy):
    """``snakemake --report``: one HTML file with every figure, its caption and the tables."""
    proc = smk.run(
        tiny_run_copy, "--report", "report.html", "--configfile", "config/test.yaml", timeout=300
    )
    assert proc.returncode == 0, proc.stdout
    html = (tiny_run_copy / "report.html").read_text()
    for name in FIGURE_RULES.values():
        assert f"{name}.png" in html, name
    assert "half the 16-84 range over" in html  # Figure 4's caption
    assert "claims.csv" in html and "per_mass.csv" in html
