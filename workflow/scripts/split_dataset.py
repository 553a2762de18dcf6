"""split_dataset: training and validation sets (network-ready) from the training-mass shards
(the grid's training masses, or the continuous train and val shards)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.network.dataset import split_dataset

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
split_dataset(
    train=snakemake.params.split["train"],
    val=snakemake.params.split["val"],
    out_train=snakemake.output.train,
    out_val=snakemake.output.val,
    out_normalization=snakemake.output.normalization,
)
