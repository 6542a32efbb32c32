"""Hybrid filters: quality and diversity together."""
