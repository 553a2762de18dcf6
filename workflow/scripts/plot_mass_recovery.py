"""plot_mass_recovery: Figure 4, estimated against true mass with dM/M and pull panels."""

import _bootstrap  # noqa: F401  (src/ on sys.path)
import pandas as pd

from szmass.logs import setup_logging
from szmass.report.figures import figure_mass_recovery

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
figure_mass_recovery(
    per_mass=pd.read_csv(snakemake.input.per_mass),
    train_masses_1e14=snakemake.params.train_masses,
    out_paths=list(snakemake.output),
    dpi=snakemake.params.dpi,
)
