"""Continuous training masses (SPEC §3 ``split.masses: continuous``): the masses, the shards,
and the training split and the belt built from them."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from szmass.config import (
    ConfigError,
    check_config,
    continuous_shards,
    network_split,
    shard_spec,
    trained_masses,
)
from szmass.intervals import MASS_BINS, belt_intervals, coverage, fit_belt, mass_groups
from szmass.io import open_shard
from szmass.network.dataset import split_dataset
from szmass.sky.simulate import continuous_set_masses, simulate_shard

from ..conftest import CLUSTER, sky, write_spectra

RANGE = (0.5, 12.0)


def test_masses_are_log_uniform_over_the_range():
    m = continuous_set_masses(seed=5, part="train", n_clusters=4000, mass_range_1e14=RANGE)
    assert m.min() >= 0.5e14 and m.max() <= 12e14
    u = np.log(m / 0.5e14) / np.log(24.0)  # uniform on [0, 1] if log-uniform
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # and not uniform in M: half the clusters lie below the geometric middle, 2.45e14
    assert np.mean(m < np.sqrt(0.5 * 12) * 1e14) == pytest.approx(0.5, abs=0.03)


def test_masses_repeat_and_train_and_val_differ():
    a = continuous_set_masses(seed=5, part="train", n_clusters=50, mass_range_1e14=RANGE)
    b = continuous_set_masses(seed=5, part="train", n_clusters=80, mass_range_1e14=RANGE)
    v = continuous_set_masses(seed=5, part="val", n_clusters=50, mass_range_1e14=RANGE)
    np.testing.assert_array_equal(a, b[:50])  # cluster i's mass does not depend on n
    assert not np.isin(v, a).any()
    other = continuous_set_masses(seed=6, part="train", n_clusters=50, mass_range_1e14=RANGE)
    assert not np.isin(other, a).any()


def _simulate(root, out, part, n, first=0):
    """A continuous shard of ``n`` clusters of ``part`` from ``first``, 16x16 pixels."""
    simulate_shard(
        spectra_path=str(root / "spectra.ecsv"),
        out_path=str(out),
        set_name="continuous",
        part=part,
        first=first,
        seed=3,
        sky=sky(16),
        cluster=CLUSTER,
        sigma_int=0.2,
        n_clusters=n,
        mass_range_1e14=RANGE,
    )
    return str(out)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A tiny continuous set: 24 training and 12 validation clusters, 16x16 pixels."""
    root = tmp_path_factory.mktemp("continuous")
    write_spectra(root / "spectra.ecsv")
    paths = {}
    for part, n in (("train", 24), ("val", 12)):
        paths[part] = _simulate(root, root / f"{part}.zarr", part, n)
    return root, paths


def test_shard_holds_its_masses_one_map_each(shards):
    _, paths = shards
    ds = open_shard(paths["train"])
    expected = continuous_set_masses(seed=3, part="train", n_clusters=24, mass_range_1e14=RANGE)
    np.testing.assert_allclose(ds.m200c.values, expected, rtol=0)
    assert ds.sizes["realization"] == 24 and ds.attrs["part"] == "train"
    assert ds.attrs["mass_distribution"] == "log-uniform"
    assert np.all(np.isfinite(ds.sky.values)) and np.all(ds.sz.values <= 0)
    # heavier clusters decrement deeper at the centre (150 GHz)
    centre = ds.sz.values[:, 8, 8] * np.exp(-ds.ln_scatter.values)
    order = np.argsort(ds.m200c.values)
    assert np.all(np.diff(centre[order]) < 0)


def test_split_of_whole_continuous_shards(shards):
    root, paths = shards
    norm = split_dataset(
        train=[(paths["train"], [0, 24])],
        val=[(paths["val"], [0, 12])],
        out_train=str(root / "set_train.zarr"),
        out_val=str(root / "set_val.zarr"),
        out_normalization=str(root / "normalization.json"),
    )
    train = open_shard(paths["train"])
    assert norm["m_norm_msun"] == pytest.approx(train.m200c.values.mean(), rel=1e-12)
    val = open_shard(paths["val"])
    assert norm["sky_scale"] == pytest.approx(float(abs(train.sky).max()))  # training maps only
    out = xr.open_zarr(root / "set_val.zarr", consolidated=True)
    np.testing.assert_array_equal(out.m200c.values, val.m200c.values)
    # the mass label's centre is M200c / M_norm for every map
    np.testing.assert_allclose(
        out.labels.values[:, 8, 8, 1], val.m200c.values / norm["m_norm_msun"], rtol=1e-6
    )


def test_pieces_of_a_set_are_the_set_made_whole(shards):
    # the 24 training clusters simulated as two shard jobs of 10 and 14
    root, paths = shards
    whole = open_shard(paths["train"])
    pieces = [
        open_shard(_simulate(root, root / f"train-{k:03d}.zarr", "train", n, first=first))
        for k, (first, n) in enumerate([(0, 10), (10, 14)])
    ]
    assert pieces[1].attrs["first_cluster"] == 10
    for var in ("sky", "sz", "m200c", "ln_scatter", "realization"):
        joined = np.concatenate([piece[var].values for piece in pieces])
        np.testing.assert_array_equal(joined, whole[var].values, err_msg=var)


def test_config_continuous_split_and_shard_specs(paper_config):
    paper_config["split"]["masses"] = "continuous"
    split = network_split(paper_config)
    assert split == {
        "train": [["results/sims/continuous/train-000.zarr", [0, 3200]]],
        "val": [["results/sims/continuous/val-000.zarr", [0, 1600]]],
    }
    spec = shard_spec(paper_config, "continuous", "val-000")
    assert spec["n_clusters"] == 1600 and spec["part"] == "val" and spec["first"] == 0
    assert spec["mass_range_1e14"] == [0.5, 12] and spec["sigma_int"] == 0.2
    assert trained_masses(paper_config) == [0.5, 12.0]


def test_a_large_continuous_set_is_several_shard_jobs(paper_config):
    split = paper_config["split"]
    split.update(masses="continuous", continuous_maps=[25000, 5000], continuous_shard_maps=10000)
    assert continuous_shards(paper_config) == [
        f"results/sims/continuous/{name}.zarr"
        for name in ("train-000", "train-001", "train-002", "val-000")
    ]
    assert network_split(paper_config)["train"] == [
        ["results/sims/continuous/train-000.zarr", [0, 10000]],
        ["results/sims/continuous/train-001.zarr", [0, 10000]],
        ["results/sims/continuous/train-002.zarr", [0, 5000]],
    ]
    spec = shard_spec(paper_config, "continuous", "train-002")
    assert (spec["first"], spec["n_clusters"], spec["part"]) == (20000, 5000, "train")
    with pytest.raises(ConfigError, match="train-003.*not one of"):
        shard_spec(paper_config, "continuous", "train-003")


def test_config_grid_split_is_the_papers(paper_config):
    split = network_split(paper_config)
    assert len(split["train"]) == 8 and split["train"][0] == ["results/sims/grid/M1.zarr", [0, 400]]
    assert split["val"][-1] == ["results/sims/grid/M8.zarr", [400, 600]]
    assert trained_masses(paper_config) == [1, 2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(ConfigError, match="continuous"):
        shard_spec(paper_config, "continuous", "train-000")  # the grid config has no such shard


@pytest.mark.parametrize("bad", [[3, 3], [12, 0.5], [0, 12]])
def test_config_refuses_an_empty_or_non_positive_range(test_config, bad):
    test_config["split"]["continuous_range"] = bad
    with pytest.raises(ConfigError, match="'split.continuous_range'"):
        check_config(test_config)


@pytest.mark.parametrize("bad", [[8], [8, 1], [0, 8]])
def test_config_refuses_a_bad_validation_band_before_any_job(test_config, bad):
    test_config["training"]["val_width_range"] = bad
    with pytest.raises(ConfigError, match=r"'training.val_width_range': \[.*\] must be \[\]"):
        check_config(test_config)
    test_config["training"]["val_width_range"] = [1, 8]
    check_config(test_config)  # a good band passes


# --- the belt from a continuous validation set ------------------------------------------


def test_mass_groups_leave_a_grid_alone():
    m = np.repeat([1e14, 2e14], 3)
    est = np.arange(6.0) * 1e14
    masses, groups = mass_groups(m, est)
    np.testing.assert_array_equal(masses, [1e14, 2e14])
    np.testing.assert_array_equal(groups[1], [3e14, 4e14, 5e14])


@pytest.mark.parametrize("slope", [1.0, 0.7])
def test_belt_from_continuous_masses_covers_and_keeps_the_width(slope):
    """A compressed estimator with ln-scatter 0.15 validated on 1600 log-uniform masses (16
    bins of 100 maps, 0.2 wide in ln M): the bins' width must not widen the belt, and the
    intervals cover at grid masses. One belt's coverage moves by ~0.015 with its 1600 maps,
    so four independent belts are averaged."""
    sigma, cov68, cov95 = 0.15, [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)

        def estimate(m, rng=rng):
            ln = np.log(4e14) + slope * np.log(m / 4e14)
            return np.exp(ln + rng.normal(0, sigma, m.size))

        val = np.exp(rng.uniform(np.log(0.5e14), np.log(12e14), 1600))
        belt = fit_belt(val, estimate(val))
        assert len(belt["ln_m200c"]) == MASS_BINS
        test = np.repeat(np.arange(2, 9) * 1e14, 2000)
        table = pd.DataFrame({"m200c_true": test, **belt_intervals(belt, estimate(test))})
        cov = coverage(table)
        cov68.append(cov["coverage_68"])
        cov95.append(cov["coverage_95"])
        assert np.median(table["sigma_ln"]) == pytest.approx(sigma / slope, rel=0.08)
    # 4 x 14000 maps: binomial noise 0.002; the belts' own noise ~0.015 / 2
    assert np.mean(cov68) == pytest.approx(0.6827, abs=0.015)
    assert np.mean(cov95) == pytest.approx(0.9545, abs=0.01)
