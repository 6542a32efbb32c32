"""Task metrics (docs/metrics.md): registered by name, with the direction that is better and what they need.

The text math lives here (SQuAD-normalised exact match and token F1, ROUGE-L); scoring a model
(`damoc.evaluate.scoring`) turns a metric's *kind* into model calls.

Kinds:
- ``likelihood``: teacher-forced answer likelihood (cheap and stable for small models);
- ``generation``: short greedy decoding, compared with the gold answer;
- ``label``: the label whose likelihood is highest, compared with the gold label;
- ``options``: multiple choice with each example's own options: the option whose likelihood (per byte by
  default) is highest, compared with the gold answer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from damoc.errors import DamocError
from damoc.registry import Registry

MetricKind = Literal["likelihood", "generation", "label", "options"]


@dataclass(frozen=True)
class Metric:
    """What a metric measures and how to compare two scores."""

    name: str
    kind: MetricKind
    higher_is_better: bool
    needs_labels: bool = False
    per_byte: bool = False  # comparable across tokenizers
    help: str = ""

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def sort_key(self, score: float) -> float:
        """Ascending sort key: the best score sorts first."""
        return -score if self.higher_is_better else score


METRICS: Registry[Metric] = Registry("metric")


def _add(metric: Metric) -> None:
    METRICS.register(metric.name, family=metric.kind, help=metric.help)(metric)


_add(
    Metric(
        "answer_bpb",
        "likelihood",
        higher_is_better=False,
        per_byte=True,
        help="bits per byte of the gold answer under teacher forcing (lower is better; fair across tokenizers)",
    )
)
_add(
    Metric(
        "answer_nll",
        "likelihood",
        higher_is_better=False,
        help="mean NLL per answer token in nats (lower is better; depends on the tokenizer)",
    )
)
_add(
    Metric(
        "perplexity",
        "likelihood",
        higher_is_better=False,
        help="perplexity of the answer tokens given the prompt (lower is better; depends on the tokenizer)",
    )
)
_add(
    Metric(
        "label_acc",
        "label",
        higher_is_better=True,
        needs_labels=True,
        help="accuracy of the most likely label (e.g. yes/no/maybe) given the prompt",
    )
)
_add(
    Metric(
        "option_acc",
        "options",
        higher_is_better=True,
        help="multiple choice: accuracy of the most likely of each example's own options (eval.options_field)",
    )
)
_add(
    Metric("exact_match", "generation", True, help="greedy answer equals the gold one (SQuAD normalisation)")
)
_add(Metric("f1", "generation", True, help="token F1 of the greedy answer against the gold one (SQuAD)"))
_add(
    Metric("rouge_l", "generation", True, help="ROUGE-L F-measure of the greedy answer against the gold one")
)


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


# --- text metrics ---------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, squeeze white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between normalised texts (1.0 when both are empty)."""
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F-measure (rouge-score, with stemming)."""
    scorer = _rouge_scorer()
    return float(scorer.score(gold, prediction)["rougeL"].fmeasure)


_SCORER = None


def _rouge_scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer  # lazy: only generation metrics need it

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _SCORER


TEXT_METRICS = {"exact_match": exact_match, "f1": token_f1, "rouge_l": rouge_l}


def best_over_golds(fn, prediction: str, golds: Sequence[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    if not golds:
        raise ValueError("no gold answer")
    return max(fn(prediction, g) for g in golds)


def text_metric(name: str, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[float]:
    """Per-example scores of a generation metric (each example may have several gold answers)."""
    if name not in TEXT_METRICS:
        raise DamocError(f"'{name}' is not a generation metric (one of: {', '.join(TEXT_METRICS)})")
    fn = TEXT_METRICS[name]
    return [best_over_golds(fn, p, g) for p, g in zip(predictions, golds, strict=True)]


def accuracy(predictions: Sequence[str], golds: Sequence[str]) -> list[float]:
    return [float(p.strip().lower() == g.strip().lower()) for p, g in zip(predictions, golds, strict=True)]
