"""write_model_card: the model card and the matched filter beside the trained model."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.survey.card import write_model_files

snakemake = globals()["snakemake"]
log = setup_logging(snakemake.log[0])
card = write_model_files(
    model_dir=snakemake.params.model_dir,
    spectra_path=snakemake.input.spectra,
    baseline_calibration_path=snakemake.input.baseline_calibration,
    summary_path=snakemake.input.summary,
    sky=snakemake.params.sky,
    cluster=snakemake.params.cluster,
    baseline=snakemake.params.baseline,
    train_masses_1e14=snakemake.params.train_masses,
    model=snakemake.params.model,
    training=snakemake.params.training,
    sampling=snakemake.params.sampling,
)
log.info("wrote %s and %s", snakemake.output.card, snakemake.output.filter)
