"""plot_realistic: Figure 6, the realistic-profile set after rescaling by r."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures import figure_realistic_from_outputs

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_realistic_from_outputs(
    predictions_path=snakemake.input.predictions,
    shard_path=snakemake.input.shard,
    summary_path=snakemake.input.summary,
    source=snakemake.params.source,
    out_paths=list(snakemake.output),
    dpi=snakemake.params.dpi,
)
