"""Teacher-forced likelihoods, batched: text loss, and answer NLL normalised per byte.

Candidates have different tokenizers, so any likelihood that ranks models is reported per byte of
answer text (bits per byte), never per token (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from damoc.logging_utils import progress


@dataclass
class AnswerScore:
    nll: float  # summed negative log-likelihood of the answer tokens, in nats
    n_tokens: int
    n_bytes: int

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / max(1, self.n_bytes)

    @property
    def nll_per_token(self) -> float:
        return self.nll / max(1, self.n_tokens)


def encode_pair(
    tok, prompt: str, answer: str, max_length: int, add_eos: bool = False
) -> tuple[list[int], int]:
    """Token ids of ``prompt + " " + answer`` and where the answer starts.

    The answer follows after one space, or directly when the prompt already ends in white space (a chat
    template's opened assistant turn ends in a new line). The prompt is cut from the left when the pair is
    too long; the answer is kept (cut from the right only if it alone exceeds ``max_length``).
    """
    p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
    joiner = "" if prompt[-1:].isspace() else " "
    a_ids = tok(joiner + answer.strip(), add_special_tokens=False)["input_ids"]
    if add_eos and tok.eos_token_id is not None:
        a_ids = a_ids + [tok.eos_token_id]
    a_ids = a_ids[: max(1, max_length - 1)]
    room = max_length - len(a_ids)
    p_ids = p_ids[-room:] if room > 0 else p_ids[-1:]
    return p_ids + a_ids, len(p_ids)


def collate(seqs: Sequence[list[int]], starts: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 outside the answer span."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (s, st) in enumerate(zip(seqs, starts, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, st : len(s)] = torch.tensor(s[st:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def left_pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(input_ids, attention_mask)`` for batched generation."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for j, s in enumerate(seqs):
        ids[j, width - len(s) :] = torch.tensor(s)
        mask[j, width - len(s) :] = 1
    return ids, mask


def token_nll(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-position NLL of next-token prediction, 0 where the label is ignored: shape (B, T-1).

    Only the positions some row needs go through the output head (``logits_to_keep`` with the
    positions): a short answer after a long prompt costs a fraction of the full vocabulary projection.
    """
    dev = next(model.parameters()).device
    labels = batch["labels"][:, 1:].to(dev)
    need = (labels != -100).any(0).nonzero().flatten()
    inputs = {"input_ids": batch["input_ids"].to(dev), "attention_mask": batch["attention_mask"].to(dev)}
    nll = torch.zeros(labels.shape, dtype=torch.float32, device=dev)
    if need.numel() == 0:
        return nll
    if need.numel() < labels.size(1):
        try:
            logits = model(**inputs, logits_to_keep=need).logits
        except TypeError:  # a model without logits_to_keep
            logits = model(**inputs).logits
        if logits.size(1) != need.numel():  # the model ignored logits_to_keep: all positions came back
            logits = logits[:, need]
        logits = logits.float()
    else:
        logits = model(**inputs).logits[:, :-1].float()
    kept = labels[:, need]
    part = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), kept.reshape(-1), ignore_index=-100, reduction="none"
    )
    nll[:, need] = part.view(kept.shape)
    return nll


@torch.no_grad()
def answer_scores(
    model,
    tok,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 8,
    max_length: int = 512,
    desc: str = "scoring",
) -> list[AnswerScore]:
    """NLL of each answer given its prompt (teacher forcing), batched by similar length."""
    enc = [encode_pair(tok, p, a, max_length) for p, a in zip(prompts, answers, strict=True)]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))
    out: list[AnswerScore | None] = [None] * len(enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for b in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        idx = order[b : b + batch_size]
        batch = collate([enc[i][0] for i in idx], [enc[i][1] for i in idx], pad)
        nll = token_nll(model, batch)
        counts = (batch["labels"][:, 1:] != -100).sum(1)
        for j, i in enumerate(idx):
            out[i] = AnswerScore(
                nll=float(nll[j].sum()), n_tokens=int(counts[j]), n_bytes=len(answers[i].strip().encode())
            )
    return [s for s in out if s is not None]


@torch.no_grad()
def text_loss(
    model, tok, texts: Sequence[str], max_length: int = 256, batch_size: int = 8, desc: str = "loss"
) -> float:
    """Mean next-token cross-entropy (nats/token) over all tokens of ``texts`` (each cut to ``max_length``)."""
    seqs = [
        tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts
    ]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise ValueError("no text with at least two tokens")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    total, count = 0.0, 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for b in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        chunk = [seqs[i] for i in order[b : b + batch_size]]
        batch = collate(chunk, [0] * len(chunk), pad)
        nll = token_nll(model, batch)
        total += float(nll.sum())
        count += int((batch["labels"][:, 1:] != -100).sum())
    return total / count


def text_bits_per_byte(model, tok, texts: Sequence[str], max_length: int = 256, batch_size: int = 8) -> float:
    """Bits per byte of whole texts: comparable across tokenizers (texts cut to whole tokens first)."""
    cut = []
    for t in texts:
        ids = tok(t, add_special_tokens=False, truncation=True, max_length=max_length - 1)["input_ids"]
        cut.append(tok.decode(ids))
    scores = answer_scores(model, tok, [""] * len(cut), cut, batch_size=batch_size, max_length=max_length)
    nll = sum(s.nll for s in scores)
    return nll / math.log(2) / max(1, sum(s.n_bytes for s in scores))
