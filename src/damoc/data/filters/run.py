"""The entry points other parts call: :func:`run_filter` and :func:`compare_filters`."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from damoc.data.filters.base import FILTERS, FilterContext, Selection, make_filter, resolve_budget
from damoc.errors import DamocError
from damoc.io.tasks import Example

log = logging.getLogger(__name__)

CONTEXT_KEYS = {f.name for f in fields(FilterContext) if not f.name.startswith("_")} - {"seed"}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into FilterContext fields and the method's own options."""
    ctx = {k: v for k, v in options.items() if k in CONTEXT_KEYS}
    method = {k: v for k, v in options.items() if k not in CONTEXT_KEYS}
    return ctx, method


def run_filter(
    name: str,
    examples: Sequence[Example],
    budget: int | float,
    seed: int = 0,
    ctx: FilterContext | None = None,
    **options: Any,
) -> Selection:
    """Select ``budget`` rows of ``examples`` with the filter ``name``.

    ``budget`` is a fraction in (0, 1) or a row count >= 1; a budget >= the pool returns every row.
    ``options`` mixes :class:`FilterContext` fields (``embedder``, ``reference_model``, ``target``,
    ``label_field``, ``judge``, ``embeddings``, ...) and the method's own options (``threshold``,
    ``clusters``, ``quality``, ...), which are validated by its options model. Pass ``ctx`` to share one
    context (and its embedding cache) across several calls; ``seed`` and context options then override
    nothing and must not be given.
    """
    ctx_opts, method_opts = split_options(options)
    filt = make_filter(name, method_opts)
    if not examples:
        raise DamocError("no examples to filter")
    resolve_budget(budget, len(examples))  # check before any expensive set-up
    if ctx is None:
        ctx = FilterContext(seed=seed, **ctx_opts)
    elif ctx_opts:
        raise DamocError(f"pass {', '.join(sorted(ctx_opts))} in the FilterContext, not as options")
    return filt.select(list(examples), budget, ctx)


@dataclass
class MethodRun:
    """One method's result in a comparison."""

    method: str
    family: str
    indices: list[int]
    wall_s: float
    selection: Selection | None = None
    error: str | None = None
    agreement: float | None = None  # filled by the selection pipeline's ranking-agreement hook


@dataclass
class Comparison:
    budget: int
    n: int
    seed: int
    runs: list[MethodRun]
    overlap: dict[str, dict[str, float]] = field(default_factory=dict)  # Jaccard of the kept index sets

    def to_record(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "n": self.n,
            "seed": self.seed,
            "methods": [
                {
                    "method": r.method,
                    "family": r.family,
                    "wall_s": round(r.wall_s, 4),
                    "kept": len(r.indices),
                    "error": r.error,
                    "agreement": r.agreement,
                }
                for r in self.runs
            ],
            "overlap": self.overlap,
        }


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


# The hook for the selection pipeline: given a method name and its Selection, return how well the proxy
# ranking of candidates trained on that subset agrees with the reference ranking (e.g. Spearman rho).
AgreementHook = Callable[[str, Selection], float]


def compare_filters(
    names: Sequence[str],
    examples: Sequence[Example],
    budget: int | float,
    seed: int = 0,
    agreement: AgreementHook | None = None,
    keep_going: bool = True,
    **options: Any,
) -> Comparison:
    """Run several filters on the same pool and budget: time, pairwise overlap, optional agreement.

    One :class:`FilterContext` is shared, so embeddings and the reference LM are computed once (the
    first method that needs them pays for them; see ``wall_s``). Options that a method's model does not
    know are dropped for that method, so e.g. ``threshold=0.8`` reaches only semdedup. A failing method
    is recorded with its error when ``keep_going``.
    """
    names = [FILTERS.entry(n).name for n in names]  # unknown names fail before any work
    if len(set(names)) != len(names):
        raise DamocError("each method may appear once in --compare")
    if not examples:
        raise DamocError("no examples to filter")
    k = resolve_budget(budget, len(examples))
    ctx_opts, method_opts = split_options(options)
    unknown = set(method_opts) - {key for n in names for key in FILTERS.get(n).Options.model_fields}
    if unknown:
        raise DamocError(f"no compared method takes the option(s) {', '.join(sorted(unknown))}")
    ctx = FilterContext(seed=seed, **ctx_opts)
    runs: list[MethodRun] = []
    for name in names:
        cls = FILTERS.get(name)
        own = {k2: v for k2, v in method_opts.items() if k2 in cls.Options.model_fields}
        t0 = time.perf_counter()
        try:
            sel = cls(own).select(list(examples), k, ctx)
        except DamocError as exc:
            if not keep_going:
                raise
            log.warning("filter %s failed: %s", name, exc)
            runs.append(MethodRun(name, cls.family, [], time.perf_counter() - t0, error=str(exc)))
            continue
        run = MethodRun(name, cls.family, sel.indices, time.perf_counter() - t0, selection=sel)
        if agreement is not None:
            run.agreement = float(agreement(name, sel))
        runs.append(run)
    overlap: dict[str, dict[str, float]] = {r.method: {} for r in runs if r.error is None}
    for a, b in itertools.combinations([r for r in runs if r.error is None], 2):
        j = round(jaccard(a.indices, b.indices), 4)
        overlap[a.method][b.method] = j
        overlap[b.method][a.method] = j
    return Comparison(budget=k, n=len(examples), seed=seed, runs=runs, overlap=overlap)
