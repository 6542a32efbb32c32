"""Self-information of tokens under a small causal LM, batched: −log p(x_t | x_<t), in nats.

Each request is (prefix ids, target ids): the target tokens are scored conditioned on the prefix. The
batch is left-padded so every row's targets sit at the end, and only the logits of those positions
are computed (the LM head over a 49k vocabulary is a fifth of a small model's cost).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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


def next_token_nll(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """−log softmax(pred)[tgt] per position ([B, T, V], [B, T] -> [B, T]); no copy of the logits."""
    return torch.logsumexp(pred, dim=-1) - pred.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)


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
    nll = next_token_nll(pred, tgt)
    out = []
    for i, n in enumerate(n_tgt):
        out.append(nll[i, nll.size(1) - n :].tolist() if n else [])
    return out


def cache_is_exact(model) -> bool:
    """Whether :class:`PrefixCache` reproduces :func:`self_information`: every layer attends fully.

    Sliding-window layers count cache slots, and the prefix cache leaves masked holes in it, so a
    model with them is scored without the cache.
    """
    cfg = getattr(model, "config", None)
    types = getattr(cfg, "layer_types", None)
    if types:
        return all(t == "full_attention" for t in types)
    return getattr(cfg, "sliding_window", None) is None or getattr(cfg, "use_sliding_window", True) is False


def cache_keyword(model) -> str:
    """The forward argument that takes a KV cache: ``cache`` (transformers >= 5.24, which deprecates the
    old name) or ``past_key_values``."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class PrefixCache:
    """Self-information for a batch of rows that each grow append-only, reusing one KV cache.

    Each row is ``start + prefix`` scored in steps: a step gives the prefix tokens appended since
    the row's last step and the targets to score after them. Only those tokens are forwarded. The
    targets are then masked out of the cache (if the caller keeps some, they come back as prefix and
    are recomputed on the compressed prefix, as without the cache); so is the row's last prefix
    token, which is re-fed at the next step to predict the first target. Masked slots stay in the
    cache as holes; explicit position ids count only the visible tokens, so each row sees exactly
    ``start + prefix + targets``, as :func:`self_information` does (equal within float rounding).
    The caller makes sure a row never exceeds the scorer's max length (no left cut here).

    :meth:`keep` is the cheaper alternative to re-feeding kept targets (LLMLingua's way): the kept
    targets' slots are un-masked and stay, with the keys computed when they were scored (next to
    the tokens dropped since) and their original positions; later tokens continue after the
    chunk's positions. The caller then does not send those tokens again as prefix.
    """

    def __init__(self, model, n_rows: int, start_id: int, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.dev = next(model.parameters()).device
        self.cache = None
        self.cache_kw = cache_keyword(model)
        self.rows = list(range(n_rows))  # caller's row id of each cache row
        self.mask = torch.zeros((n_rows, 0), dtype=torch.long)
        self.tail = [start_id] * n_rows  # last visible token, re-fed at the next step
        self.tail_pos = [0] * n_rows  # its position id
        self.tail_col = [-1] * n_rows  # its (masked) slot in the cache, -1 before the first step
        self.next_pos = [1] * n_rows  # position id of the next new token
        # the last step's targets per row: first cache column, first position id, token ids
        self.targets: list[tuple[int, int, list[int]]] = [(0, 0, [])] * n_rows

    def _select(self, idx: list[int]) -> None:
        for name in ("rows", "tail", "tail_pos", "tail_col", "next_pos", "targets"):
            vals = getattr(self, name)
            setattr(self, name, [vals[i] for i in idx])

    def drop_rows(self, keep: Sequence[int]) -> None:
        """Keep only the caller's rows ``keep`` (rows that are done)."""
        idx = [self.rows.index(r) for r in keep]
        if len(idx) == len(self.rows):
            return
        sel = torch.tensor(idx, dtype=torch.long)
        if self.cache is not None:
            for layer in self.cache.layers:
                layer.batch_select_indices(sel.to(self.dev))
        self.mask = self.mask[sel]
        self._select(idx)

    @torch.inference_mode()
    def __call__(self, steps: dict[int, tuple[list[int], list[int]]]) -> dict[int, list[float]]:
        """``{row: (new prefix tokens, targets)}`` -> ``{row: self-information of each target}``."""
        seqs, n_pre, n_tgt, pos_rows = [], [], [], []
        for i, r in enumerate(self.rows):
            pre, tgt = steps.get(r, ([], []))
            if r in steps:
                seqs.append([self.tail[i], *pre, *tgt])
                n_pre.append(1 + len(pre))
                pos_rows.append(
                    [self.tail_pos[i], *range(self.next_pos[i], self.next_pos[i] + len(pre) + len(tgt))]
                )
            else:
                seqs.append([])
                n_pre.append(0)
                pos_rows.append([])
            n_tgt.append(len(tgt))
        ids, new_mask = left_pad(seqs, self.pad_id)
        width = ids.size(1)
        pos = torch.zeros_like(ids)
        for i, pr in enumerate(pos_rows):
            if pr:
                pos[i, width - len(pr) :] = torch.tensor(pr, dtype=torch.long)
        base = self.mask.size(1)
        mask = torch.cat([self.mask, new_mask], dim=1)
        keep = max(n_tgt) + 1
        kwargs = dict(
            input_ids=ids.to(self.dev),
            attention_mask=mask.to(self.dev),
            position_ids=pos.to(self.dev),
            use_cache=True,
        )
        kwargs[self.cache_kw] = self.cache
        try:
            out = self.model(**kwargs, logits_to_keep=keep)
        except TypeError:  # architectures without logits_to_keep
            out = self.model(**kwargs)
        self.cache = out.cache if self.cache_kw == "cache" else out.past_key_values
        logits = out.logits[:, -keep:].float()
        pred, tgt = logits[:, :-1], ids[:, -(keep - 1) :].to(self.dev)
        nll = next_token_nll(pred, tgt)
        # the new slots: the fed prefix becomes visible, except its last token (the next tail)
        for i, (seq, npre) in enumerate(zip(seqs, n_pre, strict=True)):
            if not npre:
                continue
            lo = width - len(seq)
            new_mask[i, lo + npre - 1 :] = 0
            self.tail[i] = seq[npre - 1]
            self.tail_pos[i] = pos_rows[i][npre - 1]
            self.tail_col[i] = base + lo + npre - 1
            self.next_pos[i] = self.tail_pos[i] + 1  # targets not kept: later tokens take their places
            self.targets[i] = (base + lo + npre, self.next_pos[i], seq[npre:])
        self.mask = torch.cat([self.mask, new_mask], dim=1)
        out_scores = {}
        for i, r in enumerate(self.rows):
            if r in steps:
                n = n_tgt[i]
                out_scores[r] = nll[i, nll.size(1) - n :].tolist() if n else []
        return out_scores

    @torch.inference_mode()
    def keep(self, row: int, kept: Sequence[int]) -> None:
        """Keep the targets at offsets ``kept`` of ``row``'s last step in the cache as they are.

        The row's positions then continue after all of that step's targets (the dropped ones leave
        gaps, as in the original text); its last kept target becomes the tail (re-fed next step).
        """
        i = self.rows.index(row)
        col, pos0, tgt = self.targets[i]
        n = len(tgt)
        kept = sorted(set(kept))
        if kept and (kept[0] < 0 or kept[-1] >= n):
            raise ValueError(f"kept offsets {kept} outside the {n} targets of the last step")
        self.next_pos[i] = pos0 + n
        if not kept:
            return
        self.mask[i, self.tail_col[i]] = 1  # the old tail is now an ordinary visible slot
        for k in kept[:-1]:
            self.mask[i, col + k] = 1
        last = kept[-1]  # stays masked: re-fed next step to predict the next target
        self.tail[i] = tgt[last]
        self.tail_col[i] = col + last
        self.tail_pos[i] = pos0 + last
