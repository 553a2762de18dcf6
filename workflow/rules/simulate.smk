wildcard_constraints:
    set="grid|scatter|continuous",
    name="M[0-9.]+|sigma[0-9.]+|(train|val)-[0-9]+",


rule simulate_shard:
    input:
        spectra="results/spectra/spectra.ecsv",
        code=src(
            "sky/simulate",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "sky/cosmology",
            "io",
            "units",
            "sky/spectra",
        ),
    output:
        directory("results/sims/{set}/{name}.zarr"),
    params:
        shard=shard_params,
    log:
        "logs/simulate_shard/{set}/{name}.log",
    benchmark:
        "benchmarks/simulate_shard/{set}/{name}.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate_shard.py"


rule simulate_realistic:
    input:
        spectra="results/spectra/spectra.ecsv",
        real=realistic_inputs,
        code=src(
            "realistic/standin",
            "realistic/shard",
            "realistic/rescale",
            "realistic/b12",
            "realistic/los_halos",
            "realistic/fits",
            "sky/simulate",
            "sky/cluster",
            "sky/profiles",
            "sky/maps",
            "sky/cosmology",
            "io",
            "units",
            "sky/spectra",
        ),
    output:
        directory(REALISTIC_SHARD),
    params:
        seed=config["seed"],
        sky=canonical(config["sky"]),
        cluster=canonical(cluster_params()),
        realistic=canonical(config["realistic"]),
    log:
        "logs/simulate_realistic.log",
    benchmark:
        "benchmarks/simulate_realistic.tsv"
    threads: 1
    conda:
        "../../envs/simulate.yaml"
    script:
        "../scripts/simulate_realistic.py"
