"""FineScope curation: a TopK sparse autoencoder on one layer's residual stream picks domain rows.

``sae`` (the module), ``train_sae`` (its training loop), ``activations`` (hooks), ``curation``
(scoring methods, registered by name), ``config`` (the ``curate`` and ``finescope`` jobs),
``recipe`` (curate -> prune -> distill), ``scores`` (the domain scores of each stage),
``stage_cache`` (the recipe's stage outputs by settings) and ``finescope_report`` (its report).
"""
