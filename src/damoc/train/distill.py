"""Self-data distillation (FineScope): the unpruned model answers the curated prompts, the pruned model
is fine-tuned on those answers, so it relearns the source model's own distribution on the domain.

:func:`generate_answers` is batched greedy decoding (left padding); :func:`self_distill` chains it
with :func:`damoc.train.finetune.finetune`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from pydantic import Field

from damoc.config import StrictModel
from damoc.evaluate.likelihood import left_pad
from damoc.logging_utils import progress
from damoc.train.finetune import FinetuneConfig, FinetuneResult, finetune

LOG = logging.getLogger(__name__)


class GenerationConfig(StrictModel):
    """Greedy decoding of the teacher's answers."""

    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(8, ge=1)
    max_prompt_length: int = Field(384, ge=8)  # prompts are cut from the left to this many tokens
    # The answer ends at the first of these strings (the model going on to a new question, etc.).
    stop: list[str] = ["\n\n", "\nQuestion:", "\nContext:", "\nAnswer:"]


class DistillConfig(StrictModel):
    generation: GenerationConfig = GenerationConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    min_answer_chars: int = Field(1, ge=0)  # drop pairs whose teacher answer is shorter than this


@dataclass
class DistillResult:
    model: torch.nn.Module
    answers: list[str]
    kept: int  # pairs trained on (teacher answers long enough)
    generate_wall_s: float
    train: FinetuneResult
    stats: dict = field(default_factory=dict)


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


def self_distill(
    teacher,
    student,
    tok,
    prompts: Sequence[str],
    cfg: DistillConfig | None = None,
    answers: Sequence[str] | None = None,
) -> DistillResult:
    """Fine-tune ``student`` on ``teacher``'s greedy answers to ``prompts`` (or on given ``answers``).

    ``tok`` is the teacher's tokenizer, used for both (a pruned student keeps its source's tokenizer).
    """
    cfg = cfg or DistillConfig()
    t0 = time.perf_counter()
    if answers is None:
        answers = generate_answers(teacher, tok, prompts, cfg.generation)
    gen_s = time.perf_counter() - t0
    pairs = [(p, a) for p, a in zip(prompts, answers, strict=True) if len(a) >= cfg.min_answer_chars]
    if not pairs:
        raise ValueError(
            "the teacher gave no usable answer; raise generation.max_new_tokens or check stop strings"
        )
    LOG.info("self-distillation: %d/%d teacher answers kept", len(pairs), len(prompts))
    res = finetune(student, tok, pairs, cfg.finetune, desc="self-distill")
    mean_chars = sum(len(a) for a in answers) / max(1, len(answers))
    return DistillResult(
        model=res.model,
        answers=list(answers),
        kept=len(pairs),
        generate_wall_s=gen_s,
        train=res,
        stats={"mean_answer_chars": mean_chars, "empty_answers": sum(1 for a in answers if not a)},
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
    from damoc.io.files import atomic_output_dir, check_output_dir, write_json_atomic, write_jsonl_atomic
    from damoc.io.tasks import load_examples
    from damoc.model.arch import load_model

    cfg = cfg or DistillConfig()
    check_output_dir(out, overwrite)
    examples = load_examples(data)[:max_rows]
    teacher, tok = load_model(teacher_name)
    student, _ = load_model(student_name)
    prompts = [e.prompt() for e in examples]
    res = self_distill(teacher, student, tok, prompts, cfg)
    with atomic_output_dir(out, overwrite) as tmp:
        res.model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        write_jsonl_atomic(
            tmp / "teacher_answers.jsonl",
            [
                {"id": e.id, "prompt": p, "answer": a}
                for e, p, a in zip(examples, prompts, res.answers, strict=True)
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
