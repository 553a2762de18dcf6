rule train_model:
    input:
        train="results/datasets/train.zarr",
        val="results/datasets/val.zarr",
        normalization="results/datasets/normalization.json",
        code=src("network/train", "network/model", "network/dataset"),
    output:
        model="results/model/mresunet.keras",
        history="results/model/history.csv",
        normalization="results/model/normalization.json",
    params:
        model=canonical(config["model"]),
        training=canonical(config["training"]),
        seed=config["seed"],
    log:
        "logs/train_model.log",
    benchmark:
        "benchmarks/train_model.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_model.py"
