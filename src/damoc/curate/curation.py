"""Scoring pool rows by similarity to a few seed rows, and keeping the top M.

Methods are registered in :data:`CURATORS` (``sae``, ``embed``, ``tfidf``, ``random``); each maps
(pool texts, seed texts, context) to one score per pool row. The math (signatures, weighting, cosine
scores, top-M, precision) is in plain functions over tensors.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from damoc.registry import Registry

LOG = logging.getLogger(__name__)

Reduce = Literal["mean", "max"]


# ---------------------------------------------------------------- math
def mean_signature(codes: torch.Tensor) -> torch.Tensor:
    """An example's signature: its mean latent activation over tokens ((T, W) -> (W,))."""
    return codes.mean(0)


def idf_weights(signatures: torch.Tensor) -> torch.Tensor:
    """log((1 + N) / (1 + df)) + 1 per latent, df = rows where the latent fires: damps always-on features
    (prompt template, punctuation) the way IDF damps stop words."""
    n = signatures.shape[0]
    df = (signatures > 0).sum(0).float()
    return torch.log((1 + n) / (1 + df)) + 1


def similarity_scores(
    pool: torch.Tensor, seeds: torch.Tensor, reduce: Reduce = "mean", center: bool = False
) -> torch.Tensor:
    """Cosine similarity of each pool row to the seeds, reduced over seeds (mean or max): (P,).

    With ``center`` the pool's mean vector is subtracted from both first: mean-pooled signatures share a
    large common component (every row is "text"), and the cosine of the raw vectors mostly measures it.
    """
    pool, seeds = pool.float(), seeds.float()
    if center:
        mu = pool.mean(0, keepdim=True)
        pool, seeds = pool - mu, seeds - mu
    p = torch.nn.functional.normalize(pool, dim=1)
    s = torch.nn.functional.normalize(seeds, dim=1)
    sim = p @ s.T
    return sim.mean(1) if reduce == "mean" else sim.max(1).values


def top_m(scores: Sequence[float] | torch.Tensor, m: int) -> list[int]:
    """Indices of the ``m`` best scores, best first (ties: lower index first)."""
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    return torch.sort(-s, stable=True).indices[:m].tolist()


def precision(selected: Sequence[int], domains: Sequence[str | None], target: str) -> float:
    """Fraction of selected rows whose domain is ``target``."""
    if not selected:
        return 0.0
    return sum(1 for i in selected if domains[i] == target) / len(selected)


# ---------------------------------------------------------------- methods
@dataclass
class CurateContext:
    """What a scoring method may use: the source model (for ``sae``) and the settings."""

    model: object = None
    tok: object = None
    cfg: object = None  # damoc.curate.config.CurationSettings
    artifacts: dict = field(default_factory=dict)  # e.g. SAE stats, for the report


Scorer = Callable[[Sequence[str], Sequence[str], CurateContext], np.ndarray]
CURATORS: Registry[Scorer] = Registry("curation method")


@CURATORS.register("sae", help="TopK SAE on one layer's residual stream; mean latent signature (FineScope)")
def sae_scores(pool: Sequence[str], seeds: Sequence[str], ctx: CurateContext) -> np.ndarray:
    from damoc.curate.activations import residual_activations, resolve_layer
    from damoc.curate.train_sae import train_sae

    cfg = ctx.cfg
    if ctx.model is None:
        raise ValueError("the sae method needs a model")
    layer = resolve_layer(ctx.model, cfg.layer)
    texts = list(pool) + list(seeds)
    acts = residual_activations(ctx.model, ctx.tok, texts, layer, cfg.max_length, cfg.batch_size)
    train = torch.cat(acts[: len(pool)])
    if len(train) > cfg.max_train_tokens:
        g = torch.Generator().manual_seed(cfg.sae.seed)
        train = train[torch.randperm(len(train), generator=g)[: cfg.max_train_tokens]]
    sae, stats = train_sae(train, cfg.sae)
    with torch.no_grad():
        sigs = torch.stack([mean_signature(sae.encode(a)) for a in acts])
    w = idf_weights(sigs[: len(pool)]) if cfg.idf else torch.ones(sigs.shape[1])
    sigs = sigs * w
    ctx.artifacts["sae"] = {
        "layer": layer,
        "train_tokens": len(train),
        **stats.to_dict(),
        **sae.cfg.to_dict(),
    }
    ctx.artifacts["sae_module"] = sae
    return similarity_scores(sigs[: len(pool)], sigs[len(pool) :], cfg.reduce, cfg.center).numpy()


def _sim_settings(ctx: CurateContext) -> tuple[Reduce, bool]:
    return (ctx.cfg.reduce, ctx.cfg.center) if ctx.cfg is not None else ("mean", True)


def _tfidf(pool: Sequence[str], seeds: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(sublinear_tf=True, min_df=1, max_features=50000)
    x = vec.fit_transform(list(pool) + list(seeds))
    dense = torch.from_numpy(x.toarray()).float()
    return dense[: len(pool)], dense[len(pool) :]


@CURATORS.register("tfidf", help="TF-IDF cosine similarity to the seeds (scikit-learn)")
def tfidf_scores(pool: Sequence[str], seeds: Sequence[str], ctx: CurateContext) -> np.ndarray:
    p, s = _tfidf(pool, seeds)
    return similarity_scores(p, s, *_sim_settings(ctx)).numpy()


@CURATORS.register(
    "embed", help="sentence-embedding cosine similarity (damoc.data.embed: MiniLM, else TF-IDF+SVD)"
)
def embed_scores(pool: Sequence[str], seeds: Sequence[str], ctx: CurateContext) -> np.ndarray:
    try:
        from damoc.data.embed import embed_texts, get_embedder
    except ImportError:  # the filters' encoder is not installed: plain TF-IDF
        ctx.artifacts["embed_backend"] = "tfidf"
        return tfidf_scores(pool, seeds, ctx)
    ctx.artifacts["embed_backend"] = get_embedder("auto").name
    emb = torch.as_tensor(embed_texts(list(pool) + list(seeds)), dtype=torch.float32)
    return similarity_scores(emb[: len(pool)], emb[len(pool) :], *_sim_settings(ctx)).numpy()


@CURATORS.register("random", help="uniformly random scores (the baseline)")
def random_scores(pool: Sequence[str], seeds: Sequence[str], ctx: CurateContext) -> np.ndarray:
    seed = ctx.cfg.seed if ctx.cfg else 0
    rng = random.Random(seed)
    return np.array([rng.random() for _ in pool])


@dataclass
class MethodResult:
    method: str
    selected: list[int]
    scores: list[float]
    precision: float | None
    wall_s: float


def run_method(
    name: str,
    pool: Sequence[str],
    seeds: Sequence[str],
    ctx: CurateContext,
    m: int,
    domains: Sequence[str | None] | None = None,
    target: str | None = None,
) -> MethodResult:
    """Score with one registered method, keep the top ``m``, and measure precision when domains are known."""
    fn = CURATORS.get(name)
    t0 = time.perf_counter()
    scores = np.asarray(fn(pool, seeds, ctx), dtype=np.float64)
    if len(scores) != len(pool) or not np.all(np.isfinite(scores)):
        raise ValueError(f"curation method {name} returned bad scores")
    sel = top_m(scores, m)
    prec = precision(sel, domains, target) if domains is not None and target is not None else None
    return MethodResult(name, sel, [float(x) for x in scores], prec, time.perf_counter() - t0)


def expected_random_precision(domains: Sequence[str | None], target: str) -> float:
    return sum(1 for d in domains if d == target) / max(1, len(domains))


__all__ = [
    "CURATORS",
    "CurateContext",
    "MethodResult",
    "expected_random_precision",
    "idf_weights",
    "mean_signature",
    "precision",
    "run_method",
    "similarity_scores",
    "top_m",
]
