"""szmass.config: cross-key checks, file names of the shards, each shard job's params."""

import inspect

import pytest
import yaml

from szmass.config import (
    ConfigError,
    check_config,
    grid_shards,
    mass_label,
    scatter_shards,
    shard_spec,
    validate_config,
)
from szmass.sky.simulate import simulate_shard

SCHEMA = "workflow/schemas/config.schema.yaml"


# --- valid configurations ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper_config", "test_config"])
def test_shipped_configs_pass_schema_and_checks(name, request, repo):
    config = request.getfixturevalue(name)
    validate_config(config, repo / SCHEMA)
    check_config(config)


def _overlay(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` as Snakemake lays config files (mappings merged, key by key)."""
    out = dict(base)
    for key, value in over.items():
        merge = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _overlay(base[key], value) if merge else value
    return out


@pytest.mark.parametrize("preset", ["spt3g", "so_lat"])
@pytest.mark.parametrize("under", [[], ["cpu"]])
def test_survey_presets_pass_schema_and_checks(preset, under, paper_config, repo):
    """The survey presets (issue 16) over the paper config, alone and over config/cpu.yaml:
    valid, with a redshift distribution and the survey's beam and noise."""
    config = paper_config
    for name in [*under, preset]:
        config = _overlay(config, yaml.safe_load((repo / "config" / f"{name}.yaml").read_text()))
    validate_config(config, repo / SCHEMA)
    check_config(config)
    assert config["cluster"]["redshift"]["distribution"] == "uniform"
    assert config["sky"]["beam_fwhm_arcmin"] > paper_config["sky"]["beam_fwhm_arcmin"]
    if under:
        assert config["model"]["base_filters"] == 16


def test_schema_describes_every_key(repo):
    """CONVENTIONS: a type (or $ref), a range and a description on every key."""
    with open(repo / SCHEMA) as f:
        schema = yaml.safe_load(f)
    problems = []

    def check(sub, where):
        if "description" not in sub:
            problems.append(f"{where}: no description")
        if "type" not in sub and "$ref" not in sub:
            problems.append(f"{where}: no type")
        if sub.get("type") in ("number", "integer"):
            if not {"minimum", "exclusiveMinimum"} & set(sub):
                problems.append(f"{where}: no lower bound")
            if not {"maximum", "exclusiveMaximum"} & set(sub):
                problems.append(f"{where}: no upper bound")

    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            where = f"{path}.{key}" if path else key
            check(sub, where)
            walk(sub, where)
            for i, branch in enumerate(sub.get("oneOf", [])):  # e.g. cluster.redshift
                check(branch, f"{where}.oneOf[{i}]")
                walk(branch, where)

    walk(schema, "")
    assert not problems


# --- schema failures: a few lines naming the dotted key, the value and what is allowed -----

#: At most this many lines for one schema failure (snakemake.utils.validate printed ~1300).
MAX_LINES_ONE_FAILURE = 3


def _schema_error(config, repo) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config, repo / SCHEMA, source="bad.yaml")
    return str(err.value)


def test_unknown_top_level_key_is_one_short_line(test_config, repo):
    test_config["seeed"] = 7
    text = _schema_error(test_config, repo)
    assert len(text.splitlines()) <= MAX_LINES_ONE_FAILURE, text
    assert "bad.yaml" in text.splitlines()[0]
    (line,) = [ln for ln in text.splitlines() if "seeed" in ln]
    assert line.strip().startswith("seeed: unknown key (value 7)")
    assert "did you mean 'seed'?" in line
    assert "allows: seed, cosmology, spectra" in line
    assert "$schema" not in text and "figures" in line  # the allowed keys, not the schema


def test_yaml_exponent_without_dot_gets_a_hint(test_config, repo):
    """YAML 1.1 (PyYAML, Snakemake) reads ``1e-4`` as a string: say how to write it."""
    test_config["training"].update(yaml.safe_load("learning_rate: 1e-4"))
    assert test_config["training"]["learning_rate"] == "1e-4"
    text = _schema_error(test_config, repo)
    assert len(text.splitlines()) <= MAX_LINES_ONE_FAILURE, text
    assert "training.learning_rate: '1e-4' is a string" in text
    assert "0 < value <= 1" in text
    assert "write 1.0e-4" in text


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        (
            "sky",
            "noise_uk_arcmin",
            -1.0,
            "sky.noise_uk_arcmin: -1.0 is out of range; allowed: a number, 0 <= value <= 1000",
        ),
        (
            "sky",
            "npix",
            37,
            "sky.npix: 37 is out of range; allowed: an integer, "
            "8 <= value <= 1024, a multiple of 2",
        ),
        (
            "model",
            "dropout_placement",
            "bridge",
            "model.dropout_placement: 'bridge' is not "
            "allowed; allowed: one of decoder, encoder, none",
        ),
        (
            "figures",
            "formats",
            ["gif"],
            "figures.formats[0]: 'gif' is not allowed; allowed: one of png, pdf, svg",
        ),
        (
            "training",
            "epochs",
            3,
            "training.epochs: unknown key (value 3); did you mean "
            "'max_epochs'? 'training' allows: learning_rate, batch_size",
        ),
        (
            "split",
            "train",
            [0, 4, 5],
            "split.train: [0, 4, 5] has 3 items; allowed: a list of 2 items",
        ),
        (
            "training",
            "mixed_precision",
            "yes",
            "training.mixed_precision: 'yes' is a string; allowed: true or false",
        ),
        (
            "training",
            "lr_factor",
            "0.5",
            "'0.5' is a string; allowed: a number, 0 < value < 1 "
            "(a number in quotes: write it without them)",
        ),
        (
            "cluster",
            "redshift",
            {"distribution": "uniform", "range": [0.2, 4.0]},
            "cluster.redshift.range[1]: 4.0 is out of range; allowed: a number, 0 < value <= 3",
        ),
        (
            "cluster",
            "redshift",
            {"distribution": "uniform", "range": [0, 1.5]},
            "cluster.redshift.range[0]: 0 is out of range; allowed: a number, 0 < value <= 3",
        ),
        (
            "cluster",
            "redshift",
            {"distribution": "normal", "range": [0.2, 1.5]},
            "cluster.redshift.distribution: 'normal' is not allowed; allowed: one of uniform",
        ),
        (
            "cluster",
            "redshift",
            {"distribution": "uniform"},
            "cluster.redshift.range: missing; every key is required (a list of 2 items)",
        ),
        (
            "cluster",
            "redshift",
            "0.7",
            "cluster.redshift: '0.7' is a string; allowed: a number or a mapping",
        ),
        (
            "cluster",
            "redshift",
            0,
            "cluster.redshift: 0 is out of range; allowed: a number, 0 < value <= 5",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_schema_failure_names_key_value_and_allowed(
    test_config, repo, section, key, value, expected
):
    test_config[section][key] = value
    text = _schema_error(test_config, repo)
    assert len(text.splitlines()) <= MAX_LINES_ONE_FAILURE, text
    assert expected in text


def test_missing_key_says_what_it_takes(test_config, repo):
    del test_config["training"]["max_epochs"]
    text = _schema_error(test_config, repo)
    assert "training.max_epochs: missing; every key is required (an integer, 1 <= value" in text


def test_every_schema_failure_is_listed(test_config, repo):
    test_config["seeed"] = 7
    test_config["sky"]["noise_uk_arcmin"] = -1.0
    test_config["training"]["learning_rate"] = "1e-4"
    lines = _schema_error(test_config, repo).splitlines()
    assert lines[0].endswith("3 problems against config.schema.yaml:")
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == [
        "seeed",
        "sky.noise_uk_arcmin",
        "training.learning_rate",
    ]


# --- invalid configurations: ConfigError naming the key -----------------------------------


def _break_train_mass(c):
    c["split"]["train_masses"] = [1, 3]  # 3 is not in the tiny grid [1, 2, 4]


def _break_overlap(c):
    c["split"]["train"] = [0, 7]  # val is [6, 9)


def _break_beyond(c):
    c["split"]["test"] = [9, 13]  # n_realizations is 12


def _break_empty_range(c):
    c["split"]["train"] = [4, 4]


def _break_scatter_equal(c):
    c["scatter"]["mass_range"] = [3, 3]


def _break_scatter_reversed(c):
    c["scatter"]["mass_range"] = [7, 2]


def _break_label_clash(c):
    c["grid"]["masses"] = [1, 0.1234567, 0.1234568]  # both are written M0.123457
    c["split"]["train_masses"] = [1]


def _break_film_fixed_z(c):
    c["model"]["z_conditioning"] = "film"  # cluster.redshift stays one value


def _break_apodization(c):
    c["sky"]["apodization_width_pix"] = 21  # 2 x 21 > npix = 40


def _break_lmax(c):
    c["spectra"]["lmax"] = 2500  # below lmax_camb = 3000


def _break_redshift_reversed(c):
    c["cluster"]["redshift"] = {"distribution": "uniform", "range": [1.5, 0.2]}


def _break_redshift_empty(c):
    c["cluster"]["redshift"] = {"distribution": "uniform", "range": [0.7, 0.7]}


def _break_redshift_beyond(c):
    c["cluster"]["redshift"] = {"distribution": "uniform", "range": [0.2, 3.5]}  # z <= 3


@pytest.mark.parametrize(
    ("breaker", "key"),
    [
        (_break_redshift_reversed, "cluster.redshift.range"),
        (_break_redshift_empty, "cluster.redshift.range"),
        (_break_redshift_beyond, "cluster.redshift.range"),
        (_break_train_mass, "split.train_masses"),
        (_break_overlap, "split.train"),
        (_break_beyond, "split.test"),
        (_break_empty_range, "split.train"),
        (_break_scatter_equal, "scatter.mass_range"),
        (_break_scatter_reversed, "scatter.mass_range"),
        (_break_label_clash, "grid.masses"),
        (_break_apodization, "sky.apodization_width_pix"),
        (_break_film_fixed_z, "model.z_conditioning"),
        (_break_lmax, "spectra.lmax"),
    ],
    ids=lambda v: v.__name__.removeprefix("_break_") if callable(v) else v,
)
def test_check_config_names_the_key(test_config, breaker, key):
    breaker(test_config)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        check_config(test_config)


@pytest.mark.parametrize(
    ("breaker", "values"),
    [
        (_break_redshift_reversed, "[1.5, 0.2]"),
        (_break_redshift_empty, "[0.7, 0.7]"),
        (_break_redshift_beyond, "[0.2, 3.5]"),
    ],
    ids=lambda v: v.__name__.removeprefix("_break_") if callable(v) else None,
)
def test_redshift_range_error_shows_the_values(test_config, breaker, values):
    breaker(test_config)
    with pytest.raises(ConfigError) as err:
        check_config(test_config)
    assert f"'cluster.redshift.range': {values} must have 0 < lo < hi <= 3" in str(err.value)


def test_redshift_distribution_is_valid_and_reaches_the_shards(test_config, repo):
    test_config["cluster"]["redshift"] = {"distribution": "uniform", "range": [0.2, 1.5]}
    validate_config(test_config, repo / SCHEMA)
    check_config(test_config)
    for set_name, name in (("grid", "M1"), ("scatter", "sigma0.2")):
        spec = shard_spec(test_config, set_name, name)
        assert spec["cluster"]["redshift"] == {"distribution": "uniform", "range": [0.2, 1.5]}
    test_config["model"]["z_conditioning"] = "film"  # over a range, FiLM is allowed
    validate_config(test_config, repo / SCHEMA)
    check_config(test_config)


def test_overlap_names_both_ranges(test_config):
    _break_overlap(test_config)
    with pytest.raises(ConfigError) as err:
        check_config(test_config)
    assert "split.train" in str(err.value) and "split.val" in str(err.value)


def test_adjacent_ranges_do_not_overlap(test_config):
    test_config["split"].update(train=[0, 4], val=[4, 8], test=[8, 12])
    check_config(test_config)


# --- names of outputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mass", "label"),
    [(1, "1"), (1.5, "1.5"), (0.75, "0.75"), (1.0, "1"), (10, "10"), (0.5, "0.5")],
)
def test_mass_label(mass, label):
    assert mass_label(mass) == label


def test_grid_shards(paper_config):
    shards = grid_shards(paper_config)
    assert len(shards) == 19
    assert shards[0] == "results/sims/grid/M0.5.zarr"
    assert "results/sims/grid/M0.75.zarr" in shards
    assert "results/sims/grid/M1.zarr" in shards
    assert shards[-1] == "results/sims/grid/M10.zarr"
    assert len(set(shards)) == len(shards)


def test_scatter_shards(paper_config):
    assert scatter_shards(paper_config) == [
        "results/sims/scatter/sigma0.2.zarr",
        "results/sims/scatter/sigma0.zarr",
    ]


# --- shard_spec: the params of one shard job ---------------------------------------------


def _binds_to_simulate_shard(spec):
    inspect.signature(simulate_shard).bind(spectra_path="s", out_path="o", threads=1, **spec)


def test_shard_spec_grid(paper_config):
    spec = shard_spec(paper_config, "grid", "M0.75")
    assert spec == {
        "seed": paper_config["seed"],
        "sky": paper_config["sky"],
        "cluster": {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 8},
        "set_name": "grid",
        "mass_1e14": 0.75,
        "n_realizations": 800,
        "sigma_int": paper_config["cluster"]["sigma_int"],
    }
    _binds_to_simulate_shard(spec)


def test_shard_spec_grid_integer_mass(paper_config):
    spec = shard_spec(paper_config, "grid", "M1")
    assert spec["mass_1e14"] == 1


def test_shard_spec_scatter(paper_config):
    spec = shard_spec(paper_config, "scatter", "sigma0")
    assert spec == {
        "seed": paper_config["seed"],
        "sky": paper_config["sky"],
        "cluster": {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 8},
        "set_name": "scatter",
        "sigma_int": 0,
        "n_clusters": 1000,
        "mass_range_1e14": [2, 7],
    }
    assert shard_spec(paper_config, "scatter", "sigma0.2")["sigma_int"] == 0.2
    _binds_to_simulate_shard(spec)


@pytest.mark.parametrize(
    ("set_name", "name"),
    [("grid", "M3.25"), ("grid", "M1.0"), ("grid", "sigma0.2"), ("scatter", "sigma0.5")],
)
def test_shard_spec_unknown_shard_raises(paper_config, set_name, name):
    with pytest.raises(ConfigError, match=name):
        shard_spec(paper_config, set_name, name)


def test_shard_spec_unknown_set_raises(paper_config):
    with pytest.raises(ConfigError, match="realistic"):
        shard_spec(paper_config, "realistic", "M1")


def test_every_shard_has_a_spec(paper_config):
    """The paths the workflow asks for map back onto specs (what the wildcards carry)."""
    for path in grid_shards(paper_config) + scatter_shards(paper_config):
        set_name, file_name = path.split("/")[-2:]
        spec = shard_spec(paper_config, set_name, file_name.removesuffix(".zarr"))
        assert spec["set_name"] == set_name


def test_only_the_tiny_config_is_a_smoke_test(paper_config, test_config):
    """config/test.yaml's two-epoch network gets no verdicts (issue 13, item 8)."""
    assert test_config["evaluation"]["smoke_test"] is True
    assert paper_config["evaluation"]["smoke_test"] is False
