"""The report: statistics of the mass estimates, the summary tables and the paper's claims, the
figures, and the export of a run's small outputs (``summarize_results``, the ``plot_*`` rules and
``python -m szmass.report.export``).

The top of the DAG: may import ``network``, ``baseline``, ``realistic``, ``sky`` and the
top-level helpers; nothing imports it.
"""
