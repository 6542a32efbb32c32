"""Data filtering: twelve methods in three families behind one interface (docs/data_filters.md).

>>> from damoc.data.filters import run_filter, FILTERS
>>> sel = run_filter("kcenter", examples, 0.1, seed=0, embedder="tfidf")
>>> subset = [examples[i] for i in sel.indices]

Families: ``distribution`` (random, kcenter, kmeans, semdedup, dsir), ``quality`` (perplexity, ifd,
heuristics, llm-judge), ``hybrid`` (cluster-rank, deita, quality-kcenter).
"""

from damoc.data.filters.base import (
    FAMILIES,
    FILTERS,
    Filter,
    FilterContext,
    FilterOptions,
    QualityFilter,
    Selection,
    filter_names,
    make_filter,
    resolve_budget,
)
from damoc.data.filters.run import Comparison, MethodRun, compare_filters, run_filter

__all__ = [
    "FAMILIES",
    "FILTERS",
    "Comparison",
    "Filter",
    "FilterContext",
    "FilterOptions",
    "MethodRun",
    "QualityFilter",
    "Selection",
    "compare_filters",
    "filter_names",
    "make_filter",
    "resolve_budget",
    "run_filter",
]
