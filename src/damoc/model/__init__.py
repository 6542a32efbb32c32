"""Model level: loading, layer importance, layer removal, merging, calibrated and structured pruning."""
