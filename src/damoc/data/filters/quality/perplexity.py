"""Q1: keep a middle band of perplexity under a small reference LM (Marion et al. 2023)."""

from __future__ import annotations

from typing import Any

import numpy as np

from damoc.data.filters.base import FilterContext, FilterOptions, QualityFilter
from damoc.io.tasks import Example

# The likelihood scorer (torch) is imported when the filter runs: `damoc filter --list` imports every
# filter module and loads no torch.


class PerplexityOptions(FilterOptions):
    low: float = 0.25  # band of perplexity quantiles to keep: [low, high]
    high: float = 0.75  # upper quantile of the kept band; rows outside it score lower the farther out
    max_length: int = 256  # tokens per scored text
    batch_size: int = 8  # texts per reference-LM forward pass


def band_quality(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """1 inside the [low, high] quantile band of ``values``, falling linearly to 0 at the extremes."""
    n = len(values)
    ranks = np.empty(n)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    q = ranks / max(n - 1, 1)
    out = np.maximum(np.maximum(low - q, q - high), 0.0)
    return 1.0 - out / max(low, 1.0 - high, 1e-12)


def mean_token_nll(
    ctx: FilterContext, prompts: list[str], answers: list[str], max_length: int, batch_size: int, desc: str
) -> np.ndarray:
    """Mean NLL per answer token (nats) under the reference LM."""
    from damoc.evaluate.likelihood import answer_scores

    model, tok = ctx.reference_lm()
    scores = answer_scores(
        model, tok, prompts, answers, batch_size=batch_size, max_length=max_length, desc=desc
    )
    return np.array([s.nll_per_token if s.n_tokens else np.nan for s in scores])


class PerplexityFilter(QualityFilter):
    """Keep the middle perplexity band under a small reference LM (drops gibberish and boilerplate)."""

    name = "perplexity"
    code = "Q1"
    Options = PerplexityOptions
    score_name = "perplexity"

    def scores(self, examples: list[Example], ctx: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        texts = [e.text() for e in examples]
        nll = mean_token_nll(ctx, [""] * len(texts), texts, o.max_length, o.batch_size, "perplexity")
        ppl = np.exp(np.nan_to_num(nll, nan=np.inf))
        return ppl, band_quality(ppl, o.low, o.high)

    def info(self, raw: np.ndarray, quality: np.ndarray) -> dict[str, Any]:
        return {"band_rows": int((quality >= 1.0).sum()), "median_perplexity": float(np.median(raw))}
