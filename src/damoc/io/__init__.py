"""Task loading, field mapping, run directories and atomic writes."""
