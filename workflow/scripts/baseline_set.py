"""baseline_set: matched-filter masses for one test set, on the network's very maps."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.baseline.calibration import baseline_set
from szmass.logs import setup_logging

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
baseline_set(
    spectra_path=snakemake.input.spectra,
    calibration_path=snakemake.input.calibration,
    shard_paths=list(snakemake.input.shards),
    realizations=snakemake.params.eval_set["realizations"],
    sky=snakemake.params.sky,
    cluster=snakemake.params.cluster,
    baseline=snakemake.params.baseline,
    sigma_int=snakemake.params.sigma_int,
    out_predictions=snakemake.output[0],
)
