"""make_survey_map: the survey-like test map, its truth catalogue and inverse-variance map."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.survey.testmap import make_survey_map

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
make_survey_map(
    spectra_path=snakemake.input.spectra,
    sky=snakemake.params.sky,
    cosmo=None,  # the spectra table's (with its derived sigma8)
    cluster=snakemake.params.cluster,
    out_map=snakemake.output.fits,
    out_catalogue=snakemake.output.truth,
    out_ivar=snakemake.output.ivar,
    seed=snakemake.params.seed,
    **snakemake.params.survey_map,
)
