"""Quality-aware filters: a per-example quality score, then the best rows."""
