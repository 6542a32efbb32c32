"""Rewriting with a negative feedback loop: scripted fake rewriters, fake fidelity, endpoint, CLI."""

from __future__ import annotations

import json

import pytest

from damoc.data.compress import RewriteConfig
from damoc.data.compress.rewrite import (
    EndpointRewriter,
    LocalChatRewriter,
    feedback_message,
    key_terms,
    missing_terms,
    rewrite_examples,
)
from damoc.errors import DamocError
from damoc.io.tasks import Example

ORIG = Example(
    id="a",
    question="What did the trial of compound X show?",
    context="In a randomized trial of 120 patients, compound X reduced migraine frequency by 40% over placebo.",
    answer="reduced migraine frequency by 40%",
)
COMP = Example(
    id="a",
    question=ORIG.question,
    context="randomized trial 120 patients, compound X reduced migraine frequency by 40% placebo.",
    answer=ORIG.answer,
)
GOOD = "In a randomized trial with 120 patients, compound X reduced migraine frequency by 40% versus placebo."
BAD = "A trial found that a compound helped with headaches."


def cfg(**kw):
    return RewriteConfig(rewriter="fake", **kw)


def fid(cands, refs):
    """A fake fidelity: the share of the reference's key terms that the candidate keeps."""
    out = []
    for c, r in zip(cands, refs, strict=True):
        terms = key_terms(r)
        out.append(1.0 - len(missing_terms(terms, c)) / max(1, len(terms)))
    return out


class Scripted:
    """Returns its replies in order and keeps every message list it was given."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.calls = []

    def __call__(self, messages):
        self.calls.append(messages)
        return self.replies[min(len(self.calls), len(self.replies)) - 1]


def test_key_terms_and_missing():
    terms = key_terms("In 2019 the trial of 120 patients cut costs by 4.5% with aspirin.")
    assert terms == ["2019", "trial", "120", "patients", "costs", "4.5%", "aspirin"]
    assert missing_terms(terms, "120 patients took aspirin in 2019") == ["trial", "costs", "4.5%"]


def test_passes_in_round_one():
    rw = Scripted(GOOD)
    res = rewrite_examples([COMP], [ORIG], cfg(tau=0.8), rw, fid)
    rec = res.records[0]
    assert rec.passed and rec.rounds == 1 and len(rw.calls) == 1
    assert res.examples[0].context == GOOD
    assert rec.required == ["reduced migraine frequency by 40%"]
    assert res.summary.n_passed_first_round == 1


def test_stops_at_max_rounds_and_falls_back():
    rw = Scripted(BAD)
    res = rewrite_examples([COMP], [ORIG], cfg(max_rounds=3, tau=0.8), rw, fid)
    rec = res.records[0]
    assert len(rw.calls) == 3 and rec.rounds == 3 and not rec.passed
    assert res.examples[0].context == COMP.context  # the compressed text is kept
    assert len(rec.scores) == 3 and rec.answer_ok == [False, False, False]
    assert rec.final_fidelity == pytest.approx(fid([COMP.context], [ORIG.context])[0])
    assert res.summary.n_fallback == 1


def test_succeeds_in_round_two_after_feedback():
    rw = Scripted(BAD, GOOD)
    res = rewrite_examples([COMP], [ORIG], cfg(max_rounds=3, tau=0.8), rw, fid)
    rec = res.records[0]
    assert rec.passed and rec.rounds == 2 and len(rw.calls) == 2
    assert res.examples[0].context == GOOD
    assert rec.scores[0] < 0.8 <= rec.scores[1]
    # round 2 saw its own failed rewrite and the feedback
    assert rw.calls[1][-2] == {"role": "assistant", "content": BAD}


def test_feedback_names_the_missing_terms():
    rw = Scripted(BAD, GOOD)
    res = rewrite_examples([COMP], [ORIG], cfg(tau=0.8), rw, fid)
    feedback = rw.calls[1][-1]["content"]
    named = res.records[0].feedback[0]
    assert named[0] == "reduced migraine frequency by 40%"  # the answer first
    for term in ("120", "patients", "randomized", "placebo", "40%"):
        assert term in named and term in feedback
    assert "trial" not in named  # the rewrite kept it


def test_answer_must_survive_even_with_high_fidelity():
    dropped = GOOD.replace("reduced migraine frequency by 40%", "lowered migraines")
    rw = Scripted(dropped)
    res = rewrite_examples([COMP], [ORIG], cfg(max_rounds=2, tau=0.0), rw, lambda c, r: [0.99] * len(c))
    assert not res.records[0].passed and res.records[0].answer_ok == [False, False]
    res = rewrite_examples(
        [COMP], [ORIG], cfg(max_rounds=2, tau=0.0, check_answer=False), rw, lambda c, r: [0.99] * len(c)
    )
    assert res.records[0].passed


def test_config_needs_exactly_one_backend():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one"):
        RewriteConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        RewriteConfig(rewriter="m", endpoint="http://x")


@pytest.fixture
def endpoint(chat_endpoint):
    return chat_endpoint


def test_endpoint_rewriter_speaks_openai_chat(endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/v1"
    rw = EndpointRewriter(url, model="m1", max_tokens=50)
    assert rw([{"role": "user", "content": "hi"}]) == " rewritten text "
    path, body = endpoint.seen[0]
    assert path == "/v1/chat/completions" and body["model"] == "m1" and body["max_tokens"] == 50


def test_endpoint_unreachable_is_one_line_error():
    rw = EndpointRewriter("http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(DamocError, match="cannot reach the rewrite endpoint"):
        rw([{"role": "user", "content": "hi"}])


def test_local_chat_rewriter_generates(tiny_dirs):
    from damoc.model.arch import load_model

    model, tok = load_model(tiny_dirs["llama"])
    out = LocalChatRewriter(model, tok, max_new_tokens=5)([{"role": "user", "content": "hello"}])
    assert isinstance(out, str)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_rewrite_with_endpoint(run_cli, endpoint, tmp_path, monkeypatch):
    import damoc.data.fidelity as fidelity

    monkeypatch.setattr(fidelity.BertScoreFidelity, "__call__", lambda self, c, r: [0.95] * len(c))
    orig = _write(tmp_path / "orig.jsonl", [ORIG.to_row()])
    comp = _write(tmp_path / "comp.jsonl", [COMP.to_row()])
    out = tmp_path / "rw.jsonl"
    url = f"http://127.0.0.1:{endpoint.server_port}/v1"
    code, stdout, err = run_cli("rewrite", comp, "--original", orig, "--endpoint", url, "--out", out)
    assert code == 0, err
    # the fake endpoint drops the answer string: every round fails, the compressed text is kept
    row = json.loads(out.read_text())
    assert row["context"] == COMP.context
    report = json.loads((tmp_path / "rw.report.json").read_text())
    assert report["records"][0]["rounds"] == 3 and report["summary"]["n_fallback"] == 1
    assert len(endpoint.seen) == 3 and "kept compressed" in stdout


def test_cli_rewrite_bad_input(run_cli, tmp_path):
    orig = _write(tmp_path / "orig.jsonl", [ORIG.to_row()])
    comp = _write(tmp_path / "comp.jsonl", [{**COMP.to_row(), "id": "zzz"}])
    out = tmp_path / "rw.jsonl"
    code, _, err = run_cli(
        "rewrite", comp, "--original", orig, "--endpoint", "http://127.0.0.1:9", "--out", out
    )
    assert code == 2 and "not in the original task" in err
    code, _, err = run_cli("rewrite", comp, "--original", orig, "--out", out)
    assert code == 2 and "exactly one" in err
    assert not out.exists()


@pytest.mark.slow
def test_real_zoo_rewriter_stops_at_max_rounds_or_accepts():
    """The loop with a real chat model on 2 really compressed PubMedQA contexts (1 thread, ~1 minute).

    SmolLM2-135M-Instruct is both the compression scorer and the rewriter. Each example is made
    extractive for one answer term that its context contains, so the answer check has something to
    check. Short generations (48 tokens) usually fail τ and exercise the fallback; whichever way each
    example goes, its record must be consistent with what the rewriter was asked and answered.
    """
    from dataclasses import replace
    from pathlib import Path

    import torch

    from damoc.data.compress import CompressConfig, compress_examples
    from damoc.data.fidelity import BertScoreFidelity
    from damoc.io.tasks import load_examples
    from damoc.model.arch import load_model

    name = "smollm2-135m"
    if not (Path.home() / ".cache" / "damoc" / "zoo" / name / "config.json").is_file():
        pytest.skip(f"{name} is not in the zoo cache")
    torch.set_num_threads(1)
    model, tok = load_model(name)
    assert tok.chat_template, "the rewriter must be a chat model"
    originals = []
    for ex in load_examples("pubmedqa")[:2]:
        span = next(t for t in key_terms(ex.answer) if not missing_terms([t], ex.context))
        originals.append(replace(ex, meta={**ex.meta, "answer_spans": [span]}))
    comp = compress_examples(
        originals, CompressConfig(rate=0.5, budget="prompt", fidelity_floor=None), model, tok
    ).examples
    real = LocalChatRewriter(model, tok, max_new_tokens=48)
    rw = Scripted()  # only for its call log
    replies = []

    def rewriter(messages):
        rw.calls.append(messages)
        replies.append(real(messages))
        return replies[-1]

    fid = BertScoreFidelity()
    cfg = RewriteConfig(rewriter=name, max_rounds=2)
    res = rewrite_examples(comp, originals, cfg, rewriter, fid)

    assert len(res.records) == 2 and len(rw.calls) == sum(r.rounds for r in res.records)
    for o, c, new, rec in zip(originals, comp, res.examples, res.records, strict=True):
        assert rec.required == o.meta["answer_spans"] and not missing_terms(rec.required, c.context)
        mine = [i for i, m in enumerate(rw.calls) if m[1]["content"].endswith(c.context)]
        assert 1 <= rec.rounds <= cfg.max_rounds and len(mine) == rec.rounds
        assert len(rec.scores) == len(rec.answer_ok) == rec.rounds
        assert all(0.0 <= s <= 1.0 + 1e-6 for s in rec.scores)
        last = replies[mine[-1]].strip()
        assert rec.scores[-1] == pytest.approx(fid([last], [o.context])[0], abs=1e-4)
        if rec.passed:  # an accepted rewrite: over τ, answer kept, and it is the output
            assert new.context == last and rec.scores[-1] >= cfg.tau
            assert rec.answer_ok[-1] and not missing_terms(rec.required, new.context)
            assert rec.final_fidelity == rec.scores[-1] and len(rec.feedback) == rec.rounds - 1
        else:  # every round failed: the loop stopped at max_rounds and kept the compressed text exactly
            assert rec.rounds == cfg.max_rounds and new.context == c.context
            assert all(s < cfg.tau or not ok for s, ok in zip(rec.scores, rec.answer_ok, strict=True))
            assert len(rec.feedback) == rec.rounds
            assert rec.final_fidelity == pytest.approx(fid([c.context], [o.context])[0], abs=1e-4)
        if rec.rounds == 2:  # round 2 saw its failed rewrite and feedback naming the lost terms
            second = rw.calls[mine[1]]
            assert second[-2] == {"role": "assistant", "content": replies[mine[0]].strip()}
            assert second[-1]["content"] == feedback_message(rec.feedback[0])
