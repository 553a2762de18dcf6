from snakemake.utils import validate

from szmass.config import check_config, grid_shards, scatter_shards, shard_spec

validate(config, "../schemas/config.schema.yaml")
check_config(config)


def src(*modules):
    """The src/szmass modules a rule uses, as inputs: editing one reruns the rule."""
    return [f"src/szmass/{m}.py" for m in modules]


def all_shards():
    return grid_shards(config) + scatter_shards(config)


def shard_params(wildcards):
    return shard_spec(config, wildcards.set, wildcards.name)
