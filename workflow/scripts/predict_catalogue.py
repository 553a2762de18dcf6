"""predict_catalogue: masses for the clusters of a configured map (``szmass predict``)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.survey.predict import predict_catalogue

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
target = snakemake.params.target
predict_catalogue(
    map_path=snakemake.input.map,
    catalogue_path=snakemake.input.catalogue,
    out_path=snakemake.output[0],
    model_dir=snakemake.params.model_dir,
    weights_path=snakemake.input.get("weights"),
    beam_fwhm_arcmin=target.get("beam_fwhm_arcmin"),
    unit=target.get("unit"),
    order=snakemake.params.resample,
    threads=snakemake.threads,
)
