import json
import sys
from pathlib import Path

from snakemake.utils import validate

# Check the config with this checkout's szmass, as the rule scripts do (workflow/scripts/_bootstrap.py).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from szmass.config import (
    check_config,
    eval_sets,
    grid_shards,
    mass_label,
    REALISTIC_SHARD,
    scatter_shards,
    shard_spec,
    train_shards,
)

validate(config, "../schemas/config.schema.yaml")
check_config(config)


def canonical(value):
    """Key-sorted copy of a config slice: params compare by repr, so key order must not matter."""
    return json.loads(json.dumps(value, sort_keys=True))


def src(*modules):
    """The src/szmass modules a rule uses, as inputs; editing one reruns the rule."""
    return [f"src/szmass/{m}.py" for m in modules]


def all_shards():
    return grid_shards(config) + scatter_shards(config)


def shard_params(wildcards):
    return canonical(shard_spec(config, wildcards.set, wildcards.name))


def cluster_params():
    """The cluster keys the map-making and the filter templates use."""
    return {k: config["cluster"][k] for k in ("redshift", "x_max_r500", "subpixel")}
