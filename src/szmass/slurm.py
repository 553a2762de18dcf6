"""Checks for running the workflow on SLURM (profiles/slurm): each job must fit on one node.

SLURM queues a job that asks for more CPUs than any node of its partition has, and keeps it
pending for ever (``Reason=PartitionConfig``) without an error; Snakemake then waits for it
silently. ``workflow/rules/common.smk`` refuses such a run before it submits anything.
"""

import subprocess
from collections.abc import Iterable

#: What ``node_cpus`` reads: one line per node and partition, its name and CPU count.
#: --all: hidden partitions too (a user may still submit to one).
SINFO_NODE_CPUS = ["sinfo", "--all", "--noheader", "--Node", "--format=%P %c"]


def node_cpus(sinfo_output: str) -> dict[str | None, int]:
    """The most CPUs one node has, per partition, from ``sinfo --noheader --Node --format='%P %c'``.

    The default partition (``sinfo`` marks it with ``*``) is also listed under ``None``: the
    partition of jobs that name none.
    """
    cpus: dict[str | None, int] = {}
    for line in sinfo_output.splitlines():
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            continue
        name, count = fields[0], int(fields[1])
        keys = [name.rstrip("*")] + ([None] if name.endswith("*") else [])
        for key in keys:
            cpus[key] = max(cpus.get(key, 0), count)
    return cpus


def query_node_cpus() -> dict[str | None, int]:
    """``node_cpus`` of the cluster this machine submits to (runs ``sinfo``)."""
    out = subprocess.run(SINFO_NODE_CPUS, capture_output=True, text=True, check=True).stdout
    return node_cpus(out)


def oversized_jobs(
    jobs: Iterable[tuple[str, int, str | None]], cpus: dict[str | None, int]
) -> list[str]:
    """One line for each rule whose jobs ask for more CPUs than a node of their partition has.

    ``jobs``: (rule, CPUs asked for, partition or None for the default one), as many times as
    there are jobs; ``cpus``: ``node_cpus``. A partition ``sinfo`` does not list is named too
    (sbatch would refuse it, but only after the jobs before it were submitted).
    """
    problems = {}
    for rule, asked, partition in jobs:
        where = f"partition {partition}" if partition else "the default partition"
        if partition not in cpus:
            problems[rule, where] = f"{rule}: {where} is not in sinfo"
        elif asked > cpus[partition]:
            problems[rule, where] = (
                f"{rule}: {asked} CPUs, but the nodes of {where} have at most {cpus[partition]}"
            )
    return sorted(problems.values())
