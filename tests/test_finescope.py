"""FineScope: curation precision on a mixed pool, CLI bad input, teacher generation, distillation, recipe."""

import json

import pytest
import torch
import yaml

from damoc.curate.config import CurationSettings
from damoc.curate.pipeline import curate_examples
from damoc.curate.train_sae import SAETrainConfig
from damoc.io.tasks import Example, load_examples
from damoc.testing import tiny_model, tiny_tokenizer
from damoc.train.distill import GenerationConfig, cut_at_stop, generate_answers

TOPICS = [
    "football",
    "painting",
    "volcanoes",
    "jazz",
    "railways",
    "chess",
    "castles",
    "orbits",
    "poetry",
    "rivers",
]
SMALL_SAE = {"expansion": 4, "k": 8, "steps": 60, "batch_size": 128, "lr": 5e-3}


def _general(n: int) -> list[Example]:
    return [
        Example(
            id=f"g{i}",
            question=f"Who wrote the best known book about {TOPICS[i % 10]} in the {1800 + i * 7}s?",
            context=f"The history of {TOPICS[i % 10]} is long. People in the city enjoyed "
            f"{TOPICS[(i * 3) % 10]} and wrote about it in letters.",
            answer=f"A writer named {chr(65 + i % 26)}.",
        )
        for i in range(n)
    ]


def _mixed(n: int = 30):
    """Pool of n medical (PubMedQA), n finance (TAT-QA) and n general rows; 10 other medical rows as seeds."""
    med, fin = load_examples("pubmedqa"), load_examples("finance")[:n]
    for e in med:
        e.meta["domain"] = "medical"
    for e in fin:
        e.meta["domain"] = "finance"
    gen = _general(n)
    for e in gen:
        e.meta["domain"] = "general"
    return med[10 : 10 + n] + fin + gen, med[:10], med[100:112]


def _write_mixed(tmp_path, n: int = 30):
    pool, seeds, held = _mixed(n)
    paths = {}
    for name, rows in (("pool", pool), ("seeds", seeds), ("eval", held)):
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps(e.to_row()) + "\n" for e in rows))
        paths[name] = p
    return paths


@pytest.fixture
def mixed_files(tmp_path):
    return _write_mixed(tmp_path)


def test_sae_curation_precision_beats_random():
    pool, seeds, _ = _mixed(20)
    cfg = CurationSettings(
        top=10, compare=["tfidf", "random"], max_length=64, sae=SAETrainConfig(**SMALL_SAE)
    )
    cur = curate_examples(pool, seeds, cfg, tiny_model("llama", 4, seed=1), tiny_tokenizer())
    rep = cur.report
    assert rep.target_domain == "medical" and rep.random_expected_precision == pytest.approx(1 / 3)
    sae, rnd = rep.precision_of("sae"), rep.precision_of("random")
    assert sae >= 0.8 and sae > rnd + 0.3, (sae, rnd)
    assert rep.precision_of("tfidf") >= 0.8
    assert len(cur.examples) == 10 and cur.scores == sorted(cur.scores, reverse=True)
    assert rep.sae["k"] == 8 and rep.sae["layer"] == 2


def test_cli_curate_writes_rows_and_report(mixed_files, tiny_dirs, tmp_path, run_cli):
    out = tmp_path / "cur.jsonl"
    code, stdout, err = run_cli(
        "curate", "--pool", mixed_files["pool"], "--seeds", mixed_files["seeds"], "--model", tiny_dirs["llama"],
        "--top", "12", "--out", out, "--expansion", "2", "--k", "4", "--sae-steps", "20", "--max-length", "48",
        "--compare", "tfidf,random", "--sae-cache", tmp_path / "sae_cache",
    )  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and [r["curation_rank"] for r in rows] == list(range(12))
    assert all(rows[i]["curation_score"] >= rows[i + 1]["curation_score"] for i in range(11))
    report = json.loads((tmp_path / "cur.report.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["sae", "tfidf", "random"]
    assert "precision" in stdout


def test_cli_curate_bad_input(mixed_files, tiny_dirs, tmp_path, run_cli):
    out = tmp_path / "c.jsonl"
    two = tmp_path / "two.jsonl"
    two.write_text("".join(mixed_files["seeds"].read_text().splitlines(keepends=True)[:2]))
    base = ["curate", "--pool", mixed_files["pool"], "--model", tiny_dirs["llama"], "--out", out]
    code, _, err = run_cli(*base, "--seeds", two, "--top", "5")
    assert (
        code == 2 and err.strip() == "error: need at least 3 seed rows, got 2 (add seeds or lower min_seeds)"
    )
    code, _, err = run_cli(*base, "--seeds", mixed_files["seeds"], "--top", "500")
    assert (
        code == 2
        and err.strip() == "error: the pool has 90 rows, fewer than --top 500: lower --top or add rows"
    )
    code, _, err = run_cli(
        "curate", "--pool", mixed_files["pool"], "--seeds", mixed_files["seeds"], "--out", out, "--top", "5"
    )
    assert code == 2 and "needs a model" in err
    code, _, err = run_cli(*base, "--seeds", mixed_files["seeds"], "--method", "sea", "--top", "5")
    assert code == 2 and "unknown curation method 'sea'; did you mean 'sae'?" in err
    assert not out.exists() and not (tmp_path / "c.report.json").exists()


def test_cut_at_stop():
    assert cut_at_stop(" yes, it works.\n\nQuestion: next", ["\n\n", "\nQuestion:"]) == "yes, it works."
    assert cut_at_stop("no stop here ", ["\n\n"]) == "no stop here"


def test_batched_generation_matches_one_by_one():
    model, tok = tiny_model("llama", 2, seed=3), tiny_tokenizer()
    prompts = ["Question: a?\nAnswer:", "Context: longer text here.\nQuestion: b?\nAnswer:", "Q"]
    one = generate_answers(model, tok, prompts, GenerationConfig(max_new_tokens=6, batch_size=1, stop=[]))
    many = generate_answers(model, tok, prompts, GenerationConfig(max_new_tokens=6, batch_size=3, stop=[]))
    assert one == many and all(isinstance(a, str) for a in one)


def test_cli_distill(tiny_dirs, qa_file, tmp_path, run_cli):
    pruned = tmp_path / "pruned"
    code, _, err = run_cli("prune", "structured", tiny_dirs["llama"], "--ratio", "0.3", "--data", qa_file,
                           "--out", pruned, "--samples", "4")  # fmt: skip
    assert code == 0, err
    out = tmp_path / "sd"
    code, stdout, err = run_cli("distill", "--teacher", tiny_dirs["llama"], "--student", pruned, "--data", qa_file,
                                "--out", out, "--max-steps", "2", "--max-new-tokens", "4", "--max-rows", "6")  # fmt: skip
    assert code == 0, err
    assert (out / "teacher_answers.jsonl").is_file() and json.loads((out / "distill.json").read_text())[
        "steps"
    ] == 2
    from damoc.model.arch import load_model

    m, _ = load_model(out)
    assert m.config.intermediate_size < 64
    code, _, err = run_cli("distill", "--teacher", tiny_dirs["llama"], "--student", pruned, "--data", qa_file,
                           "--out", out)  # fmt: skip
    assert code == 2 and "not empty" in err


def test_finescope_recipe_end_to_end(tiny_dirs, tmp_path, run_cli):
    mixed_files = _write_mixed(tmp_path, n=8)
    job = {
        "job": "finescope",
        "model": str(tiny_dirs["llama"]),
        "pool": str(mixed_files["pool"]),
        "seeds": str(mixed_files["seeds"]),
        "eval": str(mixed_files["eval"]),
        "out": str(tmp_path / "run"),
        "curate": {
            "top": 8,
            "compare": ["random"],
            "max_length": 48,
            "sae": {**SMALL_SAE, "steps": 20},
            "sae_cache": str(tmp_path / "sae_cache"),
        },
        "prune": {"ratio": 0.3, "samples": 4, "max_length": 64},
        "distill": {"generation": {"max_new_tokens": 4}, "finetune": {"max_steps": 2, "max_length": 96}},
        "score": {"eval_rows": 6, "max_length": 96},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    code, _, err = run_cli("validate", path)
    assert code == 0, err
    code, stdout, err = run_cli("finescope", path)
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    names = [s["stage"] for s in rep["stages"]]
    assert names == ["source", "pruned", "pruned + fine-tune", "pruned + self-distillation"]
    params = [s["params"] for s in rep["stages"]]
    assert params[0] > params[1] == params[2] == params[3]
    assert abs(1 - params[1] / params[0] - 0.3) < 0.01
    assert all(s["score"]["label_accuracy"] is not None for s in rep["stages"])  # PubMedQA rows have labels
    for d in ("pruned", "distilled"):
        assert (tmp_path / "run" / d / "config.json").is_file()
    assert "self-distillation" in stdout
    code, _, err = run_cli("finescope", path)
    assert code == 2 and "not empty" in err


def test_example_recipe_validates(run_cli):
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "finescope.yaml"
    code, stdout, err = run_cli("validate", example)
    assert code == 0, err


def test_sae_reloadable_state():
    from damoc.curate.sae import SAEConfig, TopKSAE

    a = TopKSAE(SAEConfig(d_model=4, expansion=2, k=2, seed=1))
    b = TopKSAE(SAEConfig(d_model=4, expansion=2, k=2, seed=2))
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 4)
    assert torch.equal(a(x)[0], b(x)[0])


def test_finescope_variants_fidelity_and_stage_cache(tiny_dirs, tmp_path, monkeypatch):
    import damoc.curate.recipe as recipe
    from damoc.config import parse_config
    from damoc.curate.config import FinescopeJob
    from damoc.train.distill import DistillConfig

    files = _write_mixed(tmp_path, n=8)
    job = {
        "job": "finescope",
        "model": str(tiny_dirs["llama"]),
        "pool": str(files["pool"]),
        "seeds": str(files["seeds"]),
        "eval": str(files["eval"]),
        "out": str(tmp_path / "run"),
        "save_models": False,
        "curate": {"method": "tfidf", "top": 8, "compare": []},
        "prune": {"ratio": 0.3, "samples": 4, "max_length": 64},
        "distill": {"generation": {"max_new_tokens": 4}, "finetune": {"max_steps": 2, "max_length": 96}},
        "score": {"eval_rows": 4, "max_length": 96},
    }
    cfg = parse_config(FinescopeJob, job)
    rw = DistillConfig.model_validate({**cfg.distill.model_dump(), "teacher_mode": "rewrite_reference"})
    cache = tmp_path / "cache"
    rep = recipe.run_finescope(cfg, cache_dir=cache, variants={"rw": rw})
    names = [s.stage for s in rep.stages]
    assert names[2:] == [
        "pruned + fine-tune",
        "pruned + self-distillation",
        "pruned + self-distillation (rw)",
    ]
    kl = [s.score.fidelity_kl for s in rep.stages]
    assert kl[0] == 0.0 and all(k > 0 for k in kl[1:])
    # per-row answer bits sum to each stage's bpb; each self-distillation stage is paired with plain
    for s in rep.stages:
        assert len(s.score.row_bits) == 4
        assert sum(s.score.row_bits) / sum(s.score.row_bytes) == pytest.approx(s.score.answer_bpb)
    plain = rep.stage("pruned + fine-tune").score.answer_bpb
    for name in ("self-distillation", "self-distillation (rw)"):
        vp = rep.versus_plain[name]
        assert vp["diff"] == pytest.approx(rep.stage(f"pruned + {name}").score.answer_bpb - plain)
        assert vp["ci_low"] <= vp["ci_high"] and vp["n_rows"] == 4
    d = rep.distill["pruned + self-distillation (rw)"]
    assert d["teacher_mode"] == "rewrite_reference" and 0 <= d["fallbacks"] <= 8
    rows = [json.loads(x) for x in (tmp_path / "run" / "teacher_answers.rw.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all("fallback" in r and "teacher_output" in r for r in rows)
    assert all(r["answer"] == r["gold"].strip() for r in rows if r["fallback"])

    # A re-run with only a new distillation setting reuses curation, pruning and the scored stages.
    def boom(*a, **k):
        raise AssertionError("pruning should come from the cache")

    monkeypatch.setattr(recipe, "structured_prune", boom)
    cfg.overwrite = True
    kl_cfg = rw.model_copy(update={"kl_weight": 0.5})
    again = recipe.run_finescope(cfg, cache_dir=cache, variants={"rw": rw, "rw+kl": kl_cfg})
    cached = {s.stage: s.cached for s in again.stages}
    assert cached["pruned + fine-tune"] and cached["pruned + self-distillation (rw)"]
    assert not cached["pruned + self-distillation (rw+kl)"]
    for a, b in zip(rep.stages, again.stages[:5], strict=True):
        assert a.score.answer_bpb == pytest.approx(b.score.answer_bpb, rel=1e-5)


def test_rewrite_fallback_when_the_rewrite_loses_the_answer():
    from damoc.train.distill import RewriteConfig, decision_word, rewrite_problem, with_fallback

    cfg = RewriteConfig(min_chars=8, min_gold_recall=0.3)
    gold = "Yes, statin therapy lowered cardiovascular mortality in elderly patients."
    good = "Yes: in elderly patients statin therapy lowered mortality from cardiovascular causes."
    assert (
        decision_word(gold, cfg.decision_words) == "yes" and rewrite_problem(good, gold, "yes", cfg) is None
    )
    assert rewrite_problem("", gold, "yes", cfg) == "empty"
    assert rewrite_problem("Yes.", gold, "yes", cfg) == "too short"
    flipped = "No, statin therapy lowered cardiovascular mortality in elderly patients."
    assert rewrite_problem(flipped, gold, "yes", cfg) == "decision word 'no' instead of 'yes'"
    assert rewrite_problem("The weather was lovely in the city today.", gold, "yes", cfg).startswith(
        "gold content"
    )
    # no decision word in the gold text: the row's label is the reference
    plain_gold = "Statin therapy lowered cardiovascular mortality."
    assert "instead of 'no'" in rewrite_problem(
        "Maybe statin therapy lowered cardiovascular mortality.", plain_gold, "no", cfg
    )
    rows = with_fallback([good, flipped, ""], [gold, gold, gold + " "], ["yes", "yes", "yes"], cfg)
    assert [r.fallback for r in rows] == [False, True, True]
    assert rows[0].answer == good and rows[1].answer == gold and rows[2].answer == gold
    assert rows[1].teacher_output == flipped and rows[0].reason is None


def test_rewrite_reference_mode_uses_gold_fallback_in_training(monkeypatch):
    import damoc.train.distill as distill

    teacher, tok = tiny_model("llama", 2, seed=3), tiny_tokenizer()
    seen = {}

    def fake_generate(model, tok_, prompts, cfg=None):
        seen["prompts"], seen["max_new"] = list(prompts), cfg.max_new_tokens
        return ["the answer is yes: heart rate falls with training", "x"]

    trained = {}

    def fake_finetune(student, tok_, pairs, cfg=None, desc=""):
        trained["pairs"] = list(pairs)
        return distill.FinetuneResult(student, 0, 0, 0.0)

    monkeypatch.setattr(distill, "generate_answers", fake_generate)
    monkeypatch.setattr(distill, "finetune", fake_finetune)
    cfg = distill.DistillConfig(teacher_mode="rewrite_reference", rewrite={"max_new_tokens": 7})
    golds = ["Yes, heart rate falls with endurance training.", "No, the drug had no effect on pain."]
    res = distill.self_distill(
        teacher, teacher, tok, ["Question: p1?\nAnswer:", "Question: p2?\nAnswer:"], cfg,
        references=golds, labels=["yes", "no"],
    )  # fmt: skip
    assert all(g in p for g, p in zip(golds, seen["prompts"], strict=True)) and seen["max_new"] == 7
    assert [r.fallback for r in res.rows] == [False, True] and res.stats["fallbacks"] == 1
    assert [a for _, a in trained["pairs"]] == ["the answer is yes: heart rate falls with training", golds[1]]
    with pytest.raises(ValueError, match="needs the gold answers"):
        distill.self_distill(teacher, teacher, tok, ["Question: p?\nAnswer:"], cfg)


def test_kl_term_is_zero_when_student_equals_teacher():
    import copy

    from damoc.train.distill import DistillConfig, self_distill, token_kl

    a = torch.randn(2, 5, 11)
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    kl, n = token_kl(a, a.clone(), mask)
    assert n == 5 and float(kl) == pytest.approx(0.0, abs=1e-6)
    kl2, _ = token_kl(a, torch.randn(2, 5, 11), mask, temperature=2.0)
    assert float(kl2) > 0

    teacher, tok = tiny_model("llama", 2, seed=5), tiny_tokenizer()
    prompts, answers = ["Question: a?\nAnswer:", "Question: bb?\nAnswer:"], ["yes it is", "no it is not"]

    def first_loss(student, weight):
        cfg = DistillConfig(kl_weight=weight, finetune={"max_steps": 1, "batch_size": 2, "lr": 1e-3})
        res = self_distill(teacher, student, tok, prompts, cfg, answers=answers)
        return res.train.losses[0], res.model

    same_ce, _ = first_loss(copy.deepcopy(teacher), 0.0)
    same_kl, model = first_loss(copy.deepcopy(teacher), 5.0)  # LoRA starts at the teacher: KL 0
    assert same_kl == pytest.approx(same_ce, abs=1e-6)
    assert not model._forward_hooks  # the hook is removed after training
    other = tiny_model("llama", 2, seed=6)
    other_ce, _ = first_loss(copy.deepcopy(other), 0.0)
    other_kl, _ = first_loss(copy.deepcopy(other), 5.0)
    assert other_kl > other_ce + 1e-3
