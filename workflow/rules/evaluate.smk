wildcard_constraints:
    eval_set="[a-z]+[0-9.]*",


rule calibrate_network:
    input:
        model="results/model/mresunet.keras",
        model_normalization="results/model/normalization.json",
        data_normalization="results/datasets/normalization.json",
        val="results/datasets/val.zarr",
        code=src(
            "network/predict",
            "network/template",
            "network/dataset",
            "network/train",
            "network/stream",
            "calibration",
            "intervals",
            "io",
        ),
    output:
        "results/model/calibration.json",
    log:
        "logs/calibrate_network.log",
    benchmark:
        "benchmarks/calibrate_network.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/calibrate_network.py"


rule predict_set:
    input:
        model="results/model/mresunet.keras",
        model_normalization="results/model/normalization.json",
        data_normalization="results/datasets/normalization.json",
        calibration="results/model/calibration.json",
        shards=eval_set_shards,
        code=src(
            "network/predict",
            "network/template",
            "network/dataset",
            "network/train",
            "network/stream",
            "calibration",
            "intervals",
            "io",
            "sky/profiles",
            "sky/cosmology",
            "sky/cluster",
        ),
    output:
        predictions="results/eval/{eval_set}/predictions.csv",
        maps="results/eval/{eval_set}/mean_maps.npz",
    params:
        eval_set=eval_set_params,
    log:
        "logs/predict_set/{eval_set}.log",
    benchmark:
        "benchmarks/predict_set/{eval_set}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/predict_set.py"


rule summarize_results:
    input:
        predictions=expand("results/eval/{eval_set}/predictions.csv", eval_set=eval_sets(config)),
        maps=grid_eval_maps(),
        baseline=expand("results/baseline/{eval_set}/predictions.csv", eval_set=eval_sets(config)),
        calibration="results/baseline/calibration.json",
        no_scatter=scatter_free_shard(),
        realistic=REALISTIC_SHARD,
        model_summary="results/model/normalization.json",
        history="results/model/history.csv",
        training_benchmark="benchmarks/train_model.tsv",
        code=src(
            "report/summary",
            "report/claims",
            "report/claim_rows",
            "report/coverage",
            "report/redshift",
            "report/stats",
            "intervals",
            "io",
        ),
    output:
        summary=report("results/summary.json", category="Summary"),
        markdown="results/summary.md",
        per_mass=report(
            "results/eval/per_mass.csv",
            caption="../report/per_mass.rst",
            category="Summary",
        ),
        claims=report("results/claims.csv", caption="../report/claims.rst", category="Summary"),
    params:
        sets=list(eval_sets(config)),
        sigma_int=max(config["scatter"]["sigma_int"]),
        max_epochs=config["training"]["max_epochs"],
        train_masses=trained_masses(config),
        evaluation=canonical(config["evaluation"]),
        seed=config["seed"],
    log:
        "logs/summarize_results.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/summarize_results.py"
