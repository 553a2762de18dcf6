import json
import subprocess
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# Check the config with this checkout's szmass, as the rule scripts do (workflow/scripts/_bootstrap.py).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from szmass.config import (
    check_config,
    continuous_shards,
    eval_sets,
    grid_shards,
    mass_label,
    network_split,
    REALISTIC_SHARD,
    scatter_shards,
    shard_spec,
    train_shards,
    trained_masses,
    validate_config,
)

# The project's own schema check: one line per failure (dotted key, value, what is allowed),
# where snakemake.utils.validate prints the whole schema and config.
validate_config(
    config,
    Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
    source=", ".join(str(f) for f in workflow.configfiles),
)
check_config(config)


def canonical(value):
    """Key-sorted copy of a config slice: params compare by repr, so key order must not matter."""
    return json.loads(json.dumps(value, sort_keys=True))


def src(*modules):
    """The src/szmass modules a rule uses, as inputs; editing one reruns the rule."""
    return [f"src/szmass/{m}.py" for m in modules]


def all_shards():
    return grid_shards(config) + scatter_shards(config) + continuous_shards(config)


def network_split_shards():
    """The shards the network trains and validates on (``network_split``), each once."""
    parts = network_split(config)
    return list(dict.fromkeys(path for part in parts.values() for path, _ in part))


def shard_params(wildcards):
    return canonical(shard_spec(config, wildcards.set, wildcards.name))


def cluster_params():
    """The cluster keys the map-making and the filter templates use."""
    return {k: config["cluster"][k] for k in ("redshift", "x_max_r500", "subpixel")}


def fresh_skies_inputs():
    """The spectra table, when training draws fresh skies every epoch."""
    return ["results/spectra/spectra.ecsv"] if config["training"]["fresh_skies"] else []


def fresh_skies_params():
    """What fresh skies are drawn with: the sky and the training maps' scatter (else nothing)."""
    if not config["training"]["fresh_skies"]:
        return {}
    return {"sky": config["sky"], "sigma_int": config["cluster"]["sigma_int"]}


def realistic_inputs(wildcards):
    """The catalogue and the FITS folder when the clusters are real cutouts."""
    real = config["realistic"]
    return [real["catalogue"], real["fits_dir"]] if real["source"] == "fits" else []


def eval_set_shards(wildcards):
    sets = eval_sets(config)
    if wildcards.eval_set not in sets:
        raise ValueError(f"unknown test set {wildcards.eval_set!r}; this config has {sorted(sets)}")
    return sets[wildcards.eval_set]["shards"]


def eval_set_params(wildcards):
    return canonical(eval_sets(config)[wildcards.eval_set])


def scatter_free_shard():
    """The scatter shard with sigma_int = 0 (its noise-free maps give the signal's slope)."""
    zero = [s for s in config["scatter"]["sigma_int"] if s == 0]
    return [f"results/sims/scatter/sigma{zero[0]:g}.zarr"] if zero else []


def figures(name, caption):
    """A figure in every configured format; the first goes into the report."""
    paths = [f"results/figures/{name}.{ext}" for ext in config["figures"]["formats"]]
    return [report(paths[0], caption=f"../report/{caption}", category="Figures")] + paths[1:]


def grid_eval_maps():
    """The mean-map files of the grid test sets (Figure 3)."""
    sets = eval_sets(config)
    return [f"results/eval/{name}/mean_maps.npz" for name in sets if sets[name]["kind"] == "grid"]


def predict_target(wildcards):
    """The `predict.targets` entry named by the wildcard."""
    targets = {t["name"]: t for t in config["predict"]["targets"]}
    if wildcards.target not in targets:
        raise ValueError(
            f"unknown predict target {wildcards.target!r}; the config has {sorted(targets)}"
        )
    return targets[wildcards.target]


def predict_target_inputs(wildcards):
    """The map, catalogue (and weights) of a predict target, as named inputs."""
    target = predict_target(wildcards)
    inputs = {"map": target["map"], "catalogue": target["catalogue"]}
    if target.get("weights"):
        inputs["weights"] = target["weights"]
    return inputs


def predict_outputs():
    return [f"results/predict/{t['name']}.csv" for t in config["predict"]["targets"]]


def redshift_figures():
    """Figure 9 (evaluation by redshift) when cluster.redshift is a distribution, else nothing:
    at one fixed z the summary has no redshift block to draw."""
    if not isinstance(config["cluster"]["redshift"], dict):
        return []
    return [f"results/figures/fig9_redshift.{ext}" for ext in config["figures"]["formats"]]


def check_slurm_cores():
    """Under the SLURM executor, refuse a run whose jobs ask for more CPUs than one node of
    their partition has: SLURM would keep them pending for ever (`Reason=PartitionConfig`)
    without an error. `cores` in profiles/slurm is what train_model and the prediction rules
    ask for (`threads: workflow.cores`)."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.cli_prefix != "slurm":
        return
    from szmass.slurm import oversized_jobs, query_node_cpus

    jobs = [
        (
            job.rule.name,
            job.resources.get("cpus_per_task") or job.threads,
            job.resources.get("slurm_partition"),
        )
        for job in workflow.dag.needrun_jobs()
        if not job.is_local
    ]
    try:
        cpus = query_node_cpus()
    except (OSError, subprocess.CalledProcessError) as e:  # the check must not stop a run
        logger.warning(f"could not check the jobs' CPUs against the nodes' (sinfo: {e})")
        return
    problems = oversized_jobs(jobs, cpus)
    if problems:
        raise WorkflowError(
            "these jobs can never start on this cluster (lower `cores` in the SLURM profile, "
            "or choose a partition with larger nodes):\n  " + "\n  ".join(problems)
        )


onstart:
    check_slurm_cores()
