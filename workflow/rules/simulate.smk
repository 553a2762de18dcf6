wildcard_constraints:
    set="grid|scatter",
    name="M[0-9.]+|sigma[0-9.]+",


rule simulate_shard:
    input:
        spectra="results/spectra/spectra.ecsv",
        code=src("simulate", "cluster", "profiles", "maps", "cosmology", "io"),
    output:
        directory("results/sims/{set}/{name}.zarr"),
    log:
        "logs/simulate_shard/{set}/{name}.log",
    benchmark:
        "benchmarks/simulate_shard/{set}/{name}.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    params:
        shard=shard_params,
    script:
        "../scripts/simulate_shard.py"
