"""The realistic test set: the stand-in for hydrodynamic clusters (B12 profiles, triaxiality,
substructure, line-of-sight halos), its rescaling, and the path that reads real Compton-y
cutouts from FITS files (the ``simulate_realistic`` stage).

May import ``szmass.sky`` and the top-level helpers, never ``network``, ``baseline`` or
``report``.
"""
