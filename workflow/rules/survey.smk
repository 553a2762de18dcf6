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
