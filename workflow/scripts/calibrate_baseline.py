"""calibrate_baseline: the matched filter's mass calibration on the training realizations."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.baseline.calibration import calibrate_baseline
from szmass.logs import setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
calibrate_baseline(
    spectra_path=snakemake.input.spectra,
    shard_paths=list(snakemake.input.shards),
    realizations=snakemake.params.realizations,
    sky=snakemake.params.sky,
    cluster=snakemake.params.cluster,
    baseline=snakemake.params.baseline,
    out_path=snakemake.output[0],
)
