"""Prompt formats: raw text or the tokenizer's chat template, the same in fine-tuning and scoring."""

import math

import pytest
import torch

from damoc.errors import DamocError
from damoc.evaluate.likelihood import answer_scores, collate, encode_pair
from damoc.io.prompts import chat_prompt, format_prompts, resolve_format
from damoc.io.tasks import Example

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ROWS = [
    Example(
        id="a", question="Is the sky blue?", answer="yes, mostly", context="The sky scatters blue light."
    ),
    Example(id="b", question="Is grass red?", answer="no", context="Grass is green."),
]


def chat_tokenizer(add_bos: bool = True):
    """The tiny byte-level tokenizer with a chat template (and, like Gemma's, a BOS it adds itself)."""
    from tokenizers import processors

    from damoc.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    if add_bos:
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
        )
    tok.chat_template = TEMPLATE
    return tok


def test_auto_picks_chat_only_where_the_tokenizer_has_a_template():
    from damoc.testing import tiny_tokenizer

    assert resolve_format("auto", chat_tokenizer()) == "chat"
    assert resolve_format("auto", tiny_tokenizer()) == "raw"
    with pytest.raises(DamocError, match="no chat template"):
        resolve_format("chat", tiny_tokenizer())
    # raw is today's text, whatever the tokenizer
    assert format_prompts(chat_tokenizer(), ROWS[:1], "raw") == [ROWS[0].prompt()]
    assert ROWS[0].prompt() == "Context: The sky scatters blue light.\nQuestion: Is the sky blue?\nAnswer:"


def test_chat_puts_the_template_around_the_question_and_scores_only_the_answer():
    tok = chat_tokenizer()
    prompt = format_prompts(tok, ROWS[:1], "chat")[0]
    assert prompt == (
        "<|user|>\nContext: The sky scatters blue light.\nQuestion: Is the sky blue?<|end|>\n<|assistant|>\n"
    )
    ids, start = encode_pair(tok, prompt, ROWS[0].answer, 512)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # the template's BOS, once
    assert tok.decode(ids[:start], skip_special_tokens=True) == prompt
    assert tok.decode(ids[start:]) == "yes, mostly"  # the reply, no space added after the new line
    batch = collate([ids], [start], tok.pad_token_id)
    scored = batch["labels"][0] != -100
    assert int(scored.sum()) == len(tok("yes, mostly", add_special_tokens=False)["input_ids"])
    assert not scored[:start].any()  # the template's tokens carry no loss


def test_chat_answer_nll_reads_the_answer_tokens_of_the_templated_sequence(one_thread):
    from damoc.testing import tiny_model

    tok = chat_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=3)
    prompts = format_prompts(tok, ROWS, "chat")
    got = answer_scores(model, tok, prompts, [e.answer for e in ROWS], batch_size=2, max_length=512)
    for prompt, ex, score in zip(prompts, ROWS, got, strict=True):
        ids, start = encode_pair(tok, prompt, ex.answer, 512)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        want = -sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
        assert score.nll == pytest.approx(want, rel=1e-4)
        assert score.n_tokens == len(ids) - start
    raw = answer_scores(model, tok, format_prompts(tok, ROWS, "raw"), [e.answer for e in ROWS], 2, 512)
    assert not math.isclose(raw[0].nll, got[0].nll, rel_tol=1e-6)  # the format reaches the model


def test_few_shot_chat_turns_and_raw_blocks():
    from damoc.evaluate.metrics import get_metric
    from damoc.evaluate.scoring import build_prompts

    tok = chat_tokenizer()
    metric = get_metric("answer_bpb")
    chat = build_prompts(ROWS[1:], metric, ROWS[:1], 12, tok, "chat")[0]
    assert chat == (
        "<|user|>\nContext: The sky ...\nQuestion: Is the sky blue?<|end|>\n<|assistant|>\nyes, mostly<|end|>\n"
        "<|user|>\nContext: Grass is green.\nQuestion: Is grass red?<|end|>\n<|assistant|>\n"
    )
    raw = build_prompts(ROWS[1:], metric, ROWS[:1], 12)[0]
    assert raw == (
        "Context: The sky ...\nQuestion: Is the sky blue?\nAnswer: yes, mostly\n\n"
        "Context: Grass is green.\nQuestion: Is grass red?\nAnswer:"
    )
    assert chat_prompt(chat_tokenizer(add_bos=False), "hi").startswith("<s><|user|>")  # BOS kept in text


def test_score_examples_and_the_worker_share_the_format(one_thread):
    from damoc.evaluate.scoring import EvalConfig, score_examples
    from damoc.select.worker import _pairs
    from damoc.testing import tiny_model

    tok = chat_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=3)
    chat = score_examples(model, tok, ROWS, EvalConfig(prompt_format="chat", precision="fp32"))
    auto = score_examples(model, tok, ROWS, EvalConfig(prompt_format="auto", precision="fp32"))
    raw = score_examples(model, tok, ROWS, EvalConfig(precision="fp32"))
    assert chat.value == auto.value != raw.value
    pairs = _pairs(ROWS, "answer", tok, "chat")
    assert pairs == [(p, e.answer) for p, e in zip(format_prompts(tok, ROWS, "chat"), ROWS, strict=True)]
    assert _pairs(ROWS, "answer") == [(e.prompt(), e.answer) for e in ROWS]


def test_finetune_loss_on_chat_pairs_is_the_answer_nll(one_thread):
    from damoc.testing import tiny_model
    from damoc.train.finetune import FinetuneConfig, finetune

    tok = chat_tokenizer()
    model = tiny_model("llama", n_layers=2, seed=3)
    pairs = [(p, e.answer) for p, e in zip(format_prompts(tok, ROWS, "chat"), ROWS, strict=True)]
    before = answer_scores(model, tok, [p for p, _ in pairs], [a for _, a in pairs], 2, 512)
    cfg = FinetuneConfig(method="full", max_steps=1, lr=1e-3, batch_size=2, precision="fp32", add_eos=False)
    res = finetune(model, tok, pairs, cfg)
    # the first step's loss (before any update) is the mean NLL of the replies' tokens, nothing else
    want = sum(s.nll for s in before) / sum(s.n_tokens for s in before)
    assert res.losses[0] == pytest.approx(want, rel=1e-4)


def test_per_candidate_prompt_formats_reach_their_units(qa_file, tmp_path):
    from damoc.io.tasks import load_task
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import DataStage, _write_examples, plan_units
    from damoc.select.records import DataRecord

    task = load_task(qa_file)
    rec = DataRecord(task="t", fingerprint="f", n_train=1, n_dev=1, n_proxy_train=1, config_hash="d")
    stage = DataStage(rec, *(tmp_path / n for n in ("a", "b", "c", "d", "e")))
    _write_examples(stage.train, task.train)
    _write_examples(stage.dev, task.dev)
    cfg = SelectConfig.model_validate(
        {
            "task": {"path": str(qa_file)},
            "candidates": ["a", "b"],
            "eval": {"prompt_format": "auto", "prompt_formats": {"b": "raw"}},
            "validate": {"enabled": True},
        }
    )
    units = plan_units(cfg, task, stage, tmp_path)
    got = {(u.candidate, u.method): u.eval.prompt_format for u in units}
    assert {v for (c, _), v in got.items() if c == "a"} == {"auto"}  # proxy, baselines and truth alike
    assert {v for (c, _), v in got.items() if c == "b"} == {"raw"}
    assert all(u.eval.prompt_formats == {} for u in units)
    with pytest.raises(ValueError, match="not a candidate"):
        SelectConfig.model_validate(
            {"task": {"path": "x"}, "candidates": ["a"], "eval": {"prompt_formats": {"z": "chat"}}}
        )
