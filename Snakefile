# szmass: galaxy-cluster masses from SZ maps (Gupta & Reichardt 2020, arXiv:2003.06135).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"


rule all:
    default_target: True
    input:
        "results/spectra/spectra.ecsv",
        all_shards(),
        "results/model/mresunet.keras",
