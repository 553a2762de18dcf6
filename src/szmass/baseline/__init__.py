"""The baseline: the multi-scale matched filter, its calibration on the training shards and its
mass estimates on the test sets (the ``calibrate_baseline`` and ``baseline_set`` stages).

May import ``szmass.sky`` and the top-level helpers, never ``network``, ``realistic`` or
``report``.
"""
