rule plot_example:
    input:
        shard=f"results/sims/grid/M{mass_label(config['figures']['example_mass'])}.zarr",
        normalization="results/datasets/normalization.json",
        code=src("report/figures", "network/dataset"),
    output:
        figures("fig2_example", "fig2.rst"),
    params:
        realization=config["figures"]["example_realization"],
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_example.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_example.py"


rule plot_sz_maps:
    input:
        maps=grid_eval_maps(),
        code=src("report/figures"),
    output:
        figures("fig3_sz_maps", "fig3.rst"),
    params:
        masses=config["evaluation"]["sz_masses"],
        pixel_arcmin=config["sky"]["pixel_arcmin"],
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_sz_maps.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_sz_maps.py"


rule plot_mass_recovery:
    input:
        per_mass="results/eval/per_mass.csv",
        code=src("report/figures"),
    output:
        figures("fig4_mass_recovery", "fig4.rst"),
    params:
        train_masses=trained_masses(config),
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_mass_recovery.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_mass_recovery.py"


rule plot_scatter:
    input:
        predictions=[
            f"results/eval/{name}/predictions.csv"
            for name in eval_sets(config)
            if name.startswith("scatter")
        ],
        summary="results/summary.json",
        code=src("report/figures", "report/stats"),
    output:
        figures("fig5_scatter", "fig5.rst"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_scatter.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_scatter.py"


rule plot_realistic:
    input:
        predictions="results/eval/realistic/predictions.csv",
        shard=REALISTIC_SHARD,
        summary="results/summary.json",
        code=src("report/figures", "report/stats", "report/summary", "report/claims"),
    output:
        figures("fig6_realistic", "fig6.rst"),
    params:
        source=config["realistic"]["source"],
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_realistic.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_realistic.py"


rule plot_baseline:
    input:
        per_mass="results/eval/per_mass.csv",
        summary="results/summary.json",
        code=src("report/figures"),
    output:
        figures("fig7_baseline", "fig7.rst"),
    params:
        train_masses=trained_masses(config),
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_baseline.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_baseline.py"


rule plot_coverage:
    input:
        summary="results/summary.json",
        code=src("report/figures", "report/coverage", "report/claim_rows"),
    output:
        figures("fig8_coverage", "fig8.rst"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_coverage.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_coverage.py"


rule plot_redshift:
    input:
        summary="results/summary.json",
        code=src("report/figures_redshift", "report/figures", "report/redshift"),
    output:
        figures("fig9_redshift", "fig9.rst"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        "logs/plot_redshift.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../scripts/plot_redshift.py"
