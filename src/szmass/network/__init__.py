"""The network: the training and validation sets with their labels and normalization, the
mResUNet, its training and its predictions on the test sets (the ``split_dataset``,
``train_model`` and ``predict_set`` stages).

May import ``szmass.sky`` and the top-level helpers, never ``baseline``, ``realistic`` or
``report``.
"""
