"""calibrate_network: the network's raw estimate calibrated on the validation realizations."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.network.predict import calibrate_network

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
calibrate_network(
    model_path=snakemake.input.model,
    model_normalization_path=snakemake.input.model_normalization,
    data_normalization_path=snakemake.input.data_normalization,
    val_path=snakemake.input.val,
    out_path=snakemake.output[0],
    threads=snakemake.threads,
)
