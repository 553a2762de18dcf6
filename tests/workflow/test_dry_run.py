"""Dry run of the paper's setup, and bad configurations that must stop before any job."""

import re

import pytest

from szmass.config import mass_label

from . import smk


def test_paper_dry_run(workflow_copy, paper_config):
    """``snakemake -n`` (config/config.yaml, the default): CAMB once, 19 + 2 shards and the
    realistic set, the split of the 8 training masses, one training, the six test sets through
    the network (calibrated on the validation set) and the matched filter, the summary and six
    figures, and the model card beside the model (no predict target: the paper names none)."""
    proc = smk.run(workflow_copy, "-n")
    assert proc.returncode == 0, proc.stdout
    assert smk.job_stats(proc.stdout) == {
        "compute_spectra": 1,
        "simulate_shard": 21,
        "simulate_realistic": 1,
        "split_dataset": 1,
        "train_model": 1,
        "calibrate_network": 1,
        "predict_set": 6,
        "calibrate_baseline": 1,
        "baseline_set": 6,
        "summarize_results": 1,
        "plot_example": 1,
        "plot_sz_maps": 1,
        "plot_mass_recovery": 1,
        "plot_scatter": 1,
        "plot_realistic": 1,
        "plot_baseline": 1,
        "plot_coverage": 1,
        "write_model_card": 1,
        "all": 1,
    }
    sets = re.findall(r"wildcards: eval_set=(\S+)", proc.stdout)
    assert sorted(set(sets)) == sorted(
        ["trained", "interpolated", "extrapolated", "scatter0.2", "scatter0", "realistic"]
    )
    wildcards = re.findall(r"wildcards: set=(\w+), name=(\S+)", proc.stdout)
    grid = sorted(name for s, name in wildcards if s == "grid")
    scatter = sorted(name for s, name in wildcards if s == "scatter")
    assert grid == sorted(f"M{mass_label(m)}" for m in paper_config["grid"]["masses"])
    assert scatter == ["sigma0", "sigma0.2"]

    inputs = smk.job_inputs(proc.stdout)
    split = inputs["results/datasets/train.zarr"]
    assert [p for p in split if p.startswith("results/")] == [
        f"results/sims/grid/M{mass_label(m)}.zarr" for m in paper_config["split"]["train_masses"]
    ]
    assert "src/szmass/network/dataset.py" in split
    train = inputs["results/model/mresunet.keras"]
    assert [p for p in train if p.startswith("results/")] == [
        "results/datasets/train.zarr",
        "results/datasets/val.zarr",
        "results/datasets/normalization.json",
    ]
    assert {"src/szmass/network/train.py", "src/szmass/network/model.py"} <= set(train)
    assert not (workflow_copy / "results").exists()


def test_continuous_dry_run(workflow_copy):
    """``split.masses: continuous`` (config/cpu_continuous.yaml over config/cpu.yaml): the two
    continuous shards join the 21, the network splits them alone, and the matched filter still
    calibrates on the grid's training masses; the test sets are the same."""
    proc = smk.run(
        workflow_copy, "-n", "--configfile", "config/cpu.yaml", "config/cpu_continuous.yaml"
    )
    assert proc.returncode == 0, proc.stdout
    stats = smk.job_stats(proc.stdout)
    assert stats["simulate_shard"] == 23 and stats["predict_set"] == 6, stats
    wildcards = re.findall(r"wildcards: set=(\w+), name=(\S+)", proc.stdout)
    assert sorted(name for s, name in wildcards if s == "continuous") == ["train-000", "val-000"]
    inputs = smk.job_inputs(proc.stdout)
    split = [p for p in inputs["results/datasets/train.zarr"] if p.startswith("results/")]
    assert split == [
        "results/sims/continuous/train-000.zarr",
        "results/sims/continuous/val-000.zarr",
    ]
    baseline = inputs["results/baseline/calibration.json"]
    assert "results/sims/grid/M1.zarr" in baseline
    assert not any("continuous" in p for p in baseline)


def test_a_large_continuous_set_is_several_shard_jobs(workflow_copy):
    """``split.continuous_maps: [25000, 5000]`` with 10000 maps per job: three training shard
    jobs and one validation job, all of which the split reads."""
    (workflow_copy / "big.yaml").write_text(
        "split:\n  masses: continuous\n  continuous_maps: [25000, 5000]\n"
    )
    proc = smk.run(workflow_copy, "-n", "--configfile", "config/cpu.yaml", "big.yaml")
    assert proc.returncode == 0, proc.stdout
    wildcards = re.findall(r"wildcards: set=(\w+), name=(\S+)", proc.stdout)
    names = sorted(name for s, name in wildcards if s == "continuous")
    assert names == ["train-000", "train-001", "train-002", "val-000"]
    inputs = smk.job_inputs(proc.stdout)
    split = [p for p in inputs["results/datasets/train.zarr"] if p.startswith("results/")]
    assert split == [f"results/sims/continuous/{name}.zarr" for name in names]


def test_redshift_distribution_dry_run(workflow_copy):
    """``cluster.redshift: {distribution: uniform, range: [0.2, 1.5]}`` passes the schema and
    the checks and plans the jobs of the fixed z of config/test.yaml, plus Figure 9 (the
    evaluation by redshift), which a fixed z does not draw."""
    fixed = smk.run(workflow_copy, "-n", "--configfile", "config/test.yaml")
    edit = smk.set_key("cluster", "redshift", {"distribution": "uniform", "range": [0.2, 1.5]})
    config = smk.write_config(workflow_copy / "z.yaml", edit)
    drawn = smk.run(workflow_copy, "-n", "--configfile", str(config))
    assert fixed.returncode == 0 and drawn.returncode == 0, drawn.stdout
    stats, fixed_stats = smk.job_stats(drawn.stdout), smk.job_stats(fixed.stdout)
    assert "plot_redshift" not in fixed_stats
    assert stats.pop("plot_redshift") == 1
    assert stats == fixed_stats


BAD_CONFIGS = {
    # name: (edit of config/test.yaml, text the error must contain)
    "unknown_key": (smk.set_key("sky", "noise_uk_arcmn", 5.0), "noise_uk_arcmn"),
    "unknown_top_level_key": (smk.set_key("seeed", 7), "seeed"),
    "negative_noise": (smk.set_key("sky", "noise_uk_arcmin", -1.0), "noise_uk_arcmin"),
    "train_mass_not_in_grid": (smk.set_key("split", "train_masses", [1, 3]), "split.train_masses"),
    "empty_grid": (smk.set_key("grid", "masses", []), "masses"),
    "npix_not_multiple_of_8": (smk.set_key("sky", "npix", 36), "npix"),
    "split_beyond_realizations": (smk.set_key("split", "test", [9, 20]), "split.test"),
    "scatter_range_reversed": (smk.set_key("scatter", "mass_range", [7, 2]), "scatter.mass_range"),
    "continuous_range_reversed": (
        smk.set_key("split", "continuous_range", [12, 0.5]),
        "split.continuous_range",
    ),
    "redshift_range_beyond_3": (
        smk.set_key("cluster", "redshift", {"distribution": "uniform", "range": [0.2, 4.0]}),
        "cluster.redshift.range",
    ),
    "redshift_range_empty": (
        smk.set_key("cluster", "redshift", {"distribution": "uniform", "range": [1.0, 1.0]}),
        "cluster.redshift.range",
    ),
    "unknown_training_masses": (smk.set_key("split", "masses", "uniform"), "uniform"),
    "npix_not_divisible_by_depth": (smk.set_key("model", "depth", 4), "model.depth"),
    "too_few_substages": (smk.set_key("model", "n_substages", 3), "n_substages"),
    "unknown_dropout_placement": (smk.set_key("model", "dropout_placement", "bridge"), "bridge"),
    "unknown_training_key": (smk.set_key("training", "epochs", 3), "epochs"),
    "zero_batch_size": (smk.set_key("training", "batch_size", 0), "batch_size"),
    "lr_factor_of_one": (smk.set_key("training", "lr_factor", 1.0), "lr_factor"),
    "unknown_selection": (smk.set_key("training", "select_by", "val_mse"), "val_mse"),
    "negative_readout_weight": (smk.set_key("training", "readout_weight", -1.0), "readout_weight"),
    "sz_mass_not_in_grid": (smk.set_key("evaluation", "sz_masses", [3]), "evaluation.sz_masses"),
    "fits_without_catalogue": (smk.set_key("realistic", "source", "fits"), "realistic.catalogue"),
    "unknown_realistic_source": (smk.set_key("realistic", "source", "magneticum"), "magneticum"),
    "filter_scales_reversed": (
        smk.set_key("baseline", "scale_mass_range", [10, 0.5]),
        "baseline.scale_mass_range",
    ),
    "unknown_figure_format": (smk.set_key("figures", "formats", ["gif"]), "gif"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_stops_before_any_job(workflow_copy, case):
    edit, key = BAD_CONFIGS[case]
    config = smk.write_config(workflow_copy / "bad.yaml", edit)
    proc = smk.run(workflow_copy, "--cores", "1", "--configfile", str(config))
    assert proc.returncode != 0, proc.stdout
    assert key in proc.stdout, proc.stdout
    assert smk.job_stats(proc.stdout) == {}, proc.stdout
    for out in ("results", "logs", "benchmarks"):
        assert not (workflow_copy / out).exists()


#: What a schema failure may print in all (the profile line, Snakemake's note on merged
#: config files, the error with one line per problem, two traceback lines).
MAX_SCHEMA_ERROR_LINES = 12


def test_schema_errors_are_a_few_lines(workflow_copy):
    """An unknown top-level key and YAML's ``1e-4`` (a string to YAML 1.1): the dotted keys, the
    values and what is allowed, not the whole schema and config (~1500 lines before)."""

    def edit(config):
        config["seeed"] = 7
        config["training"]["learning_rate"] = "1e-4"

    config = smk.write_config(workflow_copy / "bad.yaml", edit)
    assert "learning_rate: 1e-4\n" in config.read_text()  # written as a user would
    proc = smk.run(workflow_copy, "-n", "--configfile", str(config))
    assert proc.returncode != 0, proc.stdout
    assert len(proc.stdout.splitlines()) <= MAX_SCHEMA_ERROR_LINES, proc.stdout
    assert "seeed: unknown key (value 7); did you mean 'seed'?" in proc.stdout
    assert "training.learning_rate: '1e-4' is a string" in proc.stdout
    assert "write 1.0e-4" in proc.stdout
    assert "Failed validating" not in proc.stdout and "$schema" not in proc.stdout
