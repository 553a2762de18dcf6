rule calibrate_baseline:
    input:
        spectra="results/spectra/spectra.ecsv",
        shards=train_shards(config),
        code=src(
            "baseline/calibration",
            "baseline/matched_filter",
            "baseline/redshift",
            "calibration",
            "intervals",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "io",
            "sky/spectra",
        ),
    output:
        "results/baseline/calibration.json",
    params:
        realizations=config["split"]["train"],
        sky=canonical(config["sky"]),
        cluster=canonical(cluster_params()),
        baseline=canonical(config["baseline"]),
    log:
        "logs/calibrate_baseline.log",
    benchmark:
        "benchmarks/calibrate_baseline.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/calibrate_baseline.py"


rule baseline_set:
    input:
        spectra="results/spectra/spectra.ecsv",
        calibration="results/baseline/calibration.json",
        shards=eval_set_shards,
        code=src(
            "baseline/calibration",
            "baseline/matched_filter",
            "baseline/redshift",
            "calibration",
            "intervals",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "io",
            "sky/spectra",
        ),
    output:
        "results/baseline/{eval_set}/predictions.csv",
    params:
        eval_set=eval_set_params,
        sky=canonical(config["sky"]),
        cluster=canonical(cluster_params()),
        baseline=canonical(config["baseline"]),
        sigma_int=config["cluster"]["sigma_int"],
    log:
        "logs/baseline_set/{eval_set}.log",
    benchmark:
        "benchmarks/baseline_set/{eval_set}.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/baseline_set.py"
