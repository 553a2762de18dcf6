rule split_dataset:
    input:
        shards=network_split_shards(),
        code=src("network/dataset", "io", "sky/profiles", "sky/cosmology", "sky/cluster", "units"),
    output:
        train=directory("results/datasets/train.zarr"),
        val=directory("results/datasets/val.zarr"),
        normalization="results/datasets/normalization.json",
    params:
        split=network_split(config),
    log:
        "logs/split_dataset.log",
    benchmark:
        "benchmarks/split_dataset.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/split_dataset.py"
