"""Distribution-aware filters: coverage and diversity of the kept rows."""
