"""A user's own sky map: catalogue and map input, cutouts on the training grid, the model
card, and masses for every listed cluster from the network and the matched filter
(``szmass predict``); and a survey-like test map the project makes itself.

May import ``szmass.network``, ``szmass.baseline``, ``szmass.sky`` and the top-level helpers,
never ``report`` or ``realistic``.
"""
