"""Supervised fine-tuning on (prompt, answer) pairs: LoRA via peft, or full; loss on answer tokens only.

Every candidate in a sweep gets the same hyper-parameters and the same token budget, so the
comparison is fair. The function returns a plain ``transformers`` model (LoRA weights merged in).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from damoc.config import StrictModel
from damoc.evaluate.likelihood import collate, encode_pair, token_nll
from damoc.hardware import Precision, resolve_precision
from damoc.logging_utils import progress
from damoc.train import checkpoint as ckpt

LOG = logging.getLogger(__name__)


class FinetuneConfig(StrictModel):
    """Hyper-parameters of one fine-tune (the same for every candidate of a sweep)."""

    method: Literal["lora", "full"] = "lora"  # lora: LoRA adapters (peft), merged in after; full: all weights
    epochs: float = Field(1.0, gt=0)  # passes over the training pairs (fractions allowed)
    max_steps: int | None = Field(None, ge=1)  # cap on optimizer steps; null = as many as epochs give
    token_budget: int | None = Field(None, ge=1)  # stop once this many (non-pad) tokens were processed
    batch_size: int = Field(4, ge=1)  # pairs per optimizer step
    max_length: int = Field(256, ge=2)  # tokens per pair (prompt cut from the left, answer kept)
    lr: float = Field(2e-4, gt=0)  # peak AdamW learning rate (linear warm-up, then linear decay to 0)
    weight_decay: float = Field(0.0, ge=0)  # AdamW weight decay
    warmup_ratio: float = Field(0.05, ge=0, le=1)  # share of the steps spent warming up the rate
    grad_clip: float = Field(1.0, ge=0)  # 0: no clipping
    lora_r: int = Field(8, ge=1)  # LoRA rank
    lora_alpha: int = Field(16, ge=1)  # LoRA scaling numerator (the update is scaled by alpha / r)
    lora_dropout: float = Field(0.0, ge=0, lt=1)  # dropout on the LoRA branch's input
    # modules LoRA adapts: a list of module names, or all-linear (every linear layer but the output head)
    lora_targets: list[str] | Literal["all-linear"] = "all-linear"
    add_eos: bool = True  # append the EOS token to each answer, so the model learns to stop
    # fp32, bf16 or auto. bf16: autocast matmuls, weights and optimizer stay as loaded; auto: bf16 only where
    # the device runs it natively (damoc.hardware). Settings hashes leave fp32 out, as when it was the default.
    precision: Precision = Field("auto", json_schema_extra={"hash_default": "fp32"})
    seed: int = Field(0, ge=0)  # seed of the batch order, LoRA initialisation and dropout
    # where the output head runs: "answer" only at the positions that carry a loss (the answer tokens;
    # the same loss and gradients, without the vocabulary projection of every prompt token), "all" at
    # every position with the model's own loss (what a forward hook on the loss, e.g. distillation, needs)
    head_positions: Literal["answer", "all"] = "answer"


@dataclass
class FinetuneResult:
    model: torch.nn.Module
    steps: int
    tokens: int
    wall_s: float
    losses: list[float] = field(default_factory=list)


def _wrap_lora(model, cfg: FinetuneConfig):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lcfg)


def batch_loss(model, batch: dict[str, torch.Tensor], head_positions: str, dev) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens of ``batch`` (labels != -100)."""
    answer = batch["labels"][:, 1:] != -100  # position t predicts an answer token
    if head_positions == "all" or not bool(answer.any()):
        return model(**{k: v.to(dev) for k, v in batch.items()}).loss
    nll = token_nll(model, batch)
    return nll.sum() / answer.sum().to(nll.device)


def finetune(
    model: torch.nn.Module,
    tok,
    pairs: Sequence[tuple[str, str]],
    cfg: FinetuneConfig | None = None,
    desc: str = "fine-tune",
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 600.0,
) -> FinetuneResult:
    """Train ``model`` on ``pairs`` of (prompt, answer); returns the trained plain model and counts.

    With ``checkpoint`` (a file path), the training state is saved there every ``checkpoint_every_s``
    seconds of training and once more at the end, and a save found there for the same pairs and settings
    is continued from (the result equals an uninterrupted run's). The caller removes the file when the
    result is safe (:func:`damoc.train.checkpoint.remove`). ``wall_s`` counts this call's time only.
    """
    cfg = cfg or FinetuneConfig()
    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    enc = [encode_pair(tok, p, a, cfg.max_length, add_eos=cfg.add_eos) for p, a in pairs]
    steps_per_epoch = math.ceil(len(enc) / cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    work = _wrap_lora(model, cfg) if cfg.method == "lora" else model
    work.train()
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup_ratio * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total_steps - s) / max(1, total_steps - warm + 1))
    )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = next(work.parameters()).device
    bf16 = resolve_precision(cfg.precision, str(dev)) == "bf16"
    t0 = time.perf_counter()
    tokens, step, losses = 0, 0, []
    order: list[int] = []
    fp = ckpt.fingerprint(cfg.model_dump(mode="json"), pairs) if checkpoint is not None else ""
    saved = ckpt.load(checkpoint, fp) if checkpoint is not None else None
    if saved is not None:
        ckpt.restore_params(work, saved["params"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        step, tokens, losses, order = saved["step"], saved["tokens"], saved["losses"], saved["order"]
        LOG.info("%s: continuing from step %d/%d saved in %s", desc, step, total_steps, checkpoint)

    def save_state(finished: bool = False) -> None:
        state = {
            "fingerprint": fp,
            "params": ckpt.trainable_state(work),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
            "tokens": tokens,
            "losses": losses,
            "order": order,
            "done": finished,  # training over: a continuation goes straight to the merge
        }
        ckpt.save(checkpoint, state)

    last_save = time.perf_counter()
    bar = progress(total=total_steps, desc=desc, unit="step")
    if step:
        bar.update(step)
    done = saved is not None and saved.get("done", False)
    while step < total_steps and not done:
        if len(order) < cfg.batch_size:
            perm = list(range(len(enc)))
            rng.shuffle(perm)
            order.extend(perm)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = collate([enc[i][0] for i in idx], [enc[i][1] for i in idx], pad)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = batch_loss(work, batch, cfg.head_positions, dev)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
        losses.append(float(loss.detach()))
        step += 1
        bar.update(1)
        if cfg.token_budget is not None and tokens >= cfg.token_budget:
            break
        if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            save_state()
            last_save = time.perf_counter()
    bar.close()
    if checkpoint is not None and not done:
        save_state(finished=True)
    work.eval()
    if cfg.method == "lora":
        work = work.merge_and_unload()
    return FinetuneResult(
        model=work, steps=step, tokens=tokens, wall_s=time.perf_counter() - t0, losses=losses
    )
