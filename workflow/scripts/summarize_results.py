"""summarize_results: per-mass statistics, scatter fits, the floor and the claims table."""

import _bootstrap  # noqa: F401  (src/ on sys.path)

from szmass.logs import setup_logging
from szmass.report.summary import summarize

snakemake = globals()["snakemake"]
setup_logging(snakemake.log[0])
summarize(
    predictions=dict(zip(snakemake.params.sets, snakemake.input.predictions, strict=True)),
    maps=list(snakemake.input.maps),
    baseline_predictions=dict(zip(snakemake.params.sets, snakemake.input.baseline, strict=True)),
    baseline_calibration=snakemake.input.calibration,
    realistic_shard=snakemake.input.realistic,
    no_scatter_shard=snakemake.input.no_scatter[0] if snakemake.input.no_scatter else None,
    sigma_int=snakemake.params.sigma_int,
    model_summary=snakemake.input.model_summary,
    history=snakemake.input.history,
    training_benchmark=snakemake.input.training_benchmark,
    max_epochs=snakemake.params.max_epochs,
    train_masses_1e14=snakemake.params.train_masses,
    out_json=snakemake.output.summary,
    out_markdown=snakemake.output.markdown,
    out_per_mass=snakemake.output.per_mass,
    out_claims=snakemake.output.claims,
    n_boot=snakemake.params.evaluation["n_bootstrap"],
    sz_masses_1e14=snakemake.params.evaluation["sz_masses"],
    seed=snakemake.params.seed,
    smoke_test=snakemake.params.evaluation["smoke_test"],
    redshift_bin_width=snakemake.params.evaluation["redshift_bin_width"],
)
