"""Evaluation: likelihood scores, generation and metrics."""
