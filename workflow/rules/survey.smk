# The survey-like test map for `szmass predict` (its worked example and end-to-end test input);
# not part of `rule all`: `snakemake results/survey/testmap.fits`.


rule make_survey_map:
    input:
        spectra="results/spectra/spectra.ecsv",
        code=src(
            "survey/testmap",
            "sky/simulate",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "sky/cosmology",
            "sky/spectra",
            "units",
        ),
    output:
        fits="results/survey/testmap.fits",
        truth="results/survey/testmap_truth.csv",
        ivar="results/survey/testmap_ivar.fits",
    params:
        seed=config["seed"],
        sky={k: config["sky"][k] for k in ("freq_ghz", "beam_fwhm_arcmin", "noise_uk_arcmin")},
        cluster=canonical(config["cluster"]),
        survey_map=canonical(config["survey_map"]),
    log:
        "logs/make_survey_map.log",
    benchmark:
        "benchmarks/make_survey_map.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/make_survey_map.py"


# The model card and the matched filter beside the model, for `szmass predict` (in `rule all`).
rule write_model_card:
    input:
        model="results/model/mresunet.keras",
        normalization="results/model/normalization.json",
        spectra="results/spectra/spectra.ecsv",
        baseline_calibration="results/baseline/calibration.json",
        summary="results/summary.json",
        code=src(
            "survey/card",
            "network/dataset",
            "baseline/matched_filter",
            "baseline/calibration",
            "baseline/redshift",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "sky/spectra",
        ),
    output:
        card="results/model/model_card.json",
        filter="results/model/matched_filter.npz",
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
        sky=canonical(config["sky"]),
        cluster=canonical(config["cluster"]),
        baseline=canonical(config["baseline"]),
        train_masses=trained_masses(config),
        sampling=config["split"]["masses"],
        model=canonical(config["model"]),
        training=canonical(config["training"]),
    log:
        "logs/write_model_card.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/write_model_card.py"


# Masses for the clusters of the maps the config names (`predict.targets`; none by default).
rule predict_catalogue:
    input:
        unpack(predict_target_inputs),
        model="results/model/mresunet.keras",
        normalization="results/model/normalization.json",
        calibration="results/model/calibration.json",
        card="results/model/model_card.json",
        filter="results/model/matched_filter.npz",
        code=src(
            "survey/predict",
            "survey/cutouts",
            "survey/skymap",
            "survey/catalogue",
            "survey/card",
            "network/predict",
            "network/train",
            "network/stream",
            "network/callback",
            "network/dataset",
            "network/template",
            "sky/cluster",
            "sky/cosmology",
            "sky/maps",
            "sky/profiles",
            "calibration",
            "intervals",
            "io",
            "logs",
            "units",
        ),
    output:
        "results/predict/{target}.csv",
    params:
        model_dir=lambda wildcards, input: os.path.dirname(input.model),
        target=lambda wildcards: canonical(predict_target(wildcards)),
        resample=config["predict"]["resample"],
    log:
        "logs/predict_catalogue/{target}.log",
    benchmark:
        "benchmarks/predict_catalogue/{target}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/predict_catalogue.py"
