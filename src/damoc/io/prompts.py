"""Prompt formats: the raw ``Context:/Question:/Answer:`` text, or the model's own chat template.

- ``raw``: ``Context: ...\\nQuestion: ...\\nAnswer:``, the answer follows after one space;
- ``chat``: the context and question as the user's turn, rendered by the tokenizer's chat template with
  the assistant's turn opened (``add_generation_prompt``); the answer is the assistant's reply, so a
  fine-tune's loss and a score read the reply's tokens only, never the template's;
- ``auto``: ``chat`` where the tokenizer has a chat template, ``raw`` where it has none (base models).

Few-shot examples become earlier user/assistant turns in ``chat``, solved blocks before the question in
``raw``. Every candidate of a run is fine-tuned and scored in the format chosen for it, proxy, baselines
and ground truth alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from damoc.errors import DamocError
from damoc.io.tasks import Example

PromptFormat = Literal["auto", "raw", "chat"]


def has_chat_template(tok) -> bool:
    return bool(getattr(tok, "chat_template", None))


def resolve_format(fmt: str, tok) -> str:
    """``raw`` or ``chat`` for this tokenizer (``chat`` without a template is a one-line error)."""
    if fmt == "auto":
        return "chat" if has_chat_template(tok) else "raw"
    if fmt == "chat" and not has_chat_template(tok):
        raise DamocError(
            "prompt_format 'chat': this model's tokenizer has no chat template (use raw or auto)"
        )
    if fmt not in ("raw", "chat"):
        raise DamocError(f"unknown prompt_format '{fmt}' (use auto, raw or chat)")
    return fmt


def _adds_bos(tok) -> bool:
    """Whether encoding with special tokens puts the BOS token first."""
    bos = getattr(tok, "bos_token_id", None)
    return bos is not None and tok("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def chat_prompt(tok, user: str, turns: Sequence[tuple[str, str]] = ()) -> str:
    """The chat-template text of earlier ``turns`` (user, assistant) and the ``user`` message, ending where
    the assistant's reply starts. A BOS the tokenizer adds itself is left out of the text, so encoding it
    with special tokens gives the template's tokens exactly once."""
    messages = []
    for question, answer in turns:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": user})
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = getattr(tok, "bos_token", None)
    if bos and text.startswith(bos) and _adds_bos(tok):
        text = text[len(bos) :]
    return text


def format_prompts(
    tok,
    examples: Sequence[Example],
    fmt: str = "raw",
    shots: Sequence[tuple[Example, str]] = (),
) -> list[str]:
    """The prompt of each example in format ``fmt``, after ``shots`` (an example and its solved target,
    its context already cut as wanted) when given."""
    fmt = resolve_format(fmt, tok) if fmt != "raw" else "raw"
    if fmt == "raw":
        prefix = "".join(f"{shot.prompt()} {target}\n\n" for shot, target in shots)
        return [prefix + e.prompt() for e in examples]
    turns = [(shot.user_text(), target) for shot, target in shots]
    return [chat_prompt(tok, e.user_text(), turns) for e in examples]
