"""The selection pipeline (docs/selection.md): compress data and candidates, proxy fine-tune, rank."""
