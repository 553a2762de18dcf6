"""plot_redshift: Figure 9, the network against the matched filter by redshift (issue 16)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures_redshift import figure_redshift

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_redshift(
    summary=snakemake.input.summary, out_paths=list(snakemake.output), dpi=snakemake.params.dpi
)
