"""The one filtering interface: ``Filter.select(examples, budget, ctx) -> Selection``.

Every method is a :class:`Filter` subclass in its own module, listed in :data:`FILTERS` under a
family (``distribution``, ``quality``, ``hybrid``), with its numbers in a small pydantic options model.
A :class:`FilterContext` carries what methods share: the seed, the embedder (and an embedding cache),
the lazily loaded reference LM, the DSIR target examples and the label field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from damoc.config import StrictModel, parse_config
from damoc.data.embed import Embedder, get_embedder, text_key
from damoc.errors import DamocError
from damoc.io.tasks import Example
from damoc.registry import Entry, Registry

# The reference LM's loader (torch, transformers) is imported when a model-based filter first asks for
# it: `damoc filter --list` and the embedding filters do not load it.

log = logging.getLogger(__name__)

FAMILIES = ("distribution", "quality", "hybrid")
DEFAULT_REFERENCE_MODEL = "smollm2-135m"

# Which text of an example is embedded / hashed: "qac" is question, answer, then context, so an encoder
# that truncates long inputs cuts the context, not the question.
TextView = Literal["qac", "text", "prompt", "question", "answer"]


@dataclass
class Selection:
    """The rows a filter keeps.

    ``indices`` are positions in the input list, unique, in the method's own priority order (k-center's
    greedy order, a quality filter's best-first order, ...). ``scores``, when the method has one, holds
    the method's score for *every* input example (aligned with the input, meaning given by
    ``score_name``, e.g. perplexity or IFD). ``info`` holds small method-specific facts (cluster sizes,
    duplicates dropped, rejection counts).
    """

    indices: list[int]
    scores: list[float] | None = None
    score_name: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class FilterOptions(StrictModel):
    """Base of every method's options model (unknown keys are an error)."""


ModelSpec = str | Path | tuple  # a zoo name, a model directory, or an already loaded (model, tokenizer)
Judge = Callable[[list[str]], list[str]]  # judge prompts -> judge completions

_LM_CACHE: dict[str, tuple[Any, Any]] = {}


def load_reference_lm(spec: ModelSpec) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a zoo name or directory, loaded once per process."""
    if isinstance(spec, tuple):
        return spec
    key = str(spec)
    if key not in _LM_CACHE:
        from damoc.model.arch import load_model

        log.info("loading reference LM %s", key)
        _LM_CACHE[key] = load_model(key)
    return _LM_CACHE[key]


@dataclass
class FilterContext:
    """What the filters share for one run; cheap to build, expensive parts load on first use."""

    seed: int = 0
    embedder: str | Embedder = "auto"
    text_view: TextView = "qac"  # which text of an example to embed / hash (see TextView)
    embeddings: np.ndarray | None = None  # precomputed (n, d) embeddings of the pool, if the caller has them
    reference_model: ModelSpec = DEFAULT_REFERENCE_MODEL  # LM for perplexity / IFD
    judge_model: ModelSpec | None = None  # instruct LM for llm-judge; default: reference_model
    judge: Judge | None = None  # a ready judge function (tests, remote endpoints)
    target: list[Example] | None = None  # DSIR target: dev or seed examples
    label_field: str | None = "label"  # ``label`` uses Example.label, another name reads Example.meta
    _emb_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def texts(self, examples: Sequence[Example], view: TextView | None = None) -> list[str]:
        view = view or self.text_view
        if view == "qac":
            return ["\n".join(p for p in (e.question, e.answer, e.context) if p) for e in examples]
        if view == "text":
            return [e.text() for e in examples]
        if view == "prompt":
            return [e.prompt() for e in examples]
        if view == "question":
            return [e.question for e in examples]
        return [e.answer for e in examples]

    def embed(self, examples: Sequence[Example]) -> np.ndarray:
        """L2-normalised embeddings of the examples' text view, cached per pool."""
        if self.embeddings is not None:
            if len(self.embeddings) != len(examples):
                raise DamocError(
                    f"embeddings have {len(self.embeddings)} rows but there are {len(examples)} examples"
                )
            return np.asarray(self.embeddings, dtype=np.float32)
        texts = self.texts(examples)
        key = text_key("\x00".join(texts))
        if key not in self._emb_cache:
            self._emb_cache[key] = get_embedder(self.embedder).encode(texts)
        return self._emb_cache[key]

    def labels(self, examples: Sequence[Example]) -> list[str | None]:
        if not self.label_field:
            return [None] * len(examples)
        if self.label_field == "label":
            return [e.label for e in examples]
        out = []
        for e in examples:
            v = e.meta.get(self.label_field)
            out.append(None if v in (None, "") else str(v))
        return out

    def reference_lm(self) -> tuple[Any, Any]:
        return load_reference_lm(self.reference_model)


def resolve_budget(budget: int | float, n: int) -> int:
    """Rows to keep: a fraction in (0, 1) of ``n`` (at least 1), or a row count >= 1 (capped at ``n``)."""
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not np.isfinite(budget):
        raise DamocError(f"budget must be a fraction in (0, 1) or a row count >= 1, got {budget!r}")
    if budget <= 0:
        raise DamocError(f"budget must be > 0 (a fraction in (0, 1) or a row count), got {budget}")
    if budget < 1:
        return max(1, int(round(budget * n)))
    if float(budget) != int(budget):
        raise DamocError(f"a budget >= 1 is a row count and must be whole, got {budget}")
    return min(int(budget), n)


class Filter:
    """Base class: subclasses set ``name``, ``family``, ``Options`` and implement ``_select``."""

    name: ClassVar[str] = ""
    code: ClassVar[str] = ""  # the method's id (D1..D5, Q1..Q4, H1..H3; docs/data_filters.md)
    family: ClassVar[str] = ""
    Options: ClassVar[type[FilterOptions]] = FilterOptions

    def __init__(self, options: FilterOptions | dict[str, Any] | None = None):
        if isinstance(options, FilterOptions):
            self.options = options
        else:
            self.options = parse_config(self.Options, dict(options or {}), where=f"filter '{self.name}'")

    def select(self, examples: Sequence[Example], budget: int | float, ctx: FilterContext) -> Selection:
        """Keep ``budget`` rows (fraction or count); a budget >= the pool keeps everything."""
        n = len(examples)
        if n == 0:
            raise DamocError("no examples to filter")
        k = resolve_budget(budget, n)
        if k >= n:
            return Selection(indices=list(range(n)), info={"all": True})
        sel = self._select(list(examples), k, ctx)
        check_selection(sel, n, k, self.name)
        return sel

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        raise NotImplementedError


class QualityFilter(Filter):
    """A quality-aware filter: a per-example quality (higher is better), then the best ``k``."""

    family: ClassVar[str] = "quality"
    score_name: ClassVar[str] = "quality"

    def scores(self, examples: list[Example], ctx: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        """``(raw score, quality)`` per example; raw is what the method measures, quality orders it."""
        raise NotImplementedError

    def quality(self, examples: list[Example], ctx: FilterContext) -> np.ndarray:
        return self.scores(examples, ctx)[1]

    def _select(self, examples: list[Example], k: int, ctx: FilterContext) -> Selection:
        raw, q = self.scores(examples, ctx)
        order = rank_desc(q, ctx.rng(17))
        return Selection(
            indices=[int(i) for i in order[:k]],
            scores=[float(x) for x in raw],
            score_name=self.score_name,
            info=self.info(raw, q),
        )

    def info(self, raw: np.ndarray, quality: np.ndarray) -> dict[str, Any]:
        return {}


def check_selection(sel: Selection, n: int, k: int, name: str) -> None:
    """The contract every method keeps: exactly ``k`` unique indices in range, scores aligned."""
    idx = sel.indices
    if len(idx) != k or len(set(idx)) != k or any(not 0 <= i < n for i in idx):
        raise RuntimeError(f"filter '{name}' broke its contract: {len(idx)} indices for a budget of {k}")
    if sel.scores is not None and len(sel.scores) != n:
        raise RuntimeError(f"filter '{name}' returned {len(sel.scores)} scores for {n} examples")


# ---------------------------------------------------------------- small shared math (numpy in, numpy out)


def rank_desc(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by score, highest first; ties (and NaNs, last) broken by a seeded random order."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)
    tie = rng.permutation(len(s))
    return np.lexsort((tie, -s))


def allocate(sizes: Sequence[int], k: int) -> list[int]:
    """Split ``k`` across groups proportionally to ``sizes`` (largest remainder), never above a size."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    k = min(k, total)
    if total == 0 or k == 0:
        return [0] * len(sizes)
    exact = sizes * k / total
    take = np.minimum(np.floor(exact).astype(np.int64), sizes)
    rem = exact - take
    while take.sum() < k:
        room = take < sizes
        cand = np.where(room, rem, -np.inf)
        j = int(np.argmax(cand))  # ties -> the lower group index, deterministic
        take[j] += 1
        rem[j] = -np.inf if take[j] >= sizes[j] else rem[j] - 1
    return [int(t) for t in take]


def kmeans_labels(
    x: np.ndarray, n_clusters: int, seed: int, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, centroids)`` of k-means on the rows of ``x`` (scikit-learn, fixed seed)."""
    from sklearn.cluster import KMeans

    n_clusters = max(1, min(n_clusters, len(x)))
    n_unique = len(np.unique(np.round(x, 6), axis=0))
    n_clusters = min(n_clusters, n_unique)
    km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed, max_iter=max_iter)
    labels = km.fit_predict(x.astype(np.float64))
    return labels.astype(np.int64), km.cluster_centers_.astype(np.float32)


# Every filter, family by family (docs/data_filters.md); a class's ``name`` and ``family`` match its
# entry here, and its help is the first line of its docstring.
FILTERS: Registry[type[Filter]] = Registry(
    "filter",
    [
        Entry("random", "damoc.data.filters.distribution.random:RandomFilter", family="distribution"),
        Entry("kcenter", "damoc.data.filters.distribution.kcenter:KCenterFilter", family="distribution"),
        Entry("kmeans", "damoc.data.filters.distribution.kmeans:KMeansFilter", family="distribution"),
        Entry("semdedup", "damoc.data.filters.distribution.semdedup:SemDeDupFilter", family="distribution"),
        Entry("dsir", "damoc.data.filters.distribution.dsir:DSIRFilter", family="distribution"),
        Entry("perplexity", "damoc.data.filters.quality.perplexity:PerplexityFilter", family="quality"),
        Entry("ifd", "damoc.data.filters.quality.ifd:IFDFilter", family="quality"),
        Entry("heuristics", "damoc.data.filters.quality.heuristics:HeuristicsFilter", family="quality"),
        Entry("llm-judge", "damoc.data.filters.quality.llm_judge:LLMJudgeFilter", family="quality"),
        Entry("cluster-rank", "damoc.data.filters.hybrid.cluster_rank:ClusterRankFilter", family="hybrid"),
        Entry("deita", "damoc.data.filters.hybrid.deita:DeitaFilter", family="hybrid"),
        Entry(
            "quality-kcenter",
            "damoc.data.filters.hybrid.quality_kcenter:QualityKCenterFilter",
            family="hybrid",
        ),
    ],
)


def filter_names() -> list[str]:
    """The filters in the order of their ids (distribution D1-D5, quality Q1-Q4, hybrid H1-H3)."""
    return sorted(
        FILTERS.names(), key=lambda n: ("DQH".find(FILTERS.get(n).code[:1]), FILTERS.get(n).code, n)
    )


def make_filter(name: str, options: FilterOptions | dict[str, Any] | None = None) -> Filter:
    return FILTERS.get(name)(options)
