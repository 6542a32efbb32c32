"""Token compression of examples: budget controller + chunk-wise re-scoring + fidelity inside the budget.

The recipe, top to bottom:
1. tokenize each segment (context, question, answer) with the scorer's tokenizer, group tokens into
   words, flag the words that must be kept (gold answer spans, user spans);
2. the budget controller splits ``rate × tokens`` over the segments (context hardest, question
   lightly, answer untouched) and each segment's count over its chunks;
3. chunk by chunk, the scorer gives each token's self-information conditioned on the already
   compressed prefix (examples are batched: one forward per chunk step for a whole batch; only the
   first ``max_scored_tokens`` of an example), and the chunk keeps the words worth most per token:
   a mix of that self-information and how much of the original's meaning they cover under the
   fidelity encoder (:mod:`damoc.data.compress.coverage`);
4. BERTScore-F1 vs the original; an example under the floor is re-selected at the same rate
   (all its shortened segments at once, so the budget moves to where words cover most, with the
   ``repair_info_weights``); one still under it follows
   ``on_floor``: ``keep_rate`` keeps it at the rate and reports the shortfall, ``back_off`` retries
   at milder rates and then keeps it whole, ``keep_whole`` keeps it whole.

The achieved rate of an example is kept / original scorer tokens of its budget segments, the
output re-tokenized segment by segment; the run's achieved rate is the mean over examples.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from damoc.data.compress.budget import chunk_budget, closest_step, segment_floor, split_budget, unit_scores
from damoc.data.compress.config import CompressConfig
from damoc.data.compress.coverage import Coverage, build_coverage, join_coverage, select_covering
from damoc.data.compress.encoder import Embedded, TokenEncoder
from damoc.data.compress.records import (
    Attempt,
    CompressRecord,
    CompressResult,
    CompressSummary,
    SegmentTokens,
)
from damoc.data.compress.scoring import PrefixCache, cache_is_exact, self_information, start_token_id
from damoc.data.compress.units import Segment, find_spans, mark_keep, tokenize_segment
from damoc.data.fidelity import BertScoreFidelity
from damoc.errors import DamocError
from damoc.io.tasks import Example
from damoc.logging_utils import progress
from damoc.model.arch import load_model, load_tokenizer

LOG = logging.getLogger(__name__)

FidelityFn = Callable[[Sequence[str], Sequence[str]], list[float]]  # (candidates, references) -> F1
EncoderFn = Callable[[Sequence[str]], list[Embedded]]  # texts -> encoder token embeddings


@dataclass
class _Plan:
    """One example's compression at one rate: which segments to shorten, and the state of the scan."""

    ex: Example
    segments: list[Segment]
    in_budget: list[bool]
    targets: list[int]  # kept tokens per segment
    total: int = 0  # kept tokens of the budget segments, all together
    chunks: list[tuple[int, list[int]]] = field(default_factory=list)  # (segment index, unit indices)
    scored: list[bool] = field(default_factory=list)  # per chunk: scored by the LM (else coverage alone)
    chunk_sizes: dict[int, list[int]] = field(default_factory=dict)  # segment: tokens per chunk
    kept: list[set[int]] = field(default_factory=list)
    prefix: list[int] = field(default_factory=list)
    next_seg: int = 0  # next segment whose whole text (if not shortened) joins the prefix
    next_chunk: int = 0
    seg_done: dict[int, tuple[int, int]] = field(default_factory=dict)  # seg: (tokens seen, kept)
    cover: dict[int, Coverage] = field(default_factory=dict)  # shortened segment: coverage state
    info: dict[int, dict[int, float]] = field(default_factory=dict)  # segment: unit: self-information

    def shortened(self) -> list[int]:
        return sorted(self.chunk_sizes)

    def scored_tokens(self) -> int:
        return sum(
            sum(self.segments[si].units[u].n_tokens for u in units)
            for (si, units), sc in zip(self.chunks, self.scored, strict=True)
            if sc
        )

    def chunk_tokens(self, si: int, units: list[int]) -> int:
        return sum(self.segments[si].units[u].n_tokens for u in units)

    def selected_tokens(self) -> int:
        """Tokens of every chunk to select from, LM-scored or by coverage alone (what the bar counts)."""
        return sum(self.chunk_tokens(si, units) for si, units in self.chunks)


def _needles(ex: Example, cfg: CompressConfig) -> list[str]:
    needles = [ex.answer] if cfg.keep_answer_spans and ex.answer.strip() else []
    for name in cfg.keep_fields:
        val = ex.meta.get(name)
        if isinstance(val, str):
            needles.append(val)
        elif isinstance(val, list):
            needles.extend(str(v) for v in val if v is not None)
    return needles


def prepare_segments(ex: Example, tok, cfg: CompressConfig) -> list[Segment]:
    """Tokenized context, question and answer with their must-keep words flagged."""
    needles = _needles(ex, cfg)
    segs = []
    for name, text in (("context", ex.context), ("question", ex.question), ("answer", ex.answer)):
        seg = tokenize_segment(tok, name, text)
        spans = find_spans(text, needles if name != "answer" else [], cfg.keep_patterns)
        mark_keep(seg, spans)
        segs.append(seg)
    return segs


def in_budget(segments: list[Segment], cfg: CompressConfig) -> list[bool]:
    """Which segments the rate counts: all three with ``budget="example"``, else context and question."""
    return [s.name != "answer" or cfg.budget == "example" for s in segments]


def plan_example(ex: Example, segments: list[Segment], cfg: CompressConfig, rate: float) -> _Plan:
    """The budget controller for one example at ``rate``: kept tokens per segment, and the chunks.

    Chunks are LM-scored in order while the example's scored tokens stay within
    ``cfg.max_scored_tokens``; none is when ``cfg.info_weight`` is 0 (coverage alone needs no LM).
    A segment's words past the scored ones form one chunk: coverage chooses them all at once.
    """
    preferred = {"context": cfg.context_rate, "question": cfg.question_rate, "answer": cfg.answer_rate}
    budgeted = in_budget(segments, cfg)
    idx = [i for i, b in enumerate(budgeted) if b]
    sizes = [segments[i].n_tokens for i in idx]
    prefs = [preferred[segments[i].name] if rate < 1.0 else 1.0 for i in idx]
    floors = [
        segment_floor(segments[i].n_tokens, segments[i].must_keep_tokens, p, cfg.min_rate)
        for i, p in zip(idx, prefs, strict=True)
    ]
    split = split_budget(sizes, prefs, floors, round(rate * sum(sizes)))
    targets = [s.n_tokens for s in segments]
    for i, k in zip(idx, split, strict=True):
        targets[i] = k
    plan = _Plan(
        ex=ex, segments=segments, in_budget=budgeted, targets=targets, total=round(rate * sum(sizes))
    )
    plan.kept = [
        set(range(len(s.units))) if targets[i] >= s.n_tokens else set() for i, s in enumerate(segments)
    ]
    cap = cfg.max_scored_tokens
    scored = 0
    for si, seg in enumerate(segments):
        if targets[si] >= seg.n_tokens:
            continue
        plan.info[si] = {}
        cur: list[int] = []
        size = 0
        for ui, u in enumerate(seg.units + [None]):
            if u is None or (cur and size + u.n_tokens > cfg.chunk_tokens):
                ok = cfg.info_weight > 0 and (cap is None or scored + size <= cap)
                if cur and not ok and plan.chunks and plan.chunks[-1][0] == si and not plan.scored[-1]:
                    plan.chunks[-1][1].extend(cur)  # unscored words are chosen together, not chunk by chunk
                elif cur:
                    plan.chunks.append((si, cur))
                    plan.scored.append(ok)
                scored += size if cur and ok else 0
                cur, size = [], 0
            if u is not None:
                cur.append(ui)
                size += u.n_tokens
        plan.chunk_sizes[si] = [sum(seg.units[u].n_tokens for u in c) for s, c in plan.chunks if s == si]
    return plan


def needs_cover(plan: _Plan, cfg: CompressConfig) -> list[int]:
    """The shortened segments whose selection uses coverage (any, unless the LM alone scores all)."""
    repair = cfg.fidelity_floor is not None and bool(cfg.repair_info_weights)
    if cfg.info_weight < 1.0 or repair or not all(plan.scored):
        return plan.shortened()
    return []


def segment_coverage(seg: Segment, emb: Embedded) -> Coverage:
    """The coverage state of a segment from its encoder embedding (encoder tokens mapped to words)."""
    starts = [u.start for u in seg.units]
    words = [bisect.bisect_right(starts, c) - 1 if starts else None for c in emb.starts]
    return build_coverage(emb.emb, [w if w is not None and w >= 0 else None for w in words], emb.blocks)


def _chunk_ids(seg: Segment, units: list[int]) -> list[int]:
    return [t for ui in units for t in seg.ids[seg.units[ui].tok_lo : seg.units[ui].tok_hi]]


def _advance(plan: _Plan, sep: list[int]) -> tuple[int, list[int]] | None:
    """Move whole segments into the prefix up to the next chunk; return (segment, units) of that chunk."""
    stop = plan.chunks[plan.next_chunk][0] if plan.next_chunk < len(plan.chunks) else len(plan.segments)
    while plan.next_seg < stop:
        seg = plan.segments[plan.next_seg]
        if seg.ids:
            plan.prefix += (sep if plan.prefix else []) + seg.ids
        plan.next_seg += 1
    if plan.next_chunk >= len(plan.chunks):
        return None
    si, units = plan.chunks[plan.next_chunk]
    if plan.next_seg == si and si not in plan.seg_done:  # first chunk of a segment: separator
        plan.prefix += sep if plan.prefix else []
        plan.seg_done[si] = (0, 0)
    return si, units


def _apply(
    plan: _Plan, si: int, units: list[int], info: list[float] | None, cfg: CompressConfig
) -> list[int]:
    """Select the chunk's units to keep; extend the prefix with them when the LM scored the chunk
    (``info``: its tokens' self-information; None: coverage alone). Returns their token offsets."""
    seg = plan.segments[si]
    chunk_sizes = plan.chunk_sizes[si]
    j = sum(1 for s, _ in plan.chunks[: plan.next_chunk] if s == si)
    done, kept_so_far = plan.seg_done[si]
    budget = chunk_budget(plan.targets[si], chunk_sizes, done, kept_so_far, j)
    bounds, pos = [], 0
    for u in units:
        n = seg.units[u].n_tokens
        bounds.append((pos, pos + n))
        pos += n
    scores: list[float | None] = [None] * len(units)
    if info is not None:
        scores = list(unit_scores(info, bounds, cfg.unit_score))
        plan.info[si].update(zip(units, scores, strict=True))
    chosen = select_covering(
        plan.cover.get(si),
        units,
        [seg.units[u].n_tokens for u in units],
        scores,
        [seg.units[u].keep for u in units],
        budget,
        cfg.info_weight if info is not None else 0.0,
    )
    keep_units = [units[c] for c in chosen]
    plan.kept[si].update(keep_units)
    n_kept = sum(seg.units[u].n_tokens for u in keep_units)
    plan.seg_done[si] = (done + chunk_sizes[j], kept_so_far + n_kept)
    if info is not None:
        plan.prefix += _chunk_ids(seg, keep_units)
    plan.next_chunk += 1
    if plan.next_chunk >= len(plan.chunks) or plan.chunks[plan.next_chunk][0] != si:
        plan.next_seg = si + 1
        if plan.next_chunk < len(plan.chunks):  # the next shortened segment makes up this one's miss
            nxt = plan.chunks[plan.next_chunk][0]
            miss = plan.targets[si] - plan.seg_done[si][1]
            plan.targets[nxt] = min(max(plan.targets[nxt] + miss, 0), plan.segments[nxt].n_tokens)
    kept = set(keep_units)
    return [o for (lo, hi), u in zip(bounds, units, strict=True) if u in kept for o in range(lo, hi)]


def _next_scored(plan: _Plan, sep: list[int], cfg: CompressConfig, bar=None) -> tuple[int, list[int]] | None:
    """Apply the plan's chunks that the LM does not score (coverage alone) up to the next scored one;
    ``bar`` (a progress bar) advances by their tokens."""
    while (nxt := _advance(plan, sep)) is not None and not plan.scored[plan.next_chunk]:
        _apply(plan, *nxt, None, cfg)
        if bar is not None:
            bar.update(plan.chunk_tokens(*nxt))
    return nxt


def batch_size(cfg: CompressConfig, model) -> int:
    """``cfg.batch_size``, or where it is None: 1 on CPU, ``cfg.accelerator_batch_size`` elsewhere."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    dev = next(model.parameters()).device
    return 1 if dev.type == "cpu" else cfg.accelerator_batch_size


def _prefix_bound(plan: _Plan, sep: list[int]) -> int:
    """Most tokens the example's scored prefix can reach: whole segments and LM-scored chunks."""
    n = 1
    for si, seg in enumerate(plan.segments):
        if si in plan.chunk_sizes:
            n += len(sep) + sum(
                sum(seg.units[u].n_tokens for u in units)
                for (s, units), sc in zip(plan.chunks, plan.scored, strict=True)
                if s == si and sc
            )
        else:
            n += len(sep) + seg.n_tokens
    return n


def run_plans(
    plans: list[_Plan], model, tok, cfg: CompressConfig, desc: str = "compress", kv_cache: bool = True
) -> None:
    """Score and select every chunk of every plan, a batch of examples per forward pass.

    Chunks the LM does not score (past ``max_scored_tokens``, or all with ``info_weight`` 0) are
    selected by coverage alone, without a forward. With ``kv_cache`` (and a scorer without
    sliding-window layers, and a batch whose examples fit ``cfg.max_length`` whole), each step
    forwards only the prefix tokens added since the example's last step and the next chunk
    (:class:`PrefixCache`); the scores are those of the uncached re-scoring of the whole compressed
    prefix, up to float rounding. With ``cfg.reuse_kept_keys`` the kept tokens of a chunk are not
    re-fed: their keys stay from the pass that scored them (:meth:`PrefixCache.keep`), which is
    cheaper and no longer equal to the uncached scores. The progress bar counts the tokens selected
    from, LM-scored or by coverage alone (a long context selected by coverage takes time too).
    """
    bar = progress(total=sum(p.selected_tokens() for p in plans), desc=desc, unit="tok")
    if not any(any(p.scored) for p in plans):
        for p in plans:
            _next_scored(p, [], cfg, bar)
        bar.close()
        return
    start = start_token_id(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else start
    sep = tok("\n\n", add_special_tokens=False)["input_ids"]
    order = sorted(range(len(plans)), key=lambda i: sum(s.n_tokens for s in plans[i].segments))
    cached = kv_cache and cache_is_exact(model)
    size = batch_size(cfg, model)
    for b in range(0, len(order), size):
        group = [plans[i] for i in order[b : b + size]]
        # an example that may not fit max_length whole is scored uncached (its prefix may be cut)
        fits = [cached and _prefix_bound(p, sep) <= cfg.max_length for p in group]
        cache = PrefixCache(model, len(group), start, pad) if any(fits) else None
        fed = [0] * len(group)  # prefix tokens already given to the cache, per plan
        while True:
            todo = []
            for k, p in enumerate(group):
                nxt = _next_scored(p, sep, cfg, bar)
                if nxt is not None:
                    todo.append((k, nxt))
            if not todo:
                break
            got: dict[int, list[float]] = {}
            cold = [(k, nxt) for k, nxt in todo if not fits[k]]
            if cold:
                requests = [(group[k].prefix, _chunk_ids(group[k].segments[si], u)) for k, (si, u) in cold]
                infos = self_information(model, requests, start, pad, cfg.max_length)
                got.update((k, info) for (k, _), info in zip(cold, infos, strict=True))
            warm = [(k, nxt) for k, nxt in todo if fits[k]]
            if warm:
                assert cache is not None
                cache.drop_rows([k for k, _ in warm])
                steps = {
                    k: (group[k].prefix[fed[k] :], _chunk_ids(group[k].segments[si], u))
                    for k, (si, u) in warm
                }
                got.update(cache(steps))
                for k, _ in warm:
                    fed[k] = len(group[k].prefix)
            infos = [got[k] for k, _ in todo]
            for (k, (si, units)), info in zip(todo, infos, strict=True):
                offsets = _apply(group[k], si, units, info, cfg)
                if fits[k] and cfg.reuse_kept_keys:
                    assert cache is not None
                    cache.keep(k, offsets)
                    fed[k] = len(group[k].prefix)
                bar.update(len(info))
    bar.close()


def land(plan: _Plan) -> None:
    """Close what is left between the example's kept tokens and its total budget, one word at a time:
    add an unkept word (or drop a kept, not forced one when over) whose size best closes the gap."""
    short = [si for si in plan.shortened() if plan.in_budget[si]]
    while True:
        used = sum(
            sum(seg.units[u].n_tokens for u in plan.kept[si]) if si in plan.chunk_sizes else seg.n_tokens
            for si, seg in enumerate(plan.segments)
            if plan.in_budget[si]
        )
        gap = plan.total - used
        if gap == 0:
            return
        pool = [
            (si, u)
            for si in short
            for u, unit in enumerate(plan.segments[si].units)
            if (u not in plan.kept[si]) == (gap > 0) and not (gap < 0 and unit.keep)
        ]
        k = closest_step(abs(gap), [plan.segments[si].units[u].n_tokens for si, u in pool])
        if k is None:
            return
        si, u = pool[k]
        (plan.kept[si].add if gap > 0 else plan.kept[si].discard)(u)


def reselect(plan: _Plan, info_weight: float) -> list[set[int]]:
    """The words of all shortened segments chosen again at once: the same total token count (so the
    same rate), shared between the segments wherever a word is worth most per token, with
    ``info_weight`` (the self-information the first pass scored; coverage from scratch)."""
    short = [si for si in plan.shortened() if si in plan.cover]
    offsets, words, sizes, info, forced, covers = {}, [], [], [], [], []
    for si in short:
        seg = plan.segments[si]
        offsets[si] = len(words)
        words.extend(range(offsets[si], offsets[si] + len(seg.units)))
        sizes.extend(u.n_tokens for u in seg.units)
        info.extend(plan.info[si].get(u) for u in range(len(seg.units)))
        forced.extend(u.keep for u in seg.units)
        covers.append((plan.cover[si], offsets[si]))
    budget = sum(plan.segments[si].units[u].n_tokens for si in short for u in plan.kept[si])
    chosen = set(select_covering(join_coverage(covers), words, sizes, info, forced, budget, info_weight))
    kept = [set(k) for k in plan.kept]
    for si in short:
        lo, n = offsets[si], len(plan.segments[si].units)
        kept[si] = {w - lo for w in chosen if lo <= w < lo + n}
    return kept


def _count(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0


@dataclass
class _Out:
    """An example as compressed by one attempt: the text, tokens per segment, rates, fidelity."""

    ex: Example
    seg_tokens: dict[str, SegmentTokens]
    achieved: float
    selected: float
    fidelity: float | None = None


def finish_plan(plan: _Plan, tok, kept: list[set[int]] | None = None) -> _Out:
    """The compressed example (``kept``: other word choices than the plan's), per-segment [original,
    kept] tokens, the achieved rate (re-tokenized output) and the selected rate (scorer's own tokens)."""
    kept = plan.kept if kept is None else kept
    texts = {}
    seg_tokens = {}
    orig = k_all = selected = 0
    for si, seg in enumerate(plan.segments):
        text = seg.text if plan.targets[si] >= seg.n_tokens else seg.render(kept[si])
        texts[seg.name] = text
        k = seg.n_tokens if text == seg.text else _count(tok, text)
        seg_tokens[seg.name] = SegmentTokens(seg.n_tokens, k)
        if plan.in_budget[si]:
            orig += seg.n_tokens
            k_all += k
            selected += sum(seg.units[u].n_tokens for u in kept[si])
    ex = replace(plan.ex, context=texts["context"], question=texts["question"], answer=texts["answer"])
    ex.meta = dict(plan.ex.meta)
    return _Out(ex, seg_tokens, (k_all / orig if orig else 1.0), (selected / orig if orig else 1.0))


def fidelity_pair(original: Example, compressed: Example) -> tuple[str, str]:
    """(reference, candidate) texts for the fidelity check: the segments that changed."""
    names = [n for n in ("context", "question", "answer") if getattr(original, n) != getattr(compressed, n)]
    ref = "\n".join(getattr(original, n) for n in names)
    cand = "\n".join(getattr(compressed, n) for n in names)
    return ref, cand


def score_fidelity(fidelity_fn: FidelityFn, originals: Sequence[Example], outs: Sequence[_Out]) -> None:
    """BERTScore-F1 of each output's changed segments vs the original's (1.0 when nothing changed)."""
    pairs = [fidelity_pair(o, out.ex) for o, out in zip(originals, outs, strict=True)]
    need = [k for k, (ref, cand) in enumerate(pairs) if ref != cand]
    got = fidelity_fn([pairs[k][1] for k in need], [pairs[k][0] for k in need]) if need else []
    for out in outs:
        out.fidelity = 1.0
    for k, f in zip(need, got, strict=True):
        outs[k].fidelity = float(f)


def default_fidelity(cfg: CompressConfig) -> FidelityFn:
    return BertScoreFidelity(cfg.fidelity_encoder, cfg.fidelity_layer, cfg.fidelity_batch_size)


def default_encoder(cfg: CompressConfig) -> EncoderFn:
    return TokenEncoder(cfg.fidelity_encoder, cfg.fidelity_layer, cfg.fidelity_batch_size)


def _uses_lm(cfg: CompressConfig) -> bool:
    return cfg.rate < 1.0 and cfg.info_weight > 0 and cfg.max_scored_tokens != 0


class _Covers:
    """Coverage of each (example, segment), embedded once per run and handed out fresh per attempt."""

    def __init__(self, encoder: EncoderFn | None, segs: list[list[Segment]]):
        self.encoder = encoder
        self.segs = segs
        self.cache: dict[tuple[int, int], Coverage] = {}

    def attach(self, items: list[tuple[int, _Plan]], cfg: CompressConfig) -> None:
        want = [(i, si) for i, p in items for si in needs_cover(p, cfg)]
        new = [key for key in dict.fromkeys(want) if key not in self.cache]
        if new:
            if self.encoder is None:
                raise DamocError("compress_examples: coverage selection needs an encoder")
            embs = self.encoder([self.segs[i][si].text for i, si in new])
            for (i, si), emb in zip(new, embs, strict=True):
                self.cache[(i, si)] = segment_coverage(self.segs[i][si], emb)
        for i, p in items:
            p.cover = {si: self.cache[(i, si)].fresh() for si in needs_cover(p, cfg)}


def compress_examples(
    examples: Sequence[Example],
    cfg: CompressConfig | None = None,
    model=None,
    tok=None,
    fidelity_fn: FidelityFn | None = None,
    kv_cache: bool | None = None,
    encoder: EncoderFn | None = None,
) -> CompressResult:
    """Compress every example to ``cfg.rate`` of its scorer tokens; see the module docstring.

    ``model``/``tok``: the scorer (loaded from ``cfg.scorer`` when not given; only its tokenizer when
    ``cfg.info_weight`` is 0). ``fidelity_fn``: ``(candidates, references) -> BERTScore-F1``
    (default: BERTScore with a local encoder; not used when ``cfg.fidelity_floor`` is None).
    ``encoder``: ``texts -> token embeddings`` for coverage (default: the fidelity encoder).
    ``kv_cache``: reuse the scorer's KV cache of the compressed prefix across chunks (same scores up
    to float rounding; see :func:`run_plans`); None: ``cfg.kv_cache``.
    """
    cfg = cfg or CompressConfig()
    kv_cache = cfg.kv_cache if kv_cache is None else kv_cache
    examples = list(examples)
    if not examples:
        raise DamocError("no examples to compress")
    if model is None and tok is None:
        if _uses_lm(cfg):
            model, tok = load_model(cfg.scorer)
        else:
            tok = load_tokenizer(cfg.scorer)
    elif tok is None:
        raise DamocError("compress_examples: a scorer model was given without its tokenizer")
    floor = cfg.fidelity_floor
    if floor is not None and fidelity_fn is None:
        fidelity_fn = default_fidelity(cfg)
    t0 = time.perf_counter()
    items = [_Item(ex, prepare_segments(ex, tok, cfg)) for ex in examples]
    covers = _Covers(encoder or default_encoder(cfg), [it.segs for it in items])
    scored_tokens = 0
    todo = list(range(len(items)))
    rate = cfg.rate
    tries = 1 + (cfg.max_retries if cfg.on_floor == "back_off" else 0)
    left: list[int] = []
    for attempt in range(tries):
        plans = [plan_example(items[i].ex, items[i].segs, cfg, rate) for i in todo]
        covers.attach(list(zip(todo, plans, strict=True)), cfg)
        scored_tokens += sum(p.scored_tokens() for p in plans)
        run_plans(plans, model, tok, cfg, desc=f"compress r={rate:.2f}", kv_cache=kv_cache)
        for p in plans:
            land(p)
        outs = [finish_plan(p, tok) for p in plans]
        if fidelity_fn is not None and floor is not None:
            score_fidelity(fidelity_fn, [items[i].ex for i in todo], outs)
        for i, out in zip(todo, outs, strict=True):
            it = items[i]
            it.out = out
            it.attempts.append(Attempt(rate, cfg.info_weight, out.achieved, out.selected, out.fidelity))
            it.status = "compressed" if attempt == 0 else "retried"
        under = [k for k, o in enumerate(outs) if o.fidelity is not None and o.fidelity < floor]
        for w in cfg.repair_info_weights if under and rate < 1.0 else []:
            # the same rate, the words of all shortened segments chosen again at once
            redo = [finish_plan(plans[k], tok, reselect(plans[k], w)) for k in under]
            score_fidelity(fidelity_fn, [items[todo[k]].ex for k in under], redo)
            for k, o in zip(under, redo, strict=True):
                it = items[todo[k]]
                it.attempts.append(Attempt(rate, w, o.achieved, o.selected, o.fidelity))
                if o.fidelity > it.out.fidelity:
                    it.out = o
                    if o.fidelity >= floor:
                        it.status = "repaired" if attempt == 0 else "retried"
            under = [k for k in under if items[todo[k]].out.fidelity < floor]
        left = [todo[k] for k in under]
        if cfg.on_floor == "keep_rate":
            for i in left:
                items[i].status = "under_floor"
            left = []
        if cfg.on_floor != "back_off" or rate >= 1.0:
            break
        todo = left
        if not todo:
            break
        rate = min(1.0, rate + cfg.retry_step)
    for i in left:  # still under the floor: keep the example whole
        it = items[i]
        it.out = finish_plan(plan_example(it.ex, it.segs, cfg, 1.0), tok)
        it.out.fidelity = 1.0
        it.status = "kept_whole"
    if cfg.rate >= 1.0:
        for it in items:
            it.status = "unchanged"
    records = [_record(it, cfg) for it in items]
    summary = CompressSummary.from_records(
        records,
        cfg.rate,
        budget_segments=[
            s.name for s, b in zip(items[0].segs, in_budget(items[0].segs, cfg), strict=True) if b
        ],
        tokenizer=cfg.scorer,
        fidelity_floor=floor,
        on_floor=cfg.on_floor,
        compress_tokens=sum(
            it.out.seg_tokens["context"].original + it.out.seg_tokens["question"].original for it in items
        ),
        scored_tokens=scored_tokens,
        wall_s=time.perf_counter() - t0,
    )
    LOG.info("compressed %d examples: %s", len(items), summary.rate_text())
    if summary.fidelity:
        LOG.info("%s", summary.fidelity_text())
    return CompressResult(examples=[it.out.ex for it in items], records=records, summary=summary)


@dataclass
class _Item:
    """One example through a run: its segments, its best output so far, every attempt and its status."""

    ex: Example
    segs: list[Segment]
    out: _Out | None = None
    attempts: list[Attempt] = field(default_factory=list)
    status: str = "compressed"  # a CompressRecord status


def _record(it: _Item, cfg: CompressConfig) -> CompressRecord:
    """The example's record: tokens of the budget segments, the rate achieved, fidelity and attempts."""
    out, floor = it.out, cfg.fidelity_floor
    budget = [s.name for s, b in zip(it.segs, in_budget(it.segs, cfg), strict=True) if b]
    return CompressRecord(
        id=it.ex.id,
        target_rate=cfg.rate,
        status=it.status,
        original_tokens=sum(out.seg_tokens[nm].original for nm in budget),
        kept_tokens=sum(out.seg_tokens[nm].kept for nm in budget),
        achieved_rate=out.achieved,
        error=abs(out.achieved - cfg.rate),
        fidelity=out.fidelity,
        shortfall=max(0.0, floor - out.fidelity) if floor is not None and out.fidelity is not None else 0.0,
        must_keep_tokens=sum(s.must_keep_tokens for s in it.segs),
        segment_tokens=out.seg_tokens,
        attempts=it.attempts,
    )


def compress_text(
    text: str,
    cfg: CompressConfig | None = None,
    model=None,
    tok=None,
    keep: Sequence[str] = (),
    fidelity_fn: FidelityFn | None = None,
    encoder: EncoderFn | None = None,
) -> tuple[str, CompressRecord]:
    """Compress one text to ``cfg.rate`` of its tokens; ``keep``: strings that must survive."""
    cfg = cfg or CompressConfig()
    ex = Example(id="text", question="", answer="", context=text, meta={"_keep": list(keep)})
    cfg = cfg.model_copy(update={"keep_fields": [*cfg.keep_fields, "_keep"], "keep_answer_spans": False})
    res = compress_examples([ex], cfg, model, tok, fidelity_fn, encoder=encoder)
    return res.examples[0].context, res.records[0]
