"""The config's checks (the JSON schema, then what it cannot express) and the output names.

``workflow/rules/common.smk`` calls ``validate_config`` (types, ranges, unknown keys, against
``workflow/schemas/config.schema.yaml``), then ``check_config`` (the relations between keys).
Both raise ``ConfigError`` naming the dotted key, the value and what is allowed.
"""

import difflib
import json
import re
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


#: Schema failures listed in one ConfigError; the rest are counted.
MAX_SCHEMA_ERRORS = 20

#: A number in exponent notation that YAML 1.1 (PyYAML, Snakemake) reads as a string: YAML 1.1
#: floats need a dot and a signed exponent (``1.0e-4``), so ``1e-4`` and ``1.5e3`` are text.
_EXPONENT = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?[eE]([+-]?)(\d+)")


def validate_config(config: dict[str, Any], schema_path: str | Path, *, source: str = "") -> None:
    """Check ``config`` against the JSON schema at ``schema_path``; each failure in one line.

    Replaces ``snakemake.utils.validate``, which prints the whole schema and config. ``source``
    names the config files in the message. The schema has no defaults, so nothing is filled in.

    Raises:
        ConfigError: one line per failure (the dotted key, its value and what is allowed).
    """
    import jsonschema
    import yaml

    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    problems = [line for error in errors for line in _describe(error, schema)]
    shown = problems[:MAX_SCHEMA_ERRORS]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more")
    where = f" ({source})" if source else ""
    raise ConfigError(
        f"invalid config{where}: {len(problems)} problem{'s' * (len(problems) > 1)} against "
        f"{Path(schema_path).name}:\n" + "\n".join(f"  {line}" for line in shown)
    )


def _dotted(path) -> str:
    """``['training', 'learning_rate']`` -> ``training.learning_rate``; list items as ``[i]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    """A value as the config would write it (true, null, [1, 2]), cut to 60 characters."""
    if isinstance(value, dict):
        return "a mapping {...}"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "number": "a number",
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


_LOWER = (("minimum", "<="), ("exclusiveMinimum", "<"))
_UPPER = (("maximum", "<="), ("exclusiveMaximum", "<"))


def _type_of(value: Any) -> str:
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str)):
        if isinstance(value, kind):
            return _TYPE_NAMES[name]
    return {list: "a list", dict: "a mapping", type(None): "null"}.get(type(value), "a value")


def _allowed(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """What a key's schema allows, in words: ``a number, 0 < value <= 1``."""
    if "$ref" in schema:  # a local reference, "#/$defs/name"
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    if "enum" in schema:
        return "one of " + ", ".join(_show(v).strip("'") for v in schema["enum"])
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    text = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds) or "see the schema"
    bounds = [f"{schema[k]} {op}" for k, op in _LOWER if k in schema][:1]
    bounds += ["value"] + [f"{op} {schema[k]}" for k, op in _UPPER if k in schema][:1]
    if len(bounds) > 1:
        text += ", " + " ".join(bounds)
    if "multipleOf" in schema:
        text += f", a multiple of {schema['multipleOf']}"
    if "minItems" in schema:
        n_lo, n_hi = schema["minItems"], schema.get("maxItems")
        text += f" of {n_lo} items" if n_lo == n_hi else f" of at least {n_lo} item(s)"
    return text


def _number_hint(value: Any) -> str:
    """Why a number came as a string, and how to write it."""
    if not isinstance(value, str):
        return ""
    m = _EXPONENT.fullmatch(value.strip())
    if m and (m.group(2) or m.group(3)):
        sign, whole, frac, exp_sign, exp = m.groups()
        fixed = f"{sign}{whole or 0}.{frac or 0}e{exp_sign or '+'}{exp}"
        if fixed != value.strip():
            return f" (YAML reads {value} as text: write {fixed}, with a dot and a signed exponent)"
    try:
        float(value)
    except ValueError:
        return ""
    return " (a number in quotes: write it without them)"


def _describe(error, root: dict[str, Any]) -> list[str]:
    """One line per problem of one jsonschema error: the dotted key, its value, what is allowed."""
    key, kind = _dotted(error.absolute_path), error.validator
    value, schema = error.instance, error.schema
    here = f"'{key}'" if key else "the top level"
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        lines = []
        for extra in (k for k in value if k not in allowed):
            close = difflib.get_close_matches(str(extra), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            where = _dotted([*error.absolute_path, extra])
            lines.append(
                f"{where}: unknown key (value {_show(value[extra])}){hint} "
                f"{here} allows: {', '.join(allowed)}"
            )
        return lines
    if kind == "required":
        return [
            f"{_dotted([*error.absolute_path, k])}: missing; every key is required "
            f"({_allowed(schema.get('properties', {}).get(k, {}), root)})"
            for k in error.validator_value
            if k not in value
        ]
    if kind == "type":
        return [
            f"{key}: {_show(value)} is {_type_of(value)}; allowed: {_allowed(schema, root)}"
            f"{_number_hint(value)}"
        ]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        return [f"{key}: {_show(value)} is out of range; allowed: {_allowed(schema, root)}"]
    if kind == "enum":
        return [f"{key}: {_show(value)} is not allowed; allowed: {_allowed(schema, root)}"]
    if kind in ("minItems", "maxItems"):
        return [f"{key}: {_show(value)} has {len(value)} items; allowed: {_allowed(schema, root)}"]
    if kind == "uniqueItems":
        return [f"{key}: {_show(value)} repeats an item; each must be unique"]
    if kind in ("oneOf", "anyOf") and error.context:
        return _describe_branches(error, root)
    message = error.message if len(error.message) <= 120 else error.message[:117] + "..."
    return [f"{key or '(top level)'}: {message}"]


def _describe_branches(error, root: dict[str, Any]) -> list[str]:
    """A ``oneOf``/``anyOf`` failure as the failures inside the branches that take the value's
    type (a mapping's keys and ranges, not "is not a number"). When no branch takes it, the
    key's own ``type`` already said so; else say which types the branches take."""
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in branches.values()
        if not any(s.validator == "type" and not s.relative_path for s in subs)
    ]
    if fitting:
        return [line for subs in fitting for s in subs for line in _describe(s, root)]
    if "type" in error.schema:
        return []
    allowed = " or ".join(_allowed(b, root) for b in error.validator_value)
    key = _dotted(error.absolute_path) or "(top level)"
    return [f"{key}: {_show(error.instance)} is {_type_of(error.instance)}; allowed: {allowed}"]


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


#: The redshifts a ``cluster.redshift`` distribution may span: (0, Z_MAX].
Z_MAX = 3.0


def _check_redshift(redshift: Any) -> None:
    """A redshift distribution's range lies in (0, Z_MAX] and is not empty (the schema checks
    the items too; this check also holds for a config that skipped it)."""
    if not isinstance(redshift, dict):
        return
    lo, hi = redshift["range"]
    if not 0 < lo < hi <= Z_MAX:
        raise ConfigError(
            f"config key 'cluster.redshift.range': [{lo}, {hi}] must have 0 < lo < hi <= {Z_MAX:g}"
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
    lo, hi = config["split"]["continuous_range"]
    if not 0 < lo < hi:
        raise ConfigError(
            f"config key 'split.continuous_range': [{lo}, {hi}] must have 0 < lo < hi"
        )
    band = config["training"]["val_width_range"]
    if band and not (len(band) == 2 and 0 < band[0] < band[1]):
        raise ConfigError(
            f"config key 'training.val_width_range': {band} must be [] or [lo, hi] with "
            "0 < lo < hi (1e14 Msun)"
        )
    _check_redshift(config["cluster"]["redshift"])
    if config["model"]["z_conditioning"] == "film" and not isinstance(
        config["cluster"]["redshift"], dict
    ):
        raise ConfigError(
            "config key 'model.z_conditioning': 'film' conditions the network on each "
            f"cluster's z, but cluster.redshift is one value ({config['cluster']['redshift']}); "
            "give it a range or use 'channel'"
        )
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


def single_redshift(redshift: float | dict[str, Any]) -> float:
    """One redshift for what is built at one z (the matched filter beside a model, the survey
    test map): ``cluster.redshift`` when it is a number, the middle of a distribution's range."""
    if isinstance(redshift, dict):
        lo, hi = redshift["range"]
        return 0.5 * (float(lo) + float(hi))
    return float(redshift)


def grid_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the grid shards, one per mass."""
    return [f"results/sims/grid/M{mass_label(m)}.zarr" for m in config["grid"]["masses"]]


def train_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the grid shards of the training masses (the matched filter calibrates on their
    training realizations whatever ``split.masses`` is)."""
    return [f"results/sims/grid/M{mass_label(m)}.zarr" for m in config["split"]["train_masses"]]


def continuous_pieces(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The shard jobs of a continuous training-mass set (none when ``split.masses`` is grid):
    each part (train, val) in pieces of at most ``split.continuous_shard_maps`` clusters,
    ``{"part", "name", "path", "first", "n"}`` with name ``{part}-{k:03d}``. Every cluster
    draws from its own streams, so the pieces together are the set simulated whole."""
    if config["split"]["masses"] != "continuous":
        return []
    per_shard = int(config["split"]["continuous_shard_maps"])
    pieces = []
    for part, n_part in _continuous_sizes(config).items():
        for k, first in enumerate(range(0, n_part, per_shard)):
            name = f"{part}-{k:03d}"
            pieces.append(
                {
                    "part": part,
                    "name": name,
                    "path": f"results/sims/continuous/{name}.zarr",
                    "first": first,
                    "n": min(per_shard, n_part - first),
                }
            )
    return pieces


def continuous_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the continuous training-mass shards (none when ``split.masses`` is grid)."""
    return [piece["path"] for piece in continuous_pieces(config)]


def _continuous_sizes(config: dict[str, Any]) -> dict[str, int]:
    """Maps per part of a continuous set: ``split.continuous_maps`` [train, val], or when that
    is null as many as the grid split trains and validates on."""
    if config["split"].get("continuous_maps") is not None:
        n_train, n_val = config["split"]["continuous_maps"]
        return {"train": int(n_train), "val": int(n_val)}
    n_masses = len(config["split"]["train_masses"])
    return {
        part: n_masses * (config["split"][part][1] - config["split"][part][0])
        for part in ("train", "val")
    }


def network_split(config: dict[str, Any]) -> dict[str, list[list]]:
    """What the network trains and validates on, as ``[shard path, [start, stop))`` parts:
    the training masses' grid shards (realizations ``split.train`` and ``split.val``), or
    with ``split.masses: continuous`` the whole of every continuous train and val shard."""
    if config["split"]["masses"] == "continuous":
        return {
            part: [
                [piece["path"], [0, piece["n"]]]
                for piece in continuous_pieces(config)
                if piece["part"] == part
            ]
            for part in ("train", "val")
        }
    return {
        part: [[path, list(config["split"][part])] for path in train_shards(config)]
        for part in ("train", "val")
    }


def trained_masses(config: dict[str, Any]) -> list[float]:
    """The masses [1e14 Msun] the network trains on: the grid's training masses, or the
    ends of the continuous range (their min and max bound the trained range everywhere)."""
    if config["split"]["masses"] == "continuous":
        return [float(m) for m in config["split"]["continuous_range"]]
    return list(config["split"]["train_masses"])


def scatter_shards(config: dict[str, Any]) -> list[str]:
    """Paths of the scatter-test shards, one per sigma_int."""
    return [f"results/sims/scatter/sigma{s:g}.zarr" for s in config["scatter"]["sigma_int"]]


def shard_spec(config: dict[str, Any], set_name: str, name: str) -> dict[str, Any]:
    """The config slice one shard job needs (its ``params``), from its wildcards.

    ``name`` is ``M{mass}`` for the grid, ``sigma{value}`` for the scatter sets,
    ``{train,val}-{k:03d}`` for the continuous training-mass set's pieces.
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
    if set_name == "continuous":
        pieces = {piece["name"]: piece for piece in continuous_pieces(config)}
        if name not in pieces:
            raise ConfigError(
                f"continuous shard {name}: not one of this config's "
                f"({sorted(pieces) or 'none: split.masses is not continuous'})"
            )
        piece = pieces[name]
        return {
            **common,
            "set_name": "continuous",
            "part": piece["part"],
            "first": piece["first"],
            "sigma_int": config["cluster"]["sigma_int"],
            "n_clusters": piece["n"],
            "mass_range_1e14": config["split"]["continuous_range"],
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
