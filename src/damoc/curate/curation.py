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

from damoc.curate.activations import residual_activations, resolve_layer
from damoc.curate.sae_cache import SAECache, cache_key, model_fingerprint, texts_hash
from damoc.curate.sae_io import load_sae
from damoc.curate.train_sae import train_sae
from damoc.data.embed import embed_texts, get_embedder
from damoc.errors import DamocError
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
    model_name: str | None = None  # how the model was named (zoo name or directory): the SAE cache key
    artifacts: dict = field(default_factory=dict)  # e.g. SAE stats, for the report


Scorer = Callable[[Sequence[str], Sequence[str], CurateContext], np.ndarray]
CURATORS: Registry[Scorer] = Registry("curation method")


@torch.no_grad()
def row_signatures(sae, acts: Sequence[torch.Tensor], chunk: int = 4096) -> torch.Tensor:
    """Mean latent activation of each row's tokens, ``(rows, width)``, encoding ``chunk`` tokens at a time."""
    rows = torch.cat([torch.full((len(a),), i, dtype=torch.long) for i, a in enumerate(acts)])
    flat = torch.cat(list(acts))
    sums = torch.zeros(len(acts), sae.cfg.width)
    for i in range(0, len(flat), chunk):
        sums.index_add_(0, rows[i : i + chunk], sae.encode(flat[i : i + chunk]))
    counts = torch.tensor([max(1, len(a)) for a in acts], dtype=torch.float32)
    return sums / counts[:, None]


def _pool_cache_key(ctx: CurateContext, layer: int, pool: Sequence[str]) -> str | None:
    cfg = ctx.cfg
    if not cfg.sae_cache or not ctx.model_name:
        return None
    fp = model_fingerprint(ctx.model_name)
    if fp is None:
        return None
    settings = {
        "max_length": cfg.max_length,
        "max_train_tokens": cfg.max_train_tokens,
        "drop_first": 1,
        "sae": cfg.sae.model_dump(exclude={"stats_tokens"}),
    }
    return cache_key(fp, layer, texts_hash(list(pool)), settings)


@CURATORS.register("sae", help="TopK SAE on one layer's residual stream; mean latent signature (FineScope)")
def sae_scores(pool: Sequence[str], seeds: Sequence[str], ctx: CurateContext) -> np.ndarray:
    """Signatures from an SAE: one given (``sae_path``), one from the cache, or one trained on the pool.

    Time is recorded per part (``activations_s``: the model's forward passes; ``train_s``: the SAE
    steps; ``encode_s``: the signatures; each also as process CPU time, ``*_cpu_s``) in the report's
    ``sae`` entry.
    """
    cfg = ctx.cfg
    if ctx.model is None:
        raise ValueError("the sae method needs a model")
    given = load_sae(cfg.sae_path) if cfg.sae_path else None
    layer = resolve_layer(ctx.model, cfg.layer if cfg.layer is not None or given is None else given.layer)
    cache = SAECache(cfg.sae_cache)
    key = None if given is not None else _pool_cache_key(ctx, layer, pool)
    hit = cache.get(key) if key else None
    sae = given.sae if given is not None else (hit.loaded.sae if hit is not None else None)
    pool_sigs = hit.signatures if hit is not None and hit.signatures is not None else None
    texts = list(seeds) if pool_sigs is not None else list(pool) + list(seeds)
    info: dict = {"layer": layer, "source": "file" if given else ("cache" if hit else "trained")}
    t0, c0 = time.perf_counter(), time.process_time()
    acts = residual_activations(ctx.model, ctx.tok, texts, layer, cfg.max_length, cfg.batch_size)
    info["activations_s"], info["activations_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    info["activation_tokens"] = int(sum(len(a) for a in acts))
    d_model = acts[0].shape[1]
    if sae is not None and sae.cfg.d_model != d_model:
        raise DamocError(
            f"the SAE reads {sae.cfg.d_model}-wide activations, layer {layer} of the model gives {d_model}"
        )
    if sae is None:
        train = torch.cat(acts[: len(pool)])
        if len(train) > cfg.max_train_tokens:
            g = torch.Generator().manual_seed(cfg.sae.seed)
            train = train[torch.randperm(len(train), generator=g)[: cfg.max_train_tokens]]
        c0 = time.process_time()
        sae, stats = train_sae(train, cfg.sae)
        info.update(train_tokens=len(train), train_s=stats.train_wall_s, **stats.to_dict())
        info["train_cpu_s"] = time.process_time() - c0  # steps and the stats pass
    elif hit is not None:
        info.update({k: v for k, v in hit.loaded.info.items() if k not in info}, cache_key=key)
    else:
        info.update(path=str(cfg.sae_path), format=given.format, file_info=given.info)
    t0, c0 = time.perf_counter(), time.process_time()
    sigs = row_signatures(sae, acts)
    info["encode_s"], info["encode_cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    if pool_sigs is None:
        pool_sigs, seed_sigs = sigs[: len(pool)], sigs[len(pool) :]
        if key is not None and hit is None:
            info["cache_key"] = key
            cached = {
                k: v
                for k, v in info.items()
                if k not in ("source", "activations_s", "encode_s", "activations_cpu_s", "encode_cpu_s")
            }
            cache.put(key, sae, {**cached, "model": str(ctx.model_name)}, pool_sigs)
    else:
        seed_sigs = sigs
    w = idf_weights(pool_sigs) if cfg.idf else torch.ones(pool_sigs.shape[1])
    ctx.artifacts["sae"] = {**info, **sae.cfg.to_dict()}
    ctx.artifacts["sae_module"] = sae
    return similarity_scores(pool_sigs * w, seed_sigs * w, cfg.reduce, cfg.center).numpy()


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
    "row_signatures",
    "run_method",
    "similarity_scores",
    "top_m",
]
