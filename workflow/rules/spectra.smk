rule compute_spectra:
    input:
        code=src("spectra", "cosmology"),
    output:
        "results/spectra/spectra.ecsv",
    log:
        "logs/compute_spectra.log",
    benchmark:
        "benchmarks/compute_spectra.tsv"
    conda:
        "../../envs/spectra.yaml"
    threads: 1
    params:
        cosmology=config["cosmology"],
        spectra=config["spectra"],
    script:
        "../scripts/compute_spectra.py"
