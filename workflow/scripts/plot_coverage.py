"""plot_coverage: Figure 8, the per-cluster intervals' coverage and PIT (issue 14)."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures import figure_coverage

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_coverage(
    summary=snakemake.input.summary, out_paths=list(snakemake.output), dpi=snakemake.params.dpi
)
