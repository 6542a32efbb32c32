"""Self-information of tokens under a small causal LM, batched: −log p(x_t | x_<t), in nats.

Each request is (prefix ids, target ids): the target tokens are scored conditioned on the prefix. The
batch is left-padded so every row's targets sit at the end, and only the logits of those positions
are computed (the LM head over a 49k vocabulary is a fifth of a small model's cost).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def start_token_id(tok) -> int:
    """The id every scored sequence starts with (BOS, else EOS, else pad, else 0)."""
    for tid in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id):
        if tid is not None:
            return int(tid)
    return 0


def left_pad(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def _last_logits(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False)
    try:
        out = model(**kwargs, logits_to_keep=keep)
    except TypeError:  # older/other architectures without logits_to_keep
        out = model(**kwargs)
    return out.logits[:, -keep:]


@torch.inference_mode()
def self_information(
    model, requests: Sequence[tuple[list[int], list[int]]], start_id: int, pad_id: int, max_length: int
) -> list[list[float]]:
    """For each (prefix, targets): the self-information of every target token given start+prefix+targets[:t].

    The prefix is cut from the left so a row never exceeds ``max_length`` tokens.
    """
    if not requests:
        return []
    dev = next(model.parameters()).device
    seqs, n_tgt = [], []
    for prefix, targets in requests:
        room = max(0, max_length - 1 - len(targets))
        pre = prefix[-room:] if room else []
        seqs.append([start_id, *pre, *targets])
        n_tgt.append(len(targets))
    ids, mask = left_pad(seqs, pad_id)
    keep = max(n_tgt) + 1
    logits = _last_logits(model, ids.to(dev), mask.to(dev), keep).float()
    # position -k-1 predicts the token at -k: drop the last position, score the last `keep-1` tokens
    pred = logits[:, :-1]
    tgt = ids[:, -(keep - 1) :].to(dev)
    nll = F.cross_entropy(pred.reshape(-1, pred.size(-1)), tgt.reshape(-1), reduction="none").view(tgt.shape)
    out = []
    for i, n in enumerate(n_tgt):
        out.append(nll[i, nll.size(1) - n :].tolist() if n else [])
    return out
