"""Checks the JSON schema cannot express, and the names of the workflow's outputs.

Schema validation (types, ranges, unknown keys) happens in ``workflow/rules/common.smk``;
``check_config`` then checks the relations between keys. Errors name the key.
"""

from typing import Any


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def mass_label(mass_1e14: float) -> str:
    """The mass as written in file names: 1 -> '1', 1.5 -> '1.5', 0.75 -> '0.75'."""
    return f"{float(mass_1e14):g}"


def _check_range(config: dict[str, Any], key: str, n: int) -> None:
    start, stop = config["split"][key]
    if not 0 <= start < stop <= n:
        raise ConfigError(
            f"config key 'split.{key}': [{start}, {stop}) must satisfy "
            f"0 <= start < stop <= grid.n_realizations ({n})"
        )


def check_config(config: dict[str, Any]) -> None:
    """Cross-key checks on a schema-valid config.

    Raises:
        ConfigError: naming the key and the value at fault.
    """
    masses = config["grid"]["masses"]
    labels = [mass_label(m) for m in masses]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"config key 'grid.masses': two masses share a file name: {labels}")
    for m in config["split"]["train_masses"]:
        if mass_label(m) not in labels:
            raise ConfigError(
                f"config key 'split.train_masses': {m} is not in grid.masses {masses}"
            )
    n = config["grid"]["n_realizations"]
    for key in ("train", "val", "test"):
        _check_range(config, key, n)
    ranges = sorted((tuple(config["split"][k]), k) for k in ("train", "val", "test"))
    for ((lo1, hi1), k1), ((lo2, hi2), k2) in zip(ranges, ranges[1:], strict=False):
        if lo2 < hi1:
            raise ConfigError(
                f"config keys 'split.{k1}' [{lo1}, {hi1}) and 'split.{k2}' [{lo2}, {hi2}) overlap"
            )
    lo, hi = config["scatter"]["mass_range"]
    if not lo < hi:
        raise ConfigError(f"config key 'scatter.mass_range': [{lo}, {hi}] must have lo < hi")
    sky = config["sky"]
    if 2 * sky["apodization_width_pix"] > sky["npix"]:
        raise ConfigError(
            f"config key 'sky.apodization_width_pix': {sky['apodization_width_pix']} px "
            f"does not fit a {sky['npix']}-pixel cutout"
        )
    depth = config["model"]["depth"]
    if sky["npix"] % 2**depth:
        raise ConfigError(
            f"config key 'sky.npix': {sky['npix']} is not divisible by 2**model.depth = "
            f"{2**depth}, which the network's {depth} stride-2 levels need"
        )
    for key, values in (
        ("evaluation.sz_masses", config["evaluation"]["sz_masses"]),
        ("figures.example_mass", [config["figures"]["example_mass"]]),
    ):
        for m in values:
            if mass_label(m) not in labels:
                raise ConfigError(f"config key '{key}': {m} is not in grid.masses {masses}")
    if config["figures"]["example_realization"] >= n:
        raise ConfigError(
            f"config key 'figures.example_realization': {config['figures']['example_realization']}"
            f" is not below grid.n_realizations ({n})"
        )
    real = config["realistic"]
    for key in ("mass_range_1e14", "z_range", "los_z_range"):
        lo, hi = real[key]
        if not lo < hi:
            raise ConfigError(f"config key 'realistic.{key}': [{lo}, {hi}] must have lo < hi")
    if real["source"] == "fits":
        for key in ("catalogue", "fits_dir"):
            if not real[key]:
                raise ConfigError(f"config key 'realistic.{key}': needed when source is 'fits'")
    lo, hi = config["baseline"]["scale_mass_range"]
    if not lo < hi:
        raise ConfigError(f"config key 'baseline.scale_mass_range': [{lo}, {hi}] must have lo < hi")
    if config["spectra"]["lmax"] < config["spectra"]["lmax_camb"]:
        raise ConfigError("config key 'spectra.lmax': must be >= spectra.lmax_camb")


def grid_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the grid shards, one per mass."""
    return [f"results/sims/grid/M{mass_label(m)}.zarr" for m in config["grid"]["masses"]]


def train_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the grid shards of the training masses."""
    return [f"results/sims/grid/M{mass_label(m)}.zarr" for m in config["split"]["train_masses"]]


def scatter_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the scatter-test shards, one per sigma_int."""
    return [f"results/sims/scatter/sigma{s:g}.zarr" for s in config["scatter"]["sigma_int"]]


def shard_spec(config: dict[str, Any], set_name: str, name: str) -> dict[str, Any]:
    """The config slice one shard job needs (its ``params``), from its wildcards.

    ``name`` is ``M{mass}`` for the grid, ``sigma{value}`` for the scatter sets.
    """
    common = {
        "seed": config["seed"],
        "sky": config["sky"],
        "cluster": {k: config["cluster"][k] for k in ("redshift", "x_max_r500", "subpixel")},
    }
    if set_name == "grid":
        by_label = {mass_label(m): m for m in config["grid"]["masses"]}
        label = name.removeprefix("M")
        if label not in by_label:
            raise ConfigError(f"grid shard {name}: mass {label} is not in grid.masses")
        return {
            **common,
            "set_name": "grid",
            "mass_1e14": by_label[label],
            "n_realizations": config["grid"]["n_realizations"],
            "sigma_int": config["cluster"]["sigma_int"],
        }
    if set_name == "scatter":
        by_label = {f"{s:g}": s for s in config["scatter"]["sigma_int"]}
        label = name.removeprefix("sigma")
        if label not in by_label:
            raise ConfigError(f"scatter shard {name}: {label} is not in scatter.sigma_int")
        return {
            **common,
            "set_name": "scatter",
            "sigma_int": by_label[label],
            "n_clusters": config["scatter"]["n_clusters"],
            "mass_range_1e14": config["scatter"]["mass_range"],
        }
    raise ConfigError(f"unknown simulation set {set_name!r}")


#: The realistic-profile test shard (stand-in or real cutouts).
REALISTIC_SHARD = "results/sims/realistic/clusters.zarr"


def eval_sets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The test sets of SPEC §4, by name: the shards each reads and the realizations it uses.

    - ``trained``: the training masses, realizations ``split.test``;
    - ``interpolated``: grid masses between the smallest and largest training mass that were
      not trained on, realizations ``split.test``;
    - ``extrapolated``: grid masses outside the trained range, realizations ``split.test``;
    - ``scatter{sigma}``: one per scatter shard, every map;
    - ``realistic``: the realistic-profile shard, every map.
    Sets with no mass (e.g. a grid without interpolated masses) are left out.
    """
    trained = {mass_label(m) for m in config["split"]["train_masses"]}
    lo, hi = min(config["split"]["train_masses"]), max(config["split"]["train_masses"])
    groups: dict[str, list[float]] = {"trained": [], "interpolated": [], "extrapolated": []}
    for m in config["grid"]["masses"]:
        if mass_label(m) in trained:
            groups["trained"].append(m)
        elif lo < m < hi:
            groups["interpolated"].append(m)
        else:
            groups["extrapolated"].append(m)
    test = list(config["split"]["test"])
    sets = {
        name: {
            "kind": "grid",
            "shards": [f"results/sims/grid/M{mass_label(m)}.zarr" for m in masses],
            "realizations": test,
        }
        for name, masses in groups.items()
        if masses
    }
    for s, path in zip(config["scatter"]["sigma_int"], scatter_shards(config), strict=True):
        sets[f"scatter{s:g}"] = {"kind": "scatter", "shards": [path], "realizations": None}
    sets["realistic"] = {"kind": "realistic", "shards": [REALISTIC_SHARD], "realizations": None}
    return sets
