"""Scoring precision: ``eval.precision: bf16`` scores the proxies and baselines under bf16 autocast; the
ground truth keeps ``validate.eval_precision`` (fp32 by default) and its cache key changes only when that
is set away from fp32."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def tiny():
    from damoc.testing import tiny_model, tiny_tokenizer

    return tiny_model("llama", 2, seed=0), tiny_tokenizer()


def _examples():
    from damoc.io.tasks import Example

    return [Example(id=str(i), question=f"What is {i} plus {i}?", answer=str(2 * i)) for i in range(6)]


def _linear_output_dtypes(model, fn) -> set[torch.dtype]:
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    try:
        fn()
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("metric", ["answer_bpb", "f1"])
def test_bf16_scoring_runs_bf16_matmuls_and_stays_close(tiny, metric):
    from damoc.evaluate.scoring import EvalConfig, score_examples

    model, tok = tiny
    ex = _examples()
    out = {}
    dtypes = {
        p: _linear_output_dtypes(
            model,
            lambda p=p: out.setdefault(
                p, score_examples(model, tok, ex, EvalConfig(metric=metric, max_new_tokens=3, precision=p))
            ),
        )
        for p in ("fp32", "bf16")
    }
    assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}
    assert next(model.parameters()).dtype == torch.float32  # the weights are left as loaded
    if metric == "answer_bpb":
        assert out["bf16"].value == pytest.approx(out["fp32"].value, rel=2e-2)
        assert out["bf16"].value != out["fp32"].value  # bf16 rounding shows: the setting took effect
    assert torch.is_autocast_enabled("cpu") is False  # nothing leaks out of the scoring call


def test_ground_truth_key_follows_a_non_default_scoring_precision():
    from damoc.io.tasks import Example
    from damoc.select.cache import ground_truth_key, stable_fields
    from damoc.select.config import SelectEval
    from damoc.train.finetune import FinetuneConfig

    rows = [Example(id="1", question="q", answer="a")]

    def key(**ev):
        return ground_truth_key(
            rows, rows, "smollm2-135m", FinetuneConfig(method="full"), SelectEval(**ev), "answer"
        )

    assert "precision" not in stable_fields(SelectEval(), ("metric",))  # keys made before the field still hit
    assert key() == key(precision="fp32")
    assert key(precision="bf16") != key()


def test_proxy_and_truth_units_get_their_own_scoring_precision(qa_file, tmp_path):
    from damoc.io.tasks import load_task
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import DataStage, _write_examples, attach_cache_keys, plan_units
    from damoc.select.records import DataRecord

    task = load_task(qa_file)
    rec = DataRecord(task="t", fingerprint="f", n_train=1, n_dev=1, n_proxy_train=1, config_hash="d")
    stage = DataStage(rec, *(tmp_path / n for n in ("a", "b", "c", "d", "e")))
    _write_examples(stage.train, task.train)
    _write_examples(stage.dev, task.dev)

    def units(**validate):
        cfg = SelectConfig.model_validate(
            {
                "task": {"path": str(qa_file)},
                "candidates": ["a"],
                "eval": {"precision": "bf16"},
                "validate": {"enabled": True, **validate},
            }
        )
        out = plan_units(cfg, task, stage, tmp_path)
        attach_cache_keys(cfg, out, stage)
        return {u.method: u for u in out}

    plain, bf16_truth = units(), units(eval_precision="bf16")
    assert {m: u.eval.precision for m, u in plain.items()} == {
        "proxy": "bf16",
        "zero_shot": "bf16",
        "few_shot": "bf16",
        "full": "fp32",
    }
    assert bf16_truth["full"].eval.precision == "bf16"
    assert bf16_truth["full"].cache_key != plain["full"].cache_key


def test_report_names_the_scoring_precision_only_when_not_fp32(tmp_path, monkeypatch):
    from damoc.select.config import SelectConfig, resolve_auto
    from damoc.select.records import DataRecord, UnitRecord
    from damoc.select.report import build_leaderboard, render_markdown

    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=5, n_proxy_train=1)
    recs = [
        UnitRecord(
            candidate=c,
            slug=c,
            method="proxy",
            status="ok",
            metric="answer_bpb",
            higher_is_better=False,
            score=v,
        )
        for c, v in (("a", 1.0), ("b", 2.0))
    ]

    def report(**over):
        cfg = SelectConfig.model_validate({"task": {"path": "pubmedqa"}, "candidates": ["a", "b"], **over})
        return render_markdown(build_leaderboard(resolve_auto(cfg), data, recs, tmp_path))

    monkeypatch.setenv("DAMOC_CPU_FLAGS", "avx2")  # precision auto resolves to fp32 on this CPU

    assert "dev scoring" not in report()
    assert "- dev scoring: bf16 for the proxies and baselines (bf16" in report(eval={"precision": "bf16"})
    assert "bf16 for the proxies and baselines, fp32 for the ground truth" in report(
        eval={"precision": "bf16"}, validate={"enabled": True}
    )
