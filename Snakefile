# szmass: galaxy-cluster masses from SZ maps (Gupta & Reichardt 2020, arXiv:2003.06135).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/survey.smk"


rule all:
    default_target: True
    input:
        "results/spectra/spectra.ecsv",
        all_shards(),
        "results/model/mresunet.keras",
        "results/summary.json",
        "results/model/model_card.json",
        predict_outputs(),
        rules.plot_example.output,
        rules.plot_sz_maps.output,
        rules.plot_mass_recovery.output,
        rules.plot_scatter.output,
        rules.plot_realistic.output,
        rules.plot_baseline.output,
        rules.plot_coverage.output,
        redshift_figures(),
