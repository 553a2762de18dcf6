"""simulate_shard: one Zarr shard of simulated cutouts (a grid mass or a scatter set)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.sky.simulate import simulate_shard

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
simulate_shard(
    spectra_path=snakemake.input.spectra,
    out_path=snakemake.output[0],
    threads=snakemake.threads,
    **snakemake.params.shard,
)
