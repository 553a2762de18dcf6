"""plot_scatter: Figure 5, ln(M_est/M_true) histograms of the scatter sets and their fits."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures import figure_scatter_from_outputs

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_scatter_from_outputs(
    predictions=list(snakemake.input.predictions),
    summary_path=snakemake.input.summary,
    out_paths=list(snakemake.output),
    dpi=snakemake.params.dpi,
)
