"""Token compression of examples: budget controller + chunk-wise re-scoring + fidelity back-off.

The recipe, top to bottom:
1. tokenize each segment (context, question, answer) with the scorer's tokenizer, group tokens into
   words, flag the words that must be kept (gold answer spans, user spans);
2. the budget controller splits ``rate × tokens`` over the segments (context hardest, question
   lightly, answer untouched) and each segment's count over its chunks;
3. chunk by chunk, the scorer gives each token's self-information conditioned on the already
   compressed prefix, and the least informative words are dropped to the chunk's budget
   (examples are batched: one forward per chunk step for a whole batch);
4. BERTScore-F1 vs the original; under the floor an example is retried at a milder rate, then kept whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from damoc.data.compress.budget import chunk_budget, segment_floor, select_units, split_budget, unit_scores
from damoc.data.compress.config import CompressConfig
from damoc.data.compress.records import Attempt, CompressRecord, CompressResult, CompressSummary
from damoc.data.compress.scoring import PrefixCache, cache_is_exact, self_information, start_token_id
from damoc.data.compress.units import Segment, find_spans, mark_keep, tokenize_segment
from damoc.errors import DamocError
from damoc.io.tasks import Example
from damoc.logging_utils import progress

LOG = logging.getLogger(__name__)

FidelityFn = Callable[[Sequence[str], Sequence[str]], list[float]]  # (candidates, references) -> F1


@dataclass
class _Plan:
    """One example's compression at one rate: which segments to shorten, and the state of the scan."""

    ex: Example
    segments: list[Segment]
    in_budget: list[bool]
    targets: list[int]  # kept tokens per segment
    chunks: list[tuple[int, list[int]]] = field(default_factory=list)  # (segment index, unit indices)
    chunk_sizes: dict[int, list[int]] = field(default_factory=dict)  # segment: tokens per chunk
    kept: list[set[int]] = field(default_factory=list)
    prefix: list[int] = field(default_factory=list)
    next_seg: int = 0  # next segment whose whole text (if not shortened) joins the prefix
    next_chunk: int = 0
    seg_done: dict[int, tuple[int, int]] = field(default_factory=dict)  # seg: (tokens seen, kept)


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


def plan_example(ex: Example, segments: list[Segment], cfg: CompressConfig, rate: float) -> _Plan:
    """The budget controller for one example at ``rate``: kept tokens per segment, and the chunks."""
    preferred = {"context": cfg.context_rate, "question": cfg.question_rate, "answer": cfg.answer_rate}
    in_budget = [s.name != "answer" or cfg.budget == "example" for s in segments]
    idx = [i for i, b in enumerate(in_budget) if b]
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
    plan = _Plan(ex=ex, segments=segments, in_budget=in_budget, targets=targets)
    plan.kept = [
        set(range(len(s.units))) if targets[i] >= s.n_tokens else set() for i, s in enumerate(segments)
    ]
    for si, seg in enumerate(segments):
        if targets[si] >= seg.n_tokens:
            continue
        cur: list[int] = []
        size = 0
        for ui, u in enumerate(seg.units):
            if cur and size + u.n_tokens > cfg.chunk_tokens:
                plan.chunks.append((si, cur))
                cur, size = [], 0
            cur.append(ui)
            size += u.n_tokens
        if cur:
            plan.chunks.append((si, cur))
        plan.chunk_sizes[si] = [sum(seg.units[u].n_tokens for u in c) for s, c in plan.chunks if s == si]
    return plan


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


def _apply(plan: _Plan, si: int, units: list[int], info: list[float], cfg: CompressConfig) -> list[int]:
    """Select the chunk's units to keep, extend the prefix with them; return their token offsets."""
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
    scores = unit_scores(info, bounds, cfg.unit_score)
    chosen = select_units(
        scores, [seg.units[u].n_tokens for u in units], [seg.units[u].keep for u in units], budget
    )
    keep_units = [units[c] for c in chosen]
    plan.kept[si].update(keep_units)
    n_kept = sum(seg.units[u].n_tokens for u in keep_units)
    plan.seg_done[si] = (done + chunk_sizes[j], kept_so_far + n_kept)
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


def batch_size(cfg: CompressConfig, model) -> int:
    """``cfg.batch_size``, or where it is None: 1 on CPU, ``cfg.accelerator_batch_size`` elsewhere."""
    if cfg.batch_size is not None:
        return cfg.batch_size
    dev = next(model.parameters()).device
    return 1 if dev.type == "cpu" else cfg.accelerator_batch_size


def run_plans(
    plans: list[_Plan], model, tok, cfg: CompressConfig, desc: str = "compress", kv_cache: bool = True
) -> None:
    """Score and select every chunk of every plan, a batch of examples per forward pass.

    With ``kv_cache`` (and a scorer without sliding-window layers, and a batch whose examples fit
    ``cfg.max_length`` whole), each step forwards only the prefix tokens added since the example's
    last step and the next chunk (:class:`PrefixCache`); the scores are those of the uncached
    re-scoring of the whole compressed prefix, up to float rounding. With ``cfg.reuse_kept_keys``
    the kept tokens of a chunk are not re-fed: their keys stay from the pass that scored them
    (:meth:`PrefixCache.keep`), which is cheaper and no longer equal to the uncached scores.
    """
    start = start_token_id(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else start
    sep = tok("\n\n", add_special_tokens=False)["input_ids"]
    order = sorted(range(len(plans)), key=lambda i: sum(s.n_tokens for s in plans[i].segments))
    cached = kv_cache and cache_is_exact(model)
    bar = progress(total=len(plans), desc=desc, unit="ex")
    size = batch_size(cfg, model)
    for b in range(0, len(order), size):
        group = [plans[i] for i in order[b : b + size]]
        # an example that may not fit max_length whole is scored uncached (its prefix may be cut)
        fits = [
            cached and 1 + sum(s.n_tokens + len(sep) for s in p.segments) <= cfg.max_length for p in group
        ]
        cache = PrefixCache(model, len(group), start, pad) if any(fits) else None
        fed = [0] * len(group)  # prefix tokens already given to the cache, per plan
        while True:
            todo = []
            for k, p in enumerate(group):
                nxt = _advance(p, sep)
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
        bar.update(len(group))
    bar.close()


def _count(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0


def finish_plan(plan: _Plan, tok) -> tuple[Example, dict[str, list[int]], float, float]:
    """The compressed example, per-segment [original, kept] tokens, the achieved and selected rates."""
    texts = {}
    seg_tokens = {}
    orig = kept = selected = 0
    for si, seg in enumerate(plan.segments):
        text = seg.text if plan.targets[si] >= seg.n_tokens else seg.render(plan.kept[si])
        texts[seg.name] = text
        k = seg.n_tokens if text == seg.text else _count(tok, text)
        seg_tokens[seg.name] = [seg.n_tokens, k]
        if plan.in_budget[si]:
            orig += seg.n_tokens
            kept += k
            selected += sum(seg.units[u].n_tokens for u in plan.kept[si])
    ex = replace(plan.ex, context=texts["context"], question=texts["question"], answer=texts["answer"])
    ex.meta = dict(plan.ex.meta)
    return ex, seg_tokens, (kept / orig if orig else 1.0), (selected / orig if orig else 1.0)


def fidelity_pair(original: Example, compressed: Example) -> tuple[str, str]:
    """(reference, candidate) texts for the fidelity check: the segments that changed."""
    names = [n for n in ("context", "question", "answer") if getattr(original, n) != getattr(compressed, n)]
    ref = "\n".join(getattr(original, n) for n in names)
    cand = "\n".join(getattr(compressed, n) for n in names)
    return ref, cand


def default_fidelity(cfg: CompressConfig) -> FidelityFn:
    from damoc.data.fidelity import BertScoreFidelity

    return BertScoreFidelity(cfg.fidelity_encoder, cfg.fidelity_layer, cfg.fidelity_batch_size)


def compress_examples(
    examples: Sequence[Example],
    cfg: CompressConfig | None = None,
    model=None,
    tok=None,
    fidelity_fn: FidelityFn | None = None,
    kv_cache: bool | None = None,
) -> CompressResult:
    """Compress every example to ``cfg.rate`` of its scorer tokens; see the module docstring.

    ``model``/``tok``: the scorer (loaded from ``cfg.scorer`` when not given). ``fidelity_fn``:
    ``(candidates, references) -> BERTScore-F1`` (default: BERTScore with a local encoder; not used
    when ``cfg.fidelity_floor`` is None). ``kv_cache``: reuse the scorer's KV cache of the compressed
    prefix across chunks (same scores up to float rounding; see :func:`run_plans`); None: ``cfg.kv_cache``.
    """
    cfg = cfg or CompressConfig()
    kv_cache = cfg.kv_cache if kv_cache is None else kv_cache
    examples = list(examples)
    if not examples:
        raise DamocError("no examples to compress")
    if model is None:
        from damoc.model.arch import load_model

        model, tok = load_model(cfg.scorer)
    elif tok is None:
        raise DamocError("compress_examples: a scorer model was given without its tokenizer")
    if cfg.fidelity_floor is not None and fidelity_fn is None:
        fidelity_fn = default_fidelity(cfg)
    t0 = time.perf_counter()
    segs = [prepare_segments(ex, tok, cfg) for ex in examples]
    n = len(examples)
    results: list[tuple[Example, dict, float, float] | None] = [None] * n
    attempts: list[list[Attempt]] = [[] for _ in range(n)]
    fids: list[float | None] = [None] * n
    status = ["compressed"] * n
    todo = list(range(n))
    rate = cfg.rate
    for attempt in range(cfg.max_retries + 1):
        plans = [plan_example(examples[i], segs[i], cfg, rate) for i in todo]
        run_plans(plans, model, tok, cfg, desc=f"compress r={rate:.2f}", kv_cache=kv_cache)
        outs = [finish_plan(p, tok) for p in plans]
        scores: list[float | None] = [None] * len(todo)
        if fidelity_fn is not None and cfg.fidelity_floor is not None:
            pairs = [fidelity_pair(examples[i], o[0]) for i, o in zip(todo, outs, strict=True)]
            need = [k for k, (ref, cand) in enumerate(pairs) if ref != cand]
            got = fidelity_fn([pairs[k][1] for k in need], [pairs[k][0] for k in need]) if need else []
            scores = [1.0] * len(todo)
            for k, f in zip(need, got, strict=True):
                scores[k] = float(f)
        failed = []
        for k, i in enumerate(todo):
            results[i] = outs[k]
            fids[i] = scores[k]
            attempts[i].append(Attempt(rate, outs[k][2], outs[k][3], scores[k]))
            if attempt > 0:
                status[i] = "retried"
            if scores[k] is not None and scores[k] < cfg.fidelity_floor:
                failed.append(i)
        if rate >= 1.0:
            failed = []
        todo = failed
        if not todo:
            break
        rate = min(1.0, rate + cfg.retry_step)
    for i in todo:  # still under the floor: keep the example whole
        plan = plan_example(examples[i], segs[i], cfg, 1.0)
        results[i] = finish_plan(plan, tok)
        fids[i] = 1.0
        status[i] = "kept_whole"
    if cfg.rate >= 1.0:
        status = ["unchanged"] * n
    out_examples, records = [], []
    compress_tokens = 0
    for i, ex in enumerate(examples):
        new_ex, seg_tokens, achieved, _ = results[i]
        out_examples.append(new_ex)
        budget_names = [s.name for s, b in zip(segs[i], _in_budget(segs[i], cfg), strict=True) if b]
        orig = sum(seg_tokens[nm][0] for nm in budget_names)
        kept = sum(seg_tokens[nm][1] for nm in budget_names)
        compress_tokens += seg_tokens["context"][0] + seg_tokens["question"][0]
        records.append(
            CompressRecord(
                id=ex.id,
                target_rate=cfg.rate,
                status=status[i],
                original_tokens=orig,
                kept_tokens=kept,
                achieved_rate=achieved,
                error=abs(attempts[i][0].achieved_rate - cfg.rate),
                fidelity=fids[i],
                must_keep_tokens=sum(s.must_keep_tokens for s in segs[i]),
                segment_tokens=seg_tokens,
                attempts=attempts[i],
            )
        )
    wall = time.perf_counter() - t0
    summary = CompressSummary.from_records(records, cfg.rate, compress_tokens, wall)
    LOG.info(
        "compressed %d examples: rate %.3f (target %.2f, mean error %.3f), %d tokens saved, %.0f tokens/s",
        n,
        summary.mean_rate_first_attempt,
        cfg.rate,
        summary.mean_abs_error,
        summary.tokens_saved,
        summary.tokens_per_s,
    )
    return CompressResult(out_examples, records, summary)


def _in_budget(segments: list[Segment], cfg: CompressConfig) -> list[bool]:
    return [s.name != "answer" or cfg.budget == "example" for s in segments]


def compress_text(
    text: str,
    cfg: CompressConfig | None = None,
    model=None,
    tok=None,
    keep: Sequence[str] = (),
    fidelity_fn: FidelityFn | None = None,
) -> tuple[str, CompressRecord]:
    """Compress one text to ``cfg.rate`` of its tokens; ``keep``: strings that must survive."""
    cfg = cfg or CompressConfig()
    ex = Example(id="text", question="", answer="", context=text, meta={"_keep": list(keep)})
    cfg = cfg.model_copy(update={"keep_fields": [*cfg.keep_fields, "_keep"], "keep_answer_spans": False})
    res = compress_examples([ex], cfg, model, tok, fidelity_fn)
    return res.examples[0].context, res.records[0]
