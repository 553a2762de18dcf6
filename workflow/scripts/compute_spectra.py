"""compute_spectra: CAMB lensed TT + George et al. 2015 foregrounds -> one ECSV table."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.sky.spectra import compute_spectra, write_spectra

snakemake = globals()["snakemake"]
log = setup_logging(snakemake.log[0])
spectra = snakemake.params.spectra
table = compute_spectra(
    cosmology=snakemake.params.cosmology,
    lmax_camb=spectra["lmax_camb"],
    lmax=spectra["lmax"],
    foregrounds=spectra["foregrounds"],
)
write_spectra(table, snakemake.output[0])
log.info("wrote %s (sigma8 = %.4f)", snakemake.output[0], table.meta["cosmology"]["sigma8"])
