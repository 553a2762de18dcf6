"""plot_sz_maps: Figure 3, mean true, predicted and residual SZ maps."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.figures import figure_sz_maps

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_sz_maps(
    maps_paths=list(snakemake.input.maps),
    masses_1e14=snakemake.params.masses,
    pixel_arcmin=snakemake.params.pixel_arcmin,
    out_paths=list(snakemake.output),
    dpi=snakemake.params.dpi,
)
