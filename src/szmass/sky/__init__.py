"""The sky: cosmology, the CMB and foreground spectra, the A10 pressure profile, cluster maps,
flat-sky map operations and the simulated shards (the ``compute_spectra`` and ``simulate_shard``
stages).

Imports only the top-level helpers (``szmass.config``, ``io``, ``logs``, ``units``) and its own
modules; every later stage builds on it.
"""
