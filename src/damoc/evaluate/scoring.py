"""Score a model on a task's dev examples with a registered metric, zero-shot or few-shot.

- likelihood metrics: batched teacher-forced answer NLL (``answer_scores``), pooled over examples;
- label accuracy: the label with the highest likelihood after the prompt;
- option accuracy (multiple choice): each example's own options scored by likelihood after the prompt;
- generation metrics: batched greedy decoding (left-padded), cut at the first new line, then EM/F1/ROUGE-L.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.evaluate.likelihood import answer_scores, encode_pair, left_pad
from damoc.evaluate.metrics import Metric, accuracy, get_metric, text_metric
from damoc.hardware import Precision, resolve_precision
from damoc.io.prompts import PromptFormat, format_prompts
from damoc.io.tasks import Example
from damoc.logging_utils import progress
from damoc.model.arch import text_config


class EvalConfig(StrictModel):
    """How candidates are scored on the dev split (the same for every candidate and method)."""

    metric: str = "answer_bpb"  # the registered metric the leaderboard ranks by (docs/metrics.md)
    batch_size: int = Field(8, ge=1)  # dev rows per forward pass (shrunk to fit logits_budget_mb)
    max_length: int = Field(256, ge=2)  # prompt + answer tokens; the prompt is cut from the left
    max_new_tokens: int = Field(32, ge=1)  # generation metrics
    stop_at_newline: bool = True  # generation metrics: the answer ends at the first new line
    shot_context_chars: int = Field(300, ge=0)  # few-shot: each shot's context is cut to this many characters
    few_shot_max_length: int = Field(768, ge=2)  # few-shot prompts are longer
    alias_field: str | None = None  # meta field holding extra accepted answers (a list), e.g. answer_spans
    options_field: str = "options"  # option_acc: meta field holding each example's options (a list)
    # option_acc: how an option's likelihood is compared across options of different lengths: "byte" sums
    # its NLL and divides by its UTF-8 bytes (no bias towards short options, same for every tokenizer),
    # "none" compares the summed NLL
    option_norm: Literal["byte", "none"] = "byte"
    logits_budget_mb: int = Field(
        3000, ge=1
    )  # the batch shrinks so batch × length × vocab logits (×3 copies) fit this
    # fp32, bf16 or auto. bf16: the scoring matmuls run under bf16 autocast (weights stay as loaded); auto: bf16 only where the
    # device runs it natively (damoc.hardware: CUDA, CPUs with AVX512-BF16 or AMX), fp32 elsewhere, where
    # bf16 is emulated and slower. Its speed and score shift on the zoo models:
    # benchmarks/results/selection.md. Settings hashes leave fp32 out, as when it was the default, so
    # records made then stay valid where auto resolves to it.
    precision: Precision = Field("auto", json_schema_extra={"hash_default": "fp32"})
    # raw: "Context/Question/Answer:" text; chat: the tokenizer's chat template; auto: chat where the model
    # has a template (damoc.io.prompts)
    prompt_format: PromptFormat = "raw"


@dataclass
class TaskScore:
    """A model's score on a set of examples."""

    metric: str
    value: float
    higher_is_better: bool
    n_examples: int
    tokens: int  # tokens run through the model
    wall_s: float
    per_example: list[float] = field(default_factory=list)
    predictions: list[str] | None = None


def target(example: Example, metric: Metric) -> str:
    """What the model should produce for ``example``: its label for label metrics, else its answer."""
    if metric.needs_labels:
        if example.label is None:
            raise DamocError(f"example '{example.id}' has no label, which metric '{metric.name}' needs")
        return example.label
    return example.answer


def check_metric_fits(
    metric_name: str, examples: Sequence[Example], options_field: str = "options"
) -> Metric:
    """The metric, or a one-line error when the task cannot be scored with it."""
    metric = get_metric(metric_name)
    if metric.kind == "options":
        for e in examples:
            example_options(e, options_field)
    if metric.needs_labels:
        missing = sum(1 for e in examples if e.label is None)
        if missing:
            raise DamocError(
                f"metric '{metric.name}' needs a label on every example but {missing} of {len(examples)} "
                f"have none (map the label column with task.fields.label, or pick another metric)"
            )
        if len({e.label for e in examples}) < 2 and len(examples) > 1:
            raise DamocError(f"metric '{metric.name}' needs at least two distinct labels in the task")
    return metric


def example_options(example: Example, options_field: str) -> list[str]:
    """The options of a multiple-choice example (its gold answer among them), or a one-line error."""
    opts = example.meta.get(options_field)
    if not isinstance(opts, list) or len(opts) < 2:
        raise DamocError(
            f"example '{example.id}' has no list of at least two options in field '{options_field}' "
            f"(metric option_acc; set eval.options_field)"
        )
    opts = [str(o) for o in opts]
    if example.answer not in opts:
        raise DamocError(f"example '{example.id}': its answer is not one of its options")
    return opts


def shot_example(example: Example, context_chars: int) -> Example:
    """A few-shot example with its context cut to ``context_chars`` characters (at a word)."""
    ctx = example.context
    if len(ctx) > context_chars:
        ctx = ctx[:context_chars].rsplit(" ", 1)[0] + " ..."
    return Example(id=example.id, question=example.question, answer=example.answer, context=ctx)


def shot_text(example: Example, metric: Metric, context_chars: int) -> str:
    return f"{shot_example(example, context_chars).prompt()} {target(example, metric)}"


def build_prompts(
    examples: Sequence[Example],
    metric: Metric,
    shots: Sequence[Example] = (),
    context_chars: int = 300,
    tok=None,
    prompt_format: str = "raw",
) -> list[str]:
    """Prompts for ``examples`` in ``prompt_format`` (``tok`` renders chat); with ``shots``, each prompt
    starts with the solved shots."""
    solved = [(shot_example(s, context_chars), target(s, metric)) for s in shots]
    return format_prompts(tok, examples, prompt_format, solved)


def _pair_tokens(tok, prompts: Sequence[str], answers: Sequence[str], max_length: int) -> int:
    return sum(len(encode_pair(tok, p, a, max_length)[0]) for p, a in zip(prompts, answers, strict=True))


def effective_batch(model, cfg: EvalConfig, max_length: int) -> int:
    """``cfg.batch_size``, shrunk so the logits of a batch fit ``cfg.logits_budget_mb`` (large vocabularies)."""
    vocab = int(getattr(text_config(model.config), "vocab_size", 0) or 0)
    if vocab <= 0:
        return cfg.batch_size
    per_row = max_length * vocab * 4 * 3  # fp32 logits, the shifted copy and log-softmax
    return max(1, min(cfg.batch_size, cfg.logits_budget_mb * 2**20 // per_row))


def _likelihood(model, tok, prompts, answers, metric: Metric, cfg: EvalConfig, max_length: int):
    bs = effective_batch(model, cfg, max_length)
    scores = answer_scores(model, tok, prompts, answers, bs, max_length, desc=metric.name)
    nll = sum(s.nll for s in scores)
    if metric.name == "answer_bpb":
        value = nll / math.log(2) / max(1, sum(s.n_bytes for s in scores))
        per = [s.bits_per_byte for s in scores]
    else:
        per_tok = nll / max(1, sum(s.n_tokens for s in scores))
        value = math.exp(per_tok) if metric.name == "perplexity" else per_tok
        per = [s.nll_per_token for s in scores]
    return value, per, None, _pair_tokens(tok, prompts, answers, max_length)


def _labels(model, tok, prompts, golds, labels: Sequence[str], cfg: EvalConfig, max_length: int):
    """Pick, per prompt, the label with the lowest summed NLL."""
    flat_p = [p for p in prompts for _ in labels]
    flat_a = [lab for _ in prompts for lab in labels]
    bs = effective_batch(model, cfg, max_length)
    scores = answer_scores(model, tok, flat_p, flat_a, bs, max_length, desc="labels")
    preds = []
    for i in range(len(prompts)):
        row = scores[i * len(labels) : (i + 1) * len(labels)]
        preds.append(labels[min(range(len(labels)), key=lambda j: row[j].nll)])
    per = accuracy(preds, golds)
    return sum(per) / len(per), per, preds, _pair_tokens(tok, flat_p, flat_a, max_length)


def _options(model, tok, prompts, examples, cfg: EvalConfig, max_length: int):
    """Per example, the most likely of its own options (NLL per byte, or summed; ``cfg.option_norm``)."""
    opts = [example_options(e, cfg.options_field) for e in examples]
    flat_p = [p for p, o in zip(prompts, opts, strict=True) for _ in o]
    flat_a = [a for o in opts for a in o]
    bs = effective_batch(model, cfg, max_length)
    scores = answer_scores(model, tok, flat_p, flat_a, bs, max_length, desc="options")
    preds, start = [], 0
    for o in opts:
        row = scores[start : start + len(o)]
        start += len(o)
        cost = [s.nll / max(1, s.n_bytes) if cfg.option_norm == "byte" else s.nll for s in row]
        preds.append(o[min(range(len(o)), key=cost.__getitem__)])
    per = [float(p == e.answer) for p, e in zip(preds, examples, strict=True)]
    return sum(per) / len(per), per, preds, _pair_tokens(tok, flat_p, flat_a, max_length)


class _LineDone:
    """Stops a row once its answer line is complete: a new line after some non-blank text (leading blank
    lines are skipped: the text kept is ``strip()``-ed first). The kept text is unchanged; a batch of short
    answers just no longer runs to ``max_new_tokens``."""

    def __init__(self, tok, width: int):
        self.tok, self.width = tok, width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tok.batch_decode(input_ids[:, self.width :], skip_special_tokens=True)
        return torch.tensor([("\n" in t.lstrip()) for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_greedy(
    model,
    tok,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 8,
    max_length: int = 256,
    stop_at_newline: bool = True,
) -> tuple[list[str], int]:
    """Greedy continuations of ``prompts`` (batched, left-padded); returns (texts, tokens processed)."""
    room = max(1, max_length - max_new_tokens)
    enc = [tok(p, add_special_tokens=True)["input_ids"][-room:] for p in prompts]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    dev = next(model.parameters()).device
    out: list[str] = [""] * len(enc)
    tokens = 0
    for b in progress(range(0, len(order), batch_size), desc="generating", unit="batch"):
        idx = order[b : b + batch_size]
        ids, mask = left_pad([enc[i] for i in idx], pad)
        width = ids.shape[1]
        gen = model.generate(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
            stopping_criteria=[_LineDone(tok, width)] if stop_at_newline else None,
        )
        new = gen[:, width:].cpu()
        tokens += int(mask.sum()) + int((new != pad).sum())
        for j, i in enumerate(idx):
            text = tok.decode(new[j], skip_special_tokens=True)
            if stop_at_newline:
                text = text.strip().split("\n", 1)[0]
            out[i] = text.strip()
    return out, tokens


def _golds(example: Example, alias_field: str | None) -> list[str]:
    golds = [example.answer]
    extra = example.meta.get(alias_field) if alias_field else None
    if isinstance(extra, list):
        golds += [str(x) for x in extra if str(x).strip()]
    return golds


def score_examples(
    model,
    tok,
    examples: Sequence[Example],
    cfg: EvalConfig | None = None,
    shots: Sequence[Example] = (),
    labels: Sequence[str] | None = None,
) -> TaskScore:
    """Score ``model`` on ``examples`` with ``cfg.metric`` (few-shot when ``shots`` are given)."""
    cfg = cfg or EvalConfig()
    if not examples:
        raise DamocError("no examples to score")
    metric = check_metric_fits(cfg.metric, examples, cfg.options_field)
    max_length = cfg.few_shot_max_length if shots else cfg.max_length
    prompts = build_prompts(examples, metric, shots, cfg.shot_context_chars, tok, cfg.prompt_format)
    t0 = time.perf_counter()
    was_training = model.training
    model.eval()
    with scoring_precision(model, cfg.precision):
        value, per, preds, tokens = _score(model, tok, examples, prompts, metric, cfg, max_length, labels)
    model.train(was_training)
    return TaskScore(
        metric=metric.name,
        value=float(value),
        higher_is_better=metric.higher_is_better,
        n_examples=len(examples),
        tokens=int(tokens),
        wall_s=time.perf_counter() - t0,
        per_example=[float(x) for x in per],
        predictions=preds,
    )


def scoring_precision(model, precision: str):
    """The autocast context scoring runs in: bf16 matmuls for ``"bf16"``, a no-op for ``"fp32"``; ``"auto"``
    is bf16 where the model's device runs it natively."""
    dev = next(model.parameters()).device
    bf16 = resolve_precision(precision, str(dev)) == "bf16"
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)


def _score(model, tok, examples, prompts, metric: Metric, cfg: EvalConfig, max_length: int, labels):
    """``(value, per-example scores, predictions, tokens)`` of one scoring pass."""
    if metric.kind == "likelihood":
        answers = [target(e, metric) for e in examples]
        value, per, preds, tokens = _likelihood(model, tok, prompts, answers, metric, cfg, max_length)
    elif metric.kind == "label":
        golds = [target(e, metric) for e in examples]
        labs = sorted(set(labels) if labels else set(golds))
        value, per, preds, tokens = _labels(model, tok, prompts, golds, labs, cfg, max_length)
    elif metric.kind == "options":
        value, per, preds, tokens = _options(model, tok, prompts, examples, cfg, max_length)
    else:
        bs = effective_batch(model, cfg, max_length)
        preds, tokens = generate_greedy(
            model, tok, prompts, cfg.max_new_tokens, bs, max_length, cfg.stop_at_newline
        )
        per = text_metric(metric.name, preds, [_golds(e, cfg.alias_field) for e in examples])
        value = sum(per) / len(per)
    return value, per, preds, tokens
