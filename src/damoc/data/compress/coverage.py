"""How much of a segment's meaning a set of kept words covers, and greedy selection under a token budget.

BERTScore (arXiv:1904.09675) matches each token of the reference with its most similar token of the
candidate (cosine of contextual embeddings); its recall is the mean of those best matches. If every
kept word kept the embedding it has in the original text, the recall of a compressed text would be

    R(S) = 1/m · Σ_i max_{u ∈ S} sim(i, u),        sim(i, u) = max(0, max_{t ∈ u} cos(e_i, e_t))

over the m encoder tokens i of the original and the kept words S. R is a facility-location function:
monotone and submodular, so adding words greedily by gain per token is the standard approximation
under a token budget. A word's value mixes that coverage gain with its self-information under the
scorer LM (LLMLingua's criterion, arXiv:2310.05736):

    value(u | S) = (1 − α) · ΔC(u | S) / n_u + α · z_u

where ΔC is the gain in Σ_i (reference tokens covered), n_u the word's scorer tokens and z_u its
self-information standardised over the candidates (0 for words the LM did not score). α = 1 is the
LM criterion alone (the same selection as :func:`~damoc.data.compress.budget.select_units`), α = 0
coverage alone.

Similarities are computed within blocks of the encoder's window (a word covers only reference tokens
of its own window), so a long text costs memory linear in its length. Pure numpy, no model here.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Coverage:
    """Coverage state of one segment: per block, the similarity of each reference token to each word."""

    sims: list[np.ndarray]  # per block: [reference tokens of the block, words present in the block]
    cols: list[dict[int, int]]  # per block: word index -> column of sims
    best: list[np.ndarray] = field(default_factory=list)  # per block: best similarity so far per token
    n_ref: int = 0

    def __post_init__(self):
        if not self.best:
            self.best = [np.zeros(s.shape[0], dtype=np.float32) for s in self.sims]
        self.n_ref = sum(s.shape[0] for s in self.sims)
        self.blocks_of: dict[int, list[int]] = {}
        for b, cols in enumerate(self.cols):
            for u in cols:
                self.blocks_of.setdefault(u, []).append(b)

    def gain(self, u: int) -> float:
        """Σ_i of the coverage gained by adding word ``u`` (0 for a word the encoder does not see)."""
        g = 0.0
        for b in self.blocks_of.get(u, ()):
            col = self.sims[b][:, self.cols[b][u]]
            g += float(np.maximum(col - self.best[b], 0.0).sum())
        return g

    def add(self, u: int) -> None:
        for b in self.blocks_of.get(u, ()):
            np.maximum(self.best[b], self.sims[b][:, self.cols[b][u]], out=self.best[b])

    def value(self) -> float:
        """Σ_i max_{u ∈ S} sim(i, u) of the words added so far."""
        return float(sum(b.sum() for b in self.best))

    def fresh(self) -> Coverage:
        """The same similarities with nothing added."""
        return Coverage(self.sims, self.cols)


def build_coverage(
    emb: np.ndarray, token_word: Sequence[int | None], blocks: Sequence[tuple[int, int]]
) -> Coverage:
    """Coverage of a segment from its encoder token embeddings.

    ``emb``: [m, d] L2-normalised contextual embeddings of the original text; ``token_word[i]``: the
    word (unit index) that encoder token ``i`` falls in (None: none, e.g. a special token);
    ``blocks``: [start, end) token ranges (the encoder's windows). Within a block, the similarity
    of token i to word u is the best cosine of i to u's tokens in that block, floored at 0.
    """
    sims, cols = [], []
    for lo, hi in blocks:
        e = emb[lo:hi]
        words: dict[int, list[int]] = {}
        for t in range(lo, hi):
            w = token_word[t]
            if w is not None:
                words.setdefault(w, []).append(t - lo)
        full = e @ e.T if hi > lo else np.zeros((0, 0), dtype=np.float32)
        order = sorted(words)
        mat = np.zeros((hi - lo, len(order)), dtype=np.float32)
        for k, w in enumerate(order):
            mat[:, k] = full[:, words[w]].max(axis=1)
        sims.append(np.maximum(mat, 0.0))
        cols.append({w: k for k, w in enumerate(order)})
    return Coverage(sims, cols)


def join_coverage(parts: Sequence[tuple[Coverage, int]]) -> Coverage:
    """One coverage over several segments (fresh): each part's words renumbered by its offset."""
    sims, cols = [], []
    for cover, offset in parts:
        sims.extend(cover.sims)
        cols.extend({u + offset: k for u, k in c.items()} for c in cover.cols)
    return Coverage(sims, cols)


def standardise(info: Sequence[float | None]) -> list[float]:
    """Self-information as z-scores over the words that have one; 0 for the others (and when all tie)."""
    vals = [x for x in info if x is not None]
    if len(vals) < 2:
        return [0.0] * len(info)
    mu = float(np.mean(vals))
    sd = float(np.std(vals))
    return [0.0 if x is None or sd == 0 else (x - mu) / sd for x in info]


def select_covering(
    cover: Coverage | None,
    words: Sequence[int],
    sizes: Sequence[int],
    info: Sequence[float | None],
    forced: Sequence[bool],
    budget: int,
    info_weight: float,
) -> list[int]:
    """Positions (into ``words``) of the words kept: forced ones, then greedily by value per token.

    ``words`` are unit indices of the segment (``cover`` speaks in them), ``sizes`` their scorer
    tokens, ``info`` their self-information (None: not scored). Words that would overflow
    ``budget`` are skipped while smaller ones fit; then, as :func:`select_units` does, the word that
    brings the count closest to the budget is added when it overshoots by less than the gap. The
    forced words' coverage counts as already there. With ``cover`` None only self-information counts.
    """
    n = len(words)
    z = standardise(info)
    alpha = 1.0 if cover is None else info_weight
    kept = [k for k in range(n) if forced[k]]
    used = sum(sizes[k] for k in kept)
    if cover is not None:
        for k in kept:
            cover.add(words[k])

    def value(k: int) -> float:
        cov = cover.gain(words[k]) / max(sizes[k], 1) if cover is not None and alpha < 1.0 else 0.0
        return (1.0 - alpha) * cov + alpha * z[k]

    # lazy greedy: coverage gains only shrink as words are added, so a stale value is an upper bound
    heap = [(-value(k), k, 0) for k in range(n) if not forced[k]]
    heapq.heapify(heap)
    step = 0
    taken = set(kept)
    while heap and used < budget:
        neg, k, seen = heapq.heappop(heap)
        if used + sizes[k] > budget:
            continue  # never fits again: the budget only fills up
        if seen != step and alpha < 1.0:
            heapq.heappush(heap, (-value(k), k, step))
            continue
        kept.append(k)
        taken.add(k)
        used += sizes[k]
        step += 1
        if cover is not None:
            cover.add(words[k])
    gap = budget - used
    if gap > 0:
        rest = [k for k in range(n) if k not in taken]
        if rest:
            best = min(rest, key=lambda k: (sizes[k], -z[k], k))
            if sizes[best] - gap < gap:
                kept.append(best)
                if cover is not None:
                    cover.add(words[best])
    return sorted(kept)
