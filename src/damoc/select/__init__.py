"""The selection pipeline (SPEC 1): compress data and candidates, proxy fine-tune, rank."""
