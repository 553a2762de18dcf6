"""simulate_realistic: the realistic-profile test shard (stand-in clusters or real cutouts)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.realistic.shard import simulate_realistic_shard

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
simulate_realistic_shard(
    spectra_path=snakemake.input.spectra,
    out_path=snakemake.output[0],
    seed=snakemake.params.seed,
    sky=snakemake.params.sky,
    cluster=snakemake.params.cluster,
    realistic=snakemake.params.realistic,
    threads=snakemake.threads,
)
