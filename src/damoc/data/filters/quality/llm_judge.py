"""Q4: LLM-as-judge rating, AlpaGasus-style (Chen et al. 2024): a local instruct model scores each row."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from damoc.data.filters.base import (
    FilterContext,
    FilterOptions,
    Judge,
    QualityFilter,
    load_reference_lm,
)
from damoc.io.tasks import Example
from damoc.logging_utils import progress

DEFAULT_TEMPLATE = (
    "Rate how accurate and helpful the response is for the instruction and the input below.\n\n"
    "Instruction: {question}\n"
    "Input: {context}\n"
    "Response: {answer}\n\n"
    "Give a score from 0 to {scale} (higher is better). "
    "Reply with the score on the first line, then one line explaining it.\nScore:"
)


class LLMJudgeOptions(FilterOptions):
    template: str = DEFAULT_TEMPLATE  # fields: {question}, {context}, {answer}, {scale}
    scale: float = 5.0  # scores outside [0, scale] count as unparsable
    # first match (group 1) in the reply is the score; skips echoed ranges ("0 to 5") and percentages
    score_pattern: str = r"(?<![\d.])(?<!to )(?<![-–])(\d+(?:\.\d+)?)(?!\s*(?:to\b|[-–%]|\d))"
    unparsable_score: float = -1.0  # given to replies with no valid score: ranked after every parsed one
    max_context_chars: int = 2000  # context shown to the judge is cut to this
    max_new_tokens: int = 8  # tokens the judge may generate per reply (greedy); the score comes first
    batch_size: int = 4  # prompts per generate call
    max_prompt_tokens: int = 768  # judge prompt is truncated to this many tokens
    chat_template: bool = True  # wrap the prompt in the judge tokenizer's chat template when it has one


def parse_score(reply: str, pattern: str, scale: float) -> float | None:
    """The first number in ``reply`` that lies in [0, scale], or None."""
    for m in re.finditer(pattern, reply or ""):
        try:
            v = float(m.group(1))
        except (ValueError, IndexError):
            continue
        if 0.0 <= v <= scale:
            return v
    return None


def hf_judge(model, tok, opts: LLMJudgeOptions) -> Judge:
    """A judge function backed by a local causal LM: greedy, short, batched, left-padded."""

    def judge(prompts: list[str]) -> list[str]:
        import torch

        if opts.chat_template and getattr(tok, "chat_template", None):
            prompts = [
                tok.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in prompts
            ]
        side = tok.padding_side
        tok.padding_side = "left"
        out: list[str] = []
        try:
            for b in progress(range(0, len(prompts), opts.batch_size), desc="llm-judge", unit="batch"):
                chunk = prompts[b : b + opts.batch_size]
                enc = tok(
                    chunk,
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=opts.max_prompt_tokens,
                )
                enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
                with torch.no_grad():
                    gen = model.generate(
                        **enc,
                        max_new_tokens=opts.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                    )
                out.extend(tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        finally:
            tok.padding_side = side
        return out

    return judge


class LLMJudgeFilter(QualityFilter):
    """A local instruct model rates each row 0-5 (AlpaGasus prompt); unparsable replies rank last."""

    name = "llm-judge"
    code = "Q4"
    Options = LLMJudgeOptions
    score_name = "judge_score"

    def prompts(self, examples: list[Example]) -> list[str]:
        o = self.options
        scale = int(o.scale) if float(o.scale).is_integer() else o.scale
        return [
            o.template.format(
                question=e.question,
                context=e.context[: o.max_context_chars] or "(none)",
                answer=e.answer,
                scale=scale,
            )
            for e in examples
        ]

    def judge(self, ctx: FilterContext) -> Judge:
        if ctx.judge is not None:
            return ctx.judge
        model, tok = load_reference_lm(ctx.judge_model or ctx.reference_model)
        return hf_judge(model, tok, self.options)

    def scores(self, examples: list[Example], ctx: FilterContext) -> tuple[np.ndarray, np.ndarray]:
        o = self.options
        replies = list(self.judge(ctx)(self.prompts(examples)))
        if len(replies) != len(examples):
            raise RuntimeError(f"the judge returned {len(replies)} replies for {len(examples)} prompts")
        parsed = [parse_score(r, o.score_pattern, o.scale) for r in replies]
        self._unparsable = sum(p is None for p in parsed)
        s = np.array([o.unparsable_score if p is None else p for p in parsed], dtype=np.float64)
        return s, s

    def info(self, raw: np.ndarray, quality: np.ndarray) -> dict[str, Any]:
        return {"unparsable": int(self._unparsable)}
