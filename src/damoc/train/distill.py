"""Self-data distillation (FineScope): the unpruned model answers the curated prompts, the pruned model
is fine-tuned on those answers, so it relearns the source model's own distribution on the domain.

Two teacher modes (``DistillConfig.teacher_mode``):

- ``answer``: the teacher answers the prompt alone (greedy);
- ``rewrite_reference``: the teacher sees the prompt *and* the gold answer and writes that answer in its
  own words (Thangarasa et al. 2024, "Self-Data Distillation for Recovering Quality in Pruned LLMs").
  When the rewrite loses the answer (too short, too little of the gold answer's content, or a
  different final decision word such as yes/no/maybe), the gold answer is used instead; each row
  records whether that fallback was taken and why.

Optionally (``kl_weight`` > 0) the student also matches the teacher's soft targets: KL(teacher ||
student) over the distilled answer tokens is added to the cross-entropy. The term is added by a
forward hook on the student, so the training loop stays the one of :func:`damoc.train.finetune.finetune`.

:func:`generate_answers` is batched greedy decoding (left padding); :func:`self_distill` chains it
with :func:`damoc.train.finetune.finetune`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from damoc.config import StrictModel
from damoc.evaluate.likelihood import left_pad
from damoc.io.files import atomic_output_dir, check_output_dir, write_json_atomic, write_jsonl_atomic
from damoc.io.tasks import load_examples
from damoc.logging_utils import progress
from damoc.model.arch import load_model, save_model
from damoc.train.finetune import FinetuneConfig, FinetuneResult, finetune

LOG = logging.getLogger(__name__)

TeacherMode = Literal["answer", "rewrite_reference"]


class GenerationConfig(StrictModel):
    """Greedy decoding of the teacher's answers."""

    max_new_tokens: int = Field(64, ge=1)  # most tokens generated per teacher answer
    batch_size: int = Field(8, ge=1)  # prompts per generate call
    max_prompt_length: int = Field(384, ge=8)  # prompts are cut from the left to this many tokens
    # The answer ends at the first of these strings (the model going on to a new question, etc.).
    stop: list[str] = ["\n\n", "\nQuestion:", "\nContext:", "\nAnswer:"]


class RewriteConfig(StrictModel):
    """``rewrite_reference`` mode: how the teacher is asked to restate the gold answer, and when its
    rewrite is rejected in favour of the gold answer."""

    # {prompt}: the row's prompt (ends with "Answer:"); {reference}: the gold answer.
    template: str = (
        "{prompt}\nReference answer: {reference}\nRewrite the reference answer in your own words.\nAnswer:"
    )
    min_chars: int = Field(8, ge=0)  # a shorter rewrite falls back to the gold answer
    # Share of the gold answer's content words (>= min_word_chars letters) the rewrite must contain.
    min_gold_recall: float = Field(0.3, ge=0.0, le=1.0)
    min_word_chars: int = Field(4, ge=1)  # gold words this long or longer are content words (min_gold_recall)
    # Decision words: if the rewrite's last one differs from the gold's (the gold text's last one, else
    # the row's label), the rewrite changed the answer and falls back.
    decision_words: list[str] = ["yes", "no", "maybe"]
    # Extra headroom for the rewrite over generation.max_new_tokens (rewrites restate long answers).
    max_new_tokens: int | None = Field(None, ge=1)


class DistillConfig(StrictModel):
    generation: GenerationConfig = GenerationConfig()  # how the teacher decodes (GenerationConfig)
    finetune: FinetuneConfig = FinetuneConfig()  # the student's fine-tune on the teacher's answers
    min_answer_chars: int = Field(1, ge=0)  # drop pairs whose teacher answer is shorter than this
    teacher_mode: TeacherMode = (
        "rewrite_reference"  # measured better than "answer" (benchmarks/results/finescope.md)
    )
    rewrite: RewriteConfig = RewriteConfig()  # teacher_mode rewrite_reference: the prompt and its checks
    # Weight of KL(teacher || student) per answer token, added to the cross-entropy (0 = off). 1.0 won
    # back more of the pruning loss than 0 in every FineScope run (benchmarks/results/finescope.md),
    # at ~1.75x the training time of the distillation stage (one teacher forward per batch).
    kl_weight: float = Field(1.0, ge=0.0)
    kl_temperature: float = Field(1.0, gt=0.0)  # softmax temperature T of the KL term (scaled by T^2)


@dataclass
class DistillRow:
    teacher_output: str  # what the teacher generated
    answer: str  # what the student is trained on
    fallback: bool = False  # the gold answer replaced a rewrite that lost it
    reason: str | None = None  # why the rewrite was rejected


@dataclass
class DistillResult:
    model: torch.nn.Module
    answers: list[str]  # the answers trained on (after any fallback)
    kept: int  # pairs trained on (teacher answers long enough)
    generate_wall_s: float
    train: FinetuneResult
    stats: dict = field(default_factory=dict)
    rows: list[DistillRow] = field(default_factory=list)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first stop string, stripped."""
    end = len(text)
    for s in stops:
        if s:
            i = text.find(s)
            if 0 <= i < end:
                end = i
    return text[:end].strip()


@torch.no_grad()
def generate_answers(model, tok, prompts: Sequence[str], cfg: GenerationConfig | None = None) -> list[str]:
    """Greedy answers to ``prompts``, batched by length with left padding, cut at ``cfg.stop``."""
    cfg = cfg or GenerationConfig()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = [tok(p, add_special_tokens=True)["input_ids"][-cfg.max_prompt_length :] for p in prompts]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    out: list[str] = [""] * len(enc)
    dev = next(model.parameters()).device
    model.eval()
    # Stop decoding a row once it emits a stop string (the answer is cut there anyway).
    stops = {"stop_strings": [s for s in cfg.stop if s], "tokenizer": tok} if any(cfg.stop) else {}
    for b in progress(range(0, len(order), cfg.batch_size), desc="teacher answers", unit="batch"):
        idx = order[b : b + cfg.batch_size]
        ids, mask = left_pad([enc[i] for i in idx], pad)
        width = ids.shape[1]
        gen = model.generate(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            max_new_tokens=cfg.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            **stops,
        )
        for j, i in enumerate(idx):
            text = tok.decode(gen[j, width:], skip_special_tokens=True)
            out[i] = cut_at_stop(text, cfg.stop)
    return out


# ---------------------------------------------------------------- rewrite of the reference, with fallback

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def decision_word(text: str, words: Sequence[str]) -> str | None:
    """The last of ``words`` that occurs as a whole word in ``text`` (case-insensitive), or None."""
    wanted = {w.lower() for w in words}
    found = [w for w in _words(text) if w in wanted]
    return found[-1] if found else None


def rewrite_problem(rewrite: str, gold: str, label: str | None, cfg: RewriteConfig) -> str | None:
    """Why ``rewrite`` cannot stand for ``gold`` (None when it can)."""
    if len(rewrite.strip()) < max(1, cfg.min_chars):
        return "empty" if not rewrite.strip() else "too short"
    want = decision_word(gold, cfg.decision_words)
    if want is None and label is not None and label.lower() in {w.lower() for w in cfg.decision_words}:
        want = label.lower()
    got = decision_word(rewrite, cfg.decision_words)
    if want is not None and got is not None and got != want:
        return f"decision word '{got}' instead of '{want}'"
    content = {w for w in _words(gold) if len(w) >= cfg.min_word_chars}
    if content:
        recall = len(content & set(_words(rewrite))) / len(content)
        if recall < cfg.min_gold_recall:
            return f"gold content recall {recall:.2f} < {cfg.min_gold_recall}"
    return None


def rewrite_prompts(prompts: Sequence[str], references: Sequence[str], cfg: RewriteConfig) -> list[str]:
    return [
        cfg.template.format(prompt=p, reference=r.strip()) for p, r in zip(prompts, references, strict=True)
    ]


def with_fallback(
    outputs: Sequence[str], references: Sequence[str], labels: Sequence[str | None], cfg: RewriteConfig
) -> list[DistillRow]:
    """One row per rewrite: the rewrite itself, or the gold answer when the rewrite lost it."""
    rows = []
    for out, ref, lab in zip(outputs, references, labels, strict=True):
        why = rewrite_problem(out, ref, lab, cfg)
        rows.append(DistillRow(out, ref.strip() if why else out, why is not None, why))
    return rows


def teacher_rows(
    teacher,
    tok,
    prompts: Sequence[str],
    cfg: DistillConfig,
    references: Sequence[str] | None = None,
    labels: Sequence[str | None] | None = None,
) -> list[DistillRow]:
    """The teacher's answer per prompt, in ``cfg.teacher_mode``."""
    if cfg.teacher_mode == "answer":
        return [DistillRow(a, a) for a in generate_answers(teacher, tok, prompts, cfg.generation)]
    if references is None:
        raise ValueError("teacher_mode 'rewrite_reference' needs the gold answers (references)")
    gen = cfg.generation
    if cfg.rewrite.max_new_tokens is not None:
        gen = gen.model_copy(update={"max_new_tokens": cfg.rewrite.max_new_tokens})
    outs = generate_answers(teacher, tok, rewrite_prompts(prompts, references, cfg.rewrite), gen)
    return with_fallback(outs, references, labels or [None] * len(outs), cfg.rewrite)


# ---------------------------------------------------------------- soft targets


def token_kl(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, int]:
    """Summed KL(teacher || student) over the positions where ``mask`` is true, and their count.

    Logits are (B, T, V) at the same positions; the sum is scaled by T^2 (the usual distillation scale).
    """
    lt = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    ls = F.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (lt.exp() * (lt - ls)).sum(-1)
    m = mask.to(kl.device)
    return (kl * m).sum() * temperature**2, int(m.sum())


@contextmanager
def teacher_kl_term(student, teacher, weight: float, temperature: float = 1.0) -> Iterator[None]:
    """While active, every forward of ``student`` with ``labels`` adds ``weight`` x mean KL(teacher ||
    student) over the answer tokens (labels != -100) to its loss."""
    if weight <= 0:
        yield
        return

    def hook(module, args, kwargs, out):
        labels = kwargs.get("labels")
        if labels is None or getattr(out, "loss", None) is None:
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        with torch.no_grad():
            t = teacher(input_ids=ids, attention_mask=kwargs.get("attention_mask")).logits
        mask = labels[:, 1:] != -100
        kl_sum, n = token_kl(t[:, :-1], out.logits[:, :-1], mask, temperature)
        out.loss = out.loss + weight * kl_sum / max(1, n)
        return out

    teacher.eval()
    handle = student.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def self_distill(
    teacher,
    student,
    tok,
    prompts: Sequence[str],
    cfg: DistillConfig | None = None,
    answers: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
    labels: Sequence[str | None] | None = None,
    rows: Sequence[DistillRow] | None = None,
) -> DistillResult:
    """Fine-tune ``student`` on ``teacher``'s answers to ``prompts`` (or on given ``answers``, or on the
    answers of ``rows`` made earlier by :func:`teacher_rows`).

    ``references`` (gold answers) and ``labels`` are used by ``teacher_mode: rewrite_reference``.
    ``tok`` is the teacher's tokenizer, used for both (a pruned student keeps its source's tokenizer).
    """
    cfg = cfg or DistillConfig()
    t0 = time.perf_counter()
    if rows is not None:
        rows = list(rows)
    elif answers is not None:
        rows = [DistillRow(a, a) for a in answers]
    else:
        rows = teacher_rows(teacher, tok, prompts, cfg, references, labels)
    gen_s = time.perf_counter() - t0
    answers = [r.answer for r in rows]
    pairs = [(p, a) for p, a in zip(prompts, answers, strict=True) if len(a) >= cfg.min_answer_chars]
    if not pairs:
        raise ValueError(
            "the teacher gave no usable answer; raise generation.max_new_tokens or check stop strings"
        )
    n_fb = sum(r.fallback for r in rows)
    LOG.info(
        "self-distillation (%s): %d/%d answers kept, %d gold fallbacks",
        cfg.teacher_mode,
        len(pairs),
        len(prompts),
        n_fb,
    )
    ft = cfg.finetune
    if cfg.kl_weight > 0:  # the KL term hooks the model's own loss over full logits
        ft = ft.model_copy(update={"head_positions": "all"})
    with teacher_kl_term(student, teacher, cfg.kl_weight, cfg.kl_temperature):
        res = finetune(student, tok, pairs, ft, desc="self-distill")
    mean_chars = sum(len(a) for a in answers) / max(1, len(answers))
    return DistillResult(
        model=res.model,
        answers=answers,
        kept=len(pairs),
        generate_wall_s=gen_s,
        train=res,
        stats={
            "teacher_mode": cfg.teacher_mode,
            "mean_answer_chars": mean_chars,
            "empty_answers": sum(1 for a in answers if not a),
            "fallbacks": n_fb,
            "kl_weight": cfg.kl_weight,
        },
        rows=rows,
    )


def distill_to_dir(
    teacher_name: str,
    student_name: str,
    data: str,
    out: str,
    cfg: DistillConfig | None = None,
    overwrite: bool = False,
    max_rows: int | None = None,
) -> DistillResult:
    """Load teacher and student, self-distil on the prompts of ``data``, write the student checkpoint,
    the teacher's answers (``teacher_answers.jsonl``) and ``distill.json``."""
    cfg = cfg or DistillConfig()
    check_output_dir(out, overwrite)
    examples = load_examples(data)[:max_rows]
    teacher, tok = load_model(teacher_name)
    student, _ = load_model(student_name)
    prompts = [e.prompt() for e in examples]
    res = self_distill(
        teacher,
        student,
        tok,
        prompts,
        cfg,
        references=[e.answer for e in examples],
        labels=[e.label for e in examples],
    )
    with atomic_output_dir(out, overwrite) as tmp:
        save_model(res.model, tmp)  # in the source's dtype (damoc.model.arch)
        tok.save_pretrained(tmp)
        write_jsonl_atomic(
            tmp / "teacher_answers.jsonl",
            [
                {"id": e.id, "prompt": p, **asdict(r)}
                for e, p, r in zip(examples, prompts, res.rows, strict=True)
            ],
        )
        write_json_atomic(
            tmp / "distill.json",
            {
                "teacher": str(teacher_name),
                "student": str(student_name),
                "data": str(data),
                "rows": len(examples),
                "kept": res.kept,
                "generate_wall_s": res.generate_wall_s,
                "train_wall_s": res.train.wall_s,
                "steps": res.train.steps,
                "tokens": res.train.tokens,
                "final_loss": res.train.losses[-1] if res.train.losses else None,
                **res.stats,
                "config": cfg.model_dump(),
            },
        )
    return res
