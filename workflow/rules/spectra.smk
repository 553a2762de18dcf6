rule compute_spectra:
    input:
        code=src("sky/spectra", "sky/cosmology"),
    output:
        "results/spectra/spectra.ecsv",
    params:
        cosmology=canonical(config["cosmology"]),
        spectra=canonical(config["spectra"]),
    log:
        "logs/compute_spectra.log",
    benchmark:
        "benchmarks/compute_spectra.tsv"
    threads: 1
    conda:
        "../../envs/spectra.yaml"
    script:
        "../scripts/compute_spectra.py"
