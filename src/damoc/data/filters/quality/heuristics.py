"""Q3: rule heuristics: length, repetition, non-text ratio, extractive answer present in its context."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from damoc.data.filters.base import FilterContext, FilterOptions, QualityFilter
from damoc.io.tasks import Example

_WORD = re.compile(r"\w+", re.UNICODE)
# Punctuation that ordinary prose and report tables use; other symbols count as non-text.
_TEXTLIKE = set(".,;:!?'\"()[]-–—%/$€£&|") | {"\u2019", "\u2018", "\u201c", "\u201d"}


class HeuristicsOptions(FilterOptions):
    min_question_words: int = 3  # question word count below this fails the length check
    max_question_words: int = 512  # question word count above this fails the length check
    min_answer_words: int = 1  # answer word count below this fails the length check
    max_answer_words: int = 1024  # answer word count above this fails the length check
    max_context_words: int = 4096  # context word count above this fails the length check
    ngram: int = 3  # repetition is the share of repeated word n-grams of this size
    max_repetition: float = 0.5  # repeated n-gram share (question, context, answer) above this fails
    max_non_text: float = 0.1  # share of non-space characters that are not letters, digits or punctuation
    extractive: bool | None = None  # require the answer inside the context; None: on when most rows are
    extractive_share: float = 0.8  # "most rows" for the automatic choice


def normalize(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def repetition(text: str, n: int) -> float:
    """Share of word n-grams that repeat an earlier one (0 for text shorter than n words)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def non_text_ratio(text: str) -> float:
    """Share of the non-space characters that are neither letters, digits nor prose/table punctuation."""
    chars = [ch for ch in text if not ch.isspace()]
    if not chars:
        return 0.0
    return sum(1 for ch in chars if not (ch.isalnum() or ch in _TEXTLIKE)) / len(chars)


def in_range(value: float, lo: float, hi: float) -> float:
    """1 inside [lo, hi], decaying toward 0 outside (0 at zero words or at 2x the maximum)."""
    if lo <= value <= hi:
        return 1.0
    if value < lo:
        return max(0.0, value / lo) if lo > 0 else 0.0
    return max(0.0, 1.0 - (value - hi) / max(hi, 1))


def answer_in_context(ex: Example) -> bool:
    a = normalize(ex.answer)
    return bool(a) and a in normalize(ex.context)


class HeuristicsFilter(QualityFilter):
    """Rule checks (length, repetition, non-text ratio, extractive answer in context); junk ranks last."""

    name = "heuristics"
    code = "Q3"
    Options = HeuristicsOptions
    score_name = "heuristic_quality"

    def checks(self, ex: Example, extractive: bool) -> dict[str, float]:
        """Per check, a value in [0, 1]: 1 is clean, values below 1 fail the check."""
        o = self.options
        qw = len(_WORD.findall(ex.question))
        aw = len(_WORD.findall(ex.answer))
        cw = len(_WORD.findall(ex.context))
        full = f"{ex.question}\n{ex.context}\n{ex.answer}"
        rep = repetition(full, o.ngram)
        junk = non_text_ratio(full)
        out = {
            "question_length": in_range(qw, o.min_question_words, o.max_question_words),
            "answer_length": in_range(aw, o.min_answer_words, o.max_answer_words),
            "context_length": in_range(cw, 0, o.max_context_words),
            "repetition": 1.0 if rep <= o.max_repetition else 1.0 - rep,
            "non_text": 1.0 if junk <= o.max_non_text else 1.0 - junk,
        }
        if extractive:
            out["answer_in_context"] = 1.0 if answer_in_context(ex) else 0.0
        return out

    def is_extractive(self, examples: list[Example]) -> bool:
        if self.options.extractive is not None:
            return self.options.extractive
        with_ctx = [e for e in examples if e.context]
        if not with_ctx:
            return False
        share = sum(answer_in_context(e) for e in with_ctx) / len(with_ctx)
        return share >= self.options.extractive_share

    def scores(self, examples: list[Example], ctx: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        extractive = self.is_extractive(examples)
        self._failed: dict[str, int] = {}
        q = np.zeros(len(examples))
        for i, ex in enumerate(examples):
            c = self.checks(ex, extractive)
            failed = [k for k, v in c.items() if v < 1.0]
            for k in failed:
                self._failed[k] = self._failed.get(k, 0) + 1
            q[i] = float(np.mean(list(c.values()))) - (1.0 if failed else 0.0)
        return q, q

    def info(self, raw: np.ndarray, quality: np.ndarray) -> dict[str, Any]:
        return {"rejected": int((quality < 0).sum()), "failed_checks": dict(sorted(self._failed.items()))}
