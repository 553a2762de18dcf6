"""plot_example: Figure 2, an example cutout and its two labels."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures import figure_example

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_example(
    shard_path=snakemake.input.shard,
    normalization_path=snakemake.input.normalization,
    realization=snakemake.params.realization,
    out_paths=list(snakemake.output),
    dpi=snakemake.params.dpi,
)
