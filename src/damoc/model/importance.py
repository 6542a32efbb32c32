"""Layer importance from calibration text: block influence (ShortGPT) and angular distance (Gromov et al.).

The math (:func:`block_influence`, :func:`angular_distances`, :func:`pick_lowest`, :func:`best_block`)
takes tensors and returns tensors. The plumbing (:func:`capture_residuals`, :func:`layer_scores`) runs
the calibration text through the model ONCE per batch with hooks on the decoder layers and accumulates
the per-layer statistics, so nothing holds more than one batch of hidden states.

``h_l`` is the residual stream entering layer ``l``; ``h_L`` (after the last layer) is the final hidden
state before the final norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from damoc.errors import DamocError
from damoc.logging_utils import progress
from damoc.model.arch import decoder_layers, model_device

METRICS = ("bi", "angular")

# ----------------------------------------------------------------------------------------------- math


def token_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity along the last dimension (float32 or wider): shape ``a.shape[:-1]``."""
    a = a.float()
    b = b.float()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)


def cosine_sums(hidden: Sequence[torch.Tensor], mask: torch.Tensor, span: int = 1) -> torch.Tensor:
    """Sum over masked tokens of cos(h_l, h_{l+span}) for every l: shape ``(len(hidden) - span,)``.

    ``hidden`` holds L+1 tensors (B, T, D); ``mask`` is (B, T) with 1 for real tokens.
    """
    m = mask.to(torch.float32)
    out = []
    for i in range(len(hidden) - span):
        out.append((token_cosine(hidden[i], hidden[i + span]) * m).sum())
    return torch.stack(out) if out else torch.zeros(0)


def angle_sums(hidden: Sequence[torch.Tensor], mask: torch.Tensor, span: int) -> torch.Tensor:
    """Sum over masked tokens of arccos(cos(h_l, h_{l+span})) / π for every l."""
    m = mask.to(torch.float32)
    out = []
    for i in range(len(hidden) - span):
        cos = token_cosine(hidden[i], hidden[i + span]).clamp(-1.0, 1.0)
        out.append((torch.arccos(cos) / math.pi * m).sum())
    return torch.stack(out) if out else torch.zeros(0)


def block_influence(hidden: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """BI_l = 1 − mean over masked tokens of cos(h_l, h_{l+1}), one value per layer (ShortGPT)."""
    n = mask.sum().clamp_min(1).to(torch.float32)
    return 1.0 - cosine_sums(hidden, mask, 1) / n


def angular_distances(hidden: Sequence[torch.Tensor], mask: torch.Tensor, n: int) -> torch.Tensor:
    """d(l, l+n) = mean over masked tokens of arccos(cos(h_l, h_{l+n}))/π for each start l (Gromov et al.)."""
    count = mask.sum().clamp_min(1).to(torch.float32)
    return angle_sums(hidden, mask, n) / count


def pick_lowest(scores: Sequence[float], n: int, protected: Sequence[int] = ()) -> list[int]:
    """The ``n`` unprotected layers with the lowest score (ties broken by index), sorted."""
    cand = [i for i in range(len(scores)) if i not in set(protected)]
    if n > len(cand):
        raise DamocError(f"cannot remove {n} layers: only {len(cand)} of {len(scores)} may be removed")
    order = sorted(cand, key=lambda i: (float(scores[i]), i))
    return sorted(order[:n])


def best_block(distances: Sequence[float], n: int, n_layers: int, protect_first_last: bool = True) -> int:
    """Start of the contiguous block of ``n`` layers with the smallest angular distance d(s, s+n).

    ``distances[s]`` is d(h_s, h_{s+n}); with protection the block may not contain layer 0 or L−1.
    """
    lo, hi = (1, n_layers - n - 1) if protect_first_last else (0, n_layers - n)
    if n < 1 or hi < lo:
        raise DamocError(f"no block of {n} removable layers in a {n_layers}-layer model")
    starts = range(lo, hi + 1)
    return min(starts, key=lambda s: (float(distances[s]), s))


# ------------------------------------------------------------------------------------------- plumbing


def encode_texts(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text (cut to ``max_length``); texts under two tokens are dropped."""
    seqs = [
        tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts
    ]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise DamocError("no calibration text with at least two tokens")
    return seqs


def batches(seqs: Sequence[list[int]], batch_size: int, pad_id: int):
    """Right-padded ``(input_ids, attention_mask)`` batches, in order."""
    for b in range(0, len(seqs), batch_size):
        chunk = seqs[b : b + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, s in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        yield ids, mask


def calibration_batches(tok, texts: Sequence[str], max_length: int, batch_size: int):
    """Encode ``texts`` and yield padded batches; also the number of batches, for progress bars."""
    seqs = encode_texts(tok, texts, max_length)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return list(batches(seqs, batch_size, pad))


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    hs = kwargs.get("hidden_states")
    if isinstance(hs, torch.Tensor):
        return hs
    raise DamocError("cannot find the hidden states passed to a decoder layer")


def _hidden_out(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class ResidualRecorder:
    """Hooks that keep the residual stream entering every decoder layer and leaving the last one.

    Use as a context manager; after each forward, ``hidden`` holds L+1 tensors (B, T, D).
    """

    def __init__(self, model: nn.Module):
        self.layers = decoder_layers(model)
        self.hidden: list[torch.Tensor | None] = [None] * (len(self.layers) + 1)
        self._handles: list = []

    def __enter__(self) -> ResidualRecorder:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_pre_hook(self._pre(i), with_kwargs=True))
        last = len(self.layers) - 1
        self._handles.append(self.layers[last].register_forward_hook(self._post(last + 1)))
        return self

    def _pre(self, i: int):
        def hook(_mod, args, kwargs):
            self.hidden[i] = _hidden_arg(args, kwargs).detach()

        return hook

    def _post(self, i: int):
        def hook(_mod, _args, output):
            self.hidden[i] = _hidden_out(output).detach()

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class LayerScores:
    """Per-layer block influence and, when asked, angular distance of every n-layer block."""

    metric: str
    n_layers: int
    n_tokens: int
    bi: list[float]
    block: int = 1
    angular: list[float] = field(default_factory=list)  # angular[s] = d(h_s, h_{s+block})

    def scores(self) -> list[float]:
        """The per-layer ranking score: BI, or for angular the distance of the block starting there."""
        return self.bi if self.metric == "bi" else self.angular


def layer_scores(
    model: nn.Module,
    tok,
    texts: Sequence[str],
    metric: str = "bi",
    block: int = 1,
    max_length: int = 256,
    batch_size: int = 8,
) -> LayerScores:
    """Block influence of every layer (and angular distances of ``block``-layer spans): one forward per batch."""
    return score_batches(model, calibration_batches(tok, texts, max_length, batch_size), metric, block)


@torch.no_grad()
def score_batches(model: nn.Module, data, metric: str = "bi", block: int = 1) -> LayerScores:
    """:func:`layer_scores` on already encoded ``(input_ids, attention_mask)`` batches."""
    if metric not in METRICS:
        raise DamocError(f"unknown layer metric '{metric}' (known: {', '.join(METRICS)})")
    n_layers = len(decoder_layers(model))
    if block < 1 or block >= n_layers:
        raise DamocError(f"block size must be between 1 and {n_layers - 1}, got {block}")
    dev = model_device(model)
    cos_sum = torch.zeros(n_layers, dtype=torch.float64)
    ang_sum = torch.zeros(n_layers - block + 1, dtype=torch.float64)
    tokens = 0
    with ResidualRecorder(model) as rec:
        for ids, mask in progress(data, desc="layer scores", unit="batch"):
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False)
            hidden = [h for h in rec.hidden if h is not None]
            if len(hidden) != n_layers + 1:
                raise DamocError("the decoder layers were not all run: cannot score layers of this model")
            m = mask.to(hidden[0].device)
            cos_sum += cosine_sums(hidden, m, 1).double().cpu()
            if metric == "angular":
                ang_sum += angle_sums(hidden, m, block).double().cpu()
            tokens += int(m.sum())
            rec.hidden = [None] * (n_layers + 1)
    bi = (1.0 - cos_sum / max(1, tokens)).tolist()
    angular = (ang_sum / max(1, tokens)).tolist() if metric == "angular" else []
    return LayerScores(metric=metric, n_layers=n_layers, n_tokens=tokens, bi=bi, block=block, angular=angular)


def protected_layers(n_layers: int, protect_first_last: bool) -> list[int]:
    return [0, n_layers - 1] if protect_first_last else []


def choose_layers(scores: LayerScores, n: int, protect_first_last: bool = True) -> list[int]:
    """Which ``n`` layers to remove: the lowest BI, or the best contiguous block by angular distance."""
    if scores.metric == "angular":
        if n != scores.block:
            raise DamocError(f"angular scores were computed for blocks of {scores.block}, not {n}")
        start = best_block(scores.angular, n, scores.n_layers, protect_first_last)
        return list(range(start, start + n))
    return pick_lowest(scores.bi, n, protected_layers(scores.n_layers, protect_first_last))
