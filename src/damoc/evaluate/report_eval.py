"""``damoc eval``: perplexity on general and domain text, and a domain task score, as one typed record.

- general / domain perplexity: packed windows from the HELD-OUT part of each source (the part that
  ``damoc prune calibrated`` / ``damoc quantize`` never calibrate on, same ``dev_size`` and ``seed``);
- task score: mean answer bits per byte on the task's dev split (teacher forcing, lower is better), and
  label accuracy when the task has a small label set (yes/no/maybe): the label with the highest
  likelihood after the prompt is the prediction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import Field

from damoc.config import StrictModel
from damoc.errors import DamocError
from damoc.evaluate.likelihood import answer_scores, collate, encode_pair
from damoc.evaluate.perplexity import pack_sequences, sequence_perplexity
from damoc.io.prompts import PromptFormat, format_prompts
from damoc.io.tasks import Task, load_task, source_splits, to_examples
from damoc.logging_utils import progress
from damoc.model.calibrated.general_text import load_source_texts


class EvalConfig(StrictModel):
    general: str | None = Field("general", description="General text source (held-out part is used).")
    domain: str | None = Field(None, description="Domain text source (held-out part is used).")
    task: str | None = Field(
        None, description="Task for the domain score (default: the domain source if a task)."
    )
    samples: int = Field(32, ge=1, description="Perplexity windows per source.")
    length: int = Field(256, ge=8, description="Tokens per perplexity window.")
    task_samples: int = Field(100, ge=1, description="Dev examples scored.")
    max_length: int = Field(
        512, ge=16, description="Token limit of a prompt + answer (prompt cut from the left)."
    )
    max_labels: int = Field(
        10, ge=2, description="Label accuracy only for tasks with at most this many labels."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    dev_size: float = Field(0.2, gt=0.0, lt=1.0, description="Held-out fraction (must match calibration).")
    seed: int = Field(
        0, ge=0, description="Seed of the held-out split and the perplexity windows (must match calibration)."
    )
    split: str | None = Field(
        None, description="The task's own split to score (a saved DatasetDict or a hub dataset)."
    )
    prompt_format: PromptFormat = Field("raw", description="raw, chat (the chat template) or auto.")


@dataclass
class EvalReport:
    model: str
    general_ppl: float | None = None
    domain_ppl: float | None = None
    task: str | None = None
    task_bpb: float | None = None  # mean answer bits per byte (lower is better)
    label_accuracy: float | None = None
    n_task: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    config: dict = field(default_factory=dict)


def _task_source(cfg: EvalConfig) -> str | None:
    if cfg.task:
        return cfg.task
    if cfg.domain and cfg.domain != "general" and Path(cfg.domain).suffix != ".txt":
        return cfg.domain
    return None


@torch.no_grad()
def label_nlls(
    model, tok, prompts: Sequence[str], labels: Sequence[str], max_length: int = 512, batch_size: int = 8
) -> torch.Tensor:
    """NLL (nats) of each label after each prompt: (n_prompts, n_labels).

    When every label is one token, one forward pass per prompt scores all labels at once; otherwise each
    label is scored as an answer with :func:`answer_scores`.
    """
    encs = [[encode_pair(tok, p, lab, max_length) for lab in labels] for p in prompts]
    single = all(len(ids) - start == 1 for row in encs for ids, start in row)
    if not single:
        cols = [
            answer_scores(model, tok, prompts, [lab] * len(prompts), batch_size, max_length) for lab in labels
        ]
        return torch.tensor([[cols[j][i].nll for j in range(len(labels))] for i in range(len(prompts))])
    label_ids = torch.tensor([ids[start] for ids, start in encs[0]])
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = torch.zeros(len(prompts), len(labels))
    for b in progress(range(0, len(prompts), batch_size), desc="labels", unit="batch"):
        rows = [encs[i][0] for i in range(b, min(b + batch_size, len(prompts)))]
        seqs = [ids[:start] for ids, start in rows]
        batch = collate(seqs, [0] * len(seqs), pad)
        logits = model(
            input_ids=batch["input_ids"].to(dev),
            attention_mask=batch["attention_mask"].to(dev),
            use_cache=False,
        ).logits.float()
        last = torch.tensor([len(s) - 1 for s in seqs])
        logp = torch.log_softmax(logits[torch.arange(len(seqs)), last.to(dev)], dim=-1).cpu()
        out[b : b + len(seqs)] = -logp[:, label_ids]
    return out


def eval_task(source: str, cfg: EvalConfig) -> Task:
    """The task to score: ``cfg.split`` of a source with named splits, else :func:`load_task`'s dev split."""
    if cfg.split is None:
        return load_task(source, dev_size=cfg.dev_size, seed=cfg.seed)

    own = source_splits(source)
    if own is None:
        raise DamocError(
            f"{source} has no named splits (a saved DatasetDict or a hub dataset has): drop --split"
        )
    if cfg.split not in own:
        raise DamocError(f"unknown split '{cfg.split}' for {source} (its splits: {', '.join(own)})")
    dev = to_examples(own[cfg.split], source=f"{source}[{cfg.split}]")
    return Task(name=Path(source).stem, train=[], dev=dev, source=source)


def evaluate_model(model, tok, cfg: EvalConfig, name: str = "") -> EvalReport:
    """Measure one model; every part that has no source configured is left ``None``."""
    t0 = time.perf_counter()
    rep = EvalReport(model=name, config=cfg.model_dump(mode="json"))
    for key, src in (("general", cfg.general), ("domain", cfg.domain)):
        if not src:
            continue
        texts = load_source_texts(src, "dev", cfg.dev_size, cfg.seed)
        seqs = pack_sequences(
            tok, texts, cfg.samples, cfg.length, cfg.seed, what=f"held-out {key} text '{src}'"
        )
        ppl = sequence_perplexity(model, seqs, cfg.batch_size, desc=f"{key} ppl")
        setattr(rep, f"{key}_ppl", ppl.perplexity)
        rep.tokens[key] = ppl.n_tokens
    task_src = _task_source(cfg)
    if task_src:
        task = eval_task(task_src, cfg)
        dev = task.dev[: cfg.task_samples]
        prompts = format_prompts(tok, dev, cfg.prompt_format)
        scores = answer_scores(model, tok, prompts, [e.answer for e in dev], cfg.batch_size, cfg.max_length)
        rep.task, rep.n_task = task.name, len(dev)
        rep.task_bpb = sum(s.bits_per_byte for s in scores) / len(scores)
        labels = task.labels()
        labelled = [i for i, e in enumerate(dev) if e.label is not None]
        if 2 <= len(labels) <= cfg.max_labels and labelled:
            nll = label_nlls(
                model, tok, [prompts[i] for i in labelled], labels, cfg.max_length, cfg.batch_size
            )
            pred = nll.argmin(dim=1).tolist()
            rep.label_accuracy = sum(
                labels[p] == dev[i].label for p, i in zip(pred, labelled, strict=True)
            ) / len(labelled)
    rep.wall_s = time.perf_counter() - t0
    return rep


def render_markdown(reports: Sequence[EvalReport]) -> str:
    """A table of reports (one row per model)."""

    def f(x: float | None, nd: int = 3) -> str:
        return "–" if x is None else f"{x:.{nd}f}"

    lines = [
        "| model | general ppl | domain ppl | task bits/byte | label acc |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in reports:
        lines.append(
            f"| {r.model} | {f(r.general_ppl, 2)} | {f(r.domain_ppl, 2)} | {f(r.task_bpb)} | {f(r.label_accuracy)} |"
        )
    return "\n".join(lines) + "\n"
