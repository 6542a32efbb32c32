"""How a FineScope stage is scored on held-out domain rows (docs/finescope.md).

- answer bits per byte: teacher-forced bits per byte of the rows' gold answers (lower is better);
- label accuracy, where rows carry labels (the label whose text is most likely as the answer);
- fidelity: mean KL(source || model) per token over the rows' whole text (prompt and gold answer), in
  nats; 0 for the source itself. This is what self-distillation is meant to restore: the source
  model's own distribution on the domain, not only the likelihood of the gold answers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from damoc.curate.config import ScoreSettings
from damoc.evaluate.likelihood import answer_scores, collate
from damoc.evaluate.paired import bits_per_byte
from damoc.io.tasks import Example
from damoc.logging_utils import progress
from damoc.model.structured.prune import count_params
from damoc.train.distill import token_kl

LOG = logging.getLogger(__name__)

MAX_LABELS = 10  # more distinct labels than this: not a classification task, no label accuracy


@dataclass
class DomainScore:
    answer_bpb: float
    label_accuracy: float | None
    n_rows: int
    n_labelled: int
    fidelity_kl: float | None = None  # mean KL(source || model), nats per token of the rows' text
    fidelity_tokens: int = 0
    row_bits: list[float] = field(default_factory=list)  # per eval row: answer bits (for paired tests)
    row_bytes: list[int] = field(default_factory=list)  # per eval row: answer bytes


@dataclass
class StageResult:
    stage: str
    params: int
    score: DomainScore
    stage_wall_s: float  # time to produce this model (curation excluded)
    score_wall_s: float
    cached: bool = False  # read from the stage cache (times are those of the run that made it)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageResult:
        return cls(**{**d, "score": DomainScore(**d["score"])})


def label_accuracy(model, tok, examples: Sequence[Example], cfg: ScoreSettings) -> tuple[float | None, int]:
    """Accuracy of picking the gold label among the eval rows' labels by answer likelihood."""
    rows = [e for e in examples if e.label is not None]
    labels = sorted({e.label for e in rows})
    if len(labels) < 2 or len(labels) > MAX_LABELS:
        return None, 0
    prompts = [e.prompt() for e in rows for _ in labels]
    answers = [lab for _ in rows for lab in labels]
    scores = answer_scores(model, tok, prompts, answers, cfg.batch_size, cfg.max_length, desc="labels")
    correct = 0
    for i, e in enumerate(rows):
        nll = [scores[i * len(labels) + j].nll for j in range(len(labels))]
        correct += labels[min(range(len(labels)), key=nll.__getitem__)] == e.label
    return correct / len(rows), len(rows)


@torch.no_grad()
def fidelity_kl(
    source, model, tok, texts: Sequence[str], batch_size: int = 8, max_length: int = 384
) -> tuple[float, int]:
    """Mean KL(source || model) per next-token position over ``texts`` (nats) and the position count.

    Both models must share ``tok`` (a pruned model keeps its source's tokenizer)."""
    seqs = [
        tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts
    ]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise ValueError("no text with at least two tokens")
    if model is source:
        return 0.0, sum(len(s) - 1 for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    total, count = 0.0, 0
    for b in progress(range(0, len(order), batch_size), desc="fidelity", unit="batch"):
        chunk = [seqs[i] for i in order[b : b + batch_size]]
        batch = collate(chunk, [0] * len(chunk), pad)
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        p = source(input_ids=ids, attention_mask=mask).logits[:, :-1]
        q = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        kl, n = token_kl(p, q, (batch["labels"][:, 1:] != -100).to(dev))
        total, count = total + float(kl), count + n
    return total / max(1, count), count


def domain_score(model, tok, examples: Sequence[Example], cfg: ScoreSettings, source=None) -> DomainScore:
    """Answer bits/byte, label accuracy and (given the ``source`` model) fidelity KL on ``examples``."""
    scores = answer_scores(
        model,
        tok,
        [e.prompt() for e in examples],
        [e.answer for e in examples],
        cfg.batch_size,
        cfg.max_length,
    )
    row_bits = [s.nll / math.log(2) for s in scores]
    row_bytes = [s.n_bytes for s in scores]
    acc, n_lab = label_accuracy(model, tok, examples, cfg)
    kl, n_kl = (None, 0)
    if source is not None:
        kl, n_kl = fidelity_kl(
            source, model, tok, [e.text() for e in examples], cfg.batch_size, cfg.max_length
        )
    return DomainScore(
        answer_bpb=bits_per_byte(row_bits, row_bytes),
        label_accuracy=acc,
        n_rows=len(examples),
        n_labelled=n_lab,
        fidelity_kl=kl,
        fidelity_tokens=n_kl,
        row_bits=row_bits,
        row_bytes=row_bytes,
    )


def recovered(source: float, pruned: float, stage: float) -> float | None:
    """(pruned - stage) / (pruned - source): 1 = back to the source's score, 0 = no better than pruned."""
    gap = pruned - source
    return None if abs(gap) < 1e-12 else (pruned - stage) / gap


def score_stage(stage: str, model, tok, rows, cfg: ScoreSettings, stage_s: float, source=None) -> StageResult:
    """A stage's model scored on ``rows``, with its parameter count and the time it took to make."""
    t0 = time.perf_counter()
    sc = domain_score(model, tok, rows, cfg, source)
    LOG.info(
        "%s: answer bpb %.4f, label acc %s, fidelity KL %s",
        stage,
        sc.answer_bpb,
        sc.label_accuracy,
        sc.fidelity_kl,
    )
    return StageResult(stage, count_params(model), sc, stage_s, time.perf_counter() - t0)
