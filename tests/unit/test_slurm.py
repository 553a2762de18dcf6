"""szmass.slurm: reading sinfo's node sizes and naming the jobs no node can hold (the check of
workflow/rules/common.smk; tests/slurm runs it on a real cluster)."""

from szmass.slurm import node_cpus, oversized_jobs

#: `sinfo --noheader --Node --format='%P %c'` of a cluster with a default CPU partition of
#: 16- and 32-CPU nodes and a GPU partition of 8-CPU nodes (one node in both).
SINFO = """cpu* 16
cpu* 32
gpu 8
cpu* 8
"""


def test_node_cpus_takes_the_largest_node_per_partition():
    assert node_cpus(SINFO) == {"cpu": 32, None: 32, "gpu": 8}


def test_node_cpus_ignores_what_is_not_a_node_line():
    assert node_cpus("\nsinfo: error: something\ngpu 4\n") == {"gpu": 4}


def test_jobs_that_fit_pass():
    jobs = [("train_model", 8, "gpu"), ("simulate_shard", 1, None), ("split_dataset", 1, "cpu")]
    assert oversized_jobs(jobs, node_cpus(SINFO)) == []


def test_too_many_cpus_are_named_once_per_rule():
    jobs = [("train_model", 9, "gpu"), ("predict_set", 9, "gpu"), ("predict_set", 9, "gpu")]
    assert oversized_jobs(jobs, node_cpus(SINFO)) == [
        "predict_set: 9 CPUs, but the nodes of partition gpu have at most 8",
        "train_model: 9 CPUs, but the nodes of partition gpu have at most 8",
    ]


def test_default_partition_and_unknown_partitions():
    cpus = node_cpus(SINFO)
    assert oversized_jobs([("train_model", 33, None)], cpus) == [
        "train_model: 33 CPUs, but the nodes of the default partition have at most 32"
    ]
    assert oversized_jobs([("train_model", 1, "CHANGE_ME_gpu_partition")], cpus) == [
        "train_model: partition CHANGE_ME_gpu_partition is not in sinfo"
    ]
    assert oversized_jobs([("compute_spectra", 1, None)], {"gpu": 8}) == [
        "compute_spectra: the default partition is not in sinfo"
    ]
