"""train_model: the mResUNet on the training set; resumes a killed run from its last epoch."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.network.train import train_model

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
train_model(
    train_path=snakemake.input.train,
    val_path=snakemake.input.val,
    normalization_path=snakemake.input.normalization,
    out_model=snakemake.output.model,
    out_history=snakemake.output.history,
    out_normalization=snakemake.output.normalization,
    model=snakemake.params.model,
    training=snakemake.params.training,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
    spectra_path=snakemake.input.spectra[0] if snakemake.input.spectra else None,
    **snakemake.params.fresh_skies,
)
