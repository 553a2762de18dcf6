"""predict_set: the trained network's mass estimates for one test set."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.network.predict import predict_set

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
predict_set(
    model_path=snakemake.input.model,
    model_normalization_path=snakemake.input.model_normalization,
    data_normalization_path=snakemake.input.data_normalization,
    shard_paths=list(snakemake.input.shards),
    realizations=snakemake.params.eval_set["realizations"],
    out_predictions=snakemake.output.predictions,
    out_maps=snakemake.output.maps,
    calibration_path=snakemake.input.calibration,
    threads=snakemake.threads,
)
