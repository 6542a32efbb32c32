"""The FineScope recipe, top to bottom: curate -> structured prune -> plain fine-tune / self-distil -> score.

Each stage is scored on held-out domain rows by:

- answer bits per byte: teacher-forced bits per byte of the rows' gold answers (lower is better);
- label accuracy, where rows carry labels (the label whose text is most likely as the answer);
- fidelity: mean KL(source || model) per token over the rows' whole text (prompt and gold answer), in
  nats; 0 for the source itself. This is what self-distillation is meant to restore: the source
  model's own distribution on the domain, not only the likelihood of the gold answers.

With a ``cache_dir``, every stage's output (curated rows, pruned checkpoint, teacher answers, scores of
the recovered models) is kept under a key made of the settings (and input file hashes) that produced
it, so a re-run that only changes the distillation does not curate or prune again.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from damoc.curate.config import FinescopeJob, ScoreSettings
from damoc.curate.pipeline import Curated, CurationReport, MethodSummary, curate_examples
from damoc.errors import DamocError
from damoc.evaluate.likelihood import answer_scores, collate
from damoc.evaluate.paired import bits_per_byte, paired_bpb_difference
from damoc.io.files import (
    atomic_output_dir,
    check_output_dir,
    read_json,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from damoc.io.hashing import bytes_digest, digest
from damoc.io.tasks import Example, load_examples
from damoc.logging_utils import progress
from damoc.model.arch import load_model
from damoc.model.structured.prune import count_params, structured_prune
from damoc.model.structured.save import save_model_dir
from damoc.train.distill import DistillConfig, DistillRow, self_distill, teacher_rows, token_kl
from damoc.train.finetune import finetune

LOG = logging.getLogger(__name__)

MAX_LABELS = 10  # more distinct labels than this: not a classification task, no label accuracy
PLAIN = "pruned + fine-tune"
DISTILLED = "pruned + self-distillation"


@dataclass
class DomainScore:
    answer_bpb: float
    label_accuracy: float | None
    n_rows: int
    n_labelled: int
    fidelity_kl: float | None = None  # mean KL(source || model), nats per token of the rows' text
    fidelity_tokens: int = 0
    row_bits: list[float] = field(default_factory=list)  # per eval row: answer bits (for paired tests)
    row_bytes: list[int] = field(default_factory=list)  # per eval row: answer bytes


@dataclass
class StageResult:
    stage: str
    params: int
    score: DomainScore
    stage_wall_s: float  # time to produce this model (curation excluded)
    score_wall_s: float
    cached: bool = False  # read from the stage cache (times are those of the run that made it)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StageResult:
        return cls(**{**d, "score": DomainScore(**d["score"])})


@dataclass
class FinescopeReport:
    model: str
    stages: list[StageResult]
    recovery: dict[str, float | None]  # share of the pruning loss in answer bpb won back, per recovery stage
    curation: dict
    pruning: dict
    distill: dict  # per self-distillation stage: teacher mode, fallbacks, answer lengths, timings
    wall_s: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    fidelity_recovery: dict[str, float | None] = field(default_factory=dict)  # same, for fidelity KL
    # per self-distillation stage: its answer bpb minus plain fine-tuning's on the same rows, with a
    # paired bootstrap interval (negative: self-distillation is better)
    versus_plain: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.stage == name)


# ---------------------------------------------------------------- scores


def label_accuracy(model, tok, examples: Sequence[Example], cfg: ScoreSettings) -> tuple[float | None, int]:
    """Accuracy of picking the gold label among the eval rows' labels by answer likelihood."""
    rows = [e for e in examples if e.label is not None]
    labels = sorted({e.label for e in rows})
    if len(labels) < 2 or len(labels) > MAX_LABELS:
        return None, 0
    prompts = [e.prompt() for e in rows for _ in labels]
    answers = [lab for _ in rows for lab in labels]
    scores = answer_scores(model, tok, prompts, answers, cfg.batch_size, cfg.max_length, desc="labels")
    correct = 0
    for i, e in enumerate(rows):
        nll = [scores[i * len(labels) + j].nll for j in range(len(labels))]
        correct += labels[min(range(len(labels)), key=nll.__getitem__)] == e.label
    return correct / len(rows), len(rows)


@torch.no_grad()
def fidelity_kl(
    source, model, tok, texts: Sequence[str], batch_size: int = 8, max_length: int = 384
) -> tuple[float, int]:
    """Mean KL(source || model) per next-token position over ``texts`` (nats) and the position count.

    Both models must share ``tok`` (a pruned model keeps its source's tokenizer)."""
    seqs = [
        tok(t, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"] for t in texts
    ]
    seqs = [s for s in seqs if len(s) >= 2]
    if not seqs:
        raise ValueError("no text with at least two tokens")
    if model is source:
        return 0.0, sum(len(s) - 1 for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = next(model.parameters()).device
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    total, count = 0.0, 0
    for b in progress(range(0, len(order), batch_size), desc="fidelity", unit="batch"):
        chunk = [seqs[i] for i in order[b : b + batch_size]]
        batch = collate(chunk, [0] * len(chunk), pad)
        ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
        p = source(input_ids=ids, attention_mask=mask).logits[:, :-1]
        q = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        kl, n = token_kl(p, q, (batch["labels"][:, 1:] != -100).to(dev))
        total, count = total + float(kl), count + n
    return total / max(1, count), count


def domain_score(model, tok, examples: Sequence[Example], cfg: ScoreSettings, source=None) -> DomainScore:
    """Answer bits/byte, label accuracy and (given the ``source`` model) fidelity KL on ``examples``."""
    scores = answer_scores(
        model,
        tok,
        [e.prompt() for e in examples],
        [e.answer for e in examples],
        cfg.batch_size,
        cfg.max_length,
    )
    row_bits = [s.nll / math.log(2) for s in scores]
    row_bytes = [s.n_bytes for s in scores]
    acc, n_lab = label_accuracy(model, tok, examples, cfg)
    kl, n_kl = (None, 0)
    if source is not None:
        kl, n_kl = fidelity_kl(
            source, model, tok, [e.text() for e in examples], cfg.batch_size, cfg.max_length
        )
    return DomainScore(
        answer_bpb=bits_per_byte(row_bits, row_bytes),
        label_accuracy=acc,
        n_rows=len(examples),
        n_labelled=n_lab,
        fidelity_kl=kl,
        fidelity_tokens=n_kl,
        row_bits=row_bits,
        row_bytes=row_bytes,
    )


def recovered(source: float, pruned: float, stage: float) -> float | None:
    """(pruned - stage) / (pruned - source): 1 = back to the source's score, 0 = no better than pruned."""
    gap = pruned - source
    return None if abs(gap) < 1e-12 else (pruned - stage) / gap


def _scored(stage: str, model, tok, rows, cfg: ScoreSettings, stage_s: float, source=None) -> StageResult:
    t0 = time.perf_counter()
    sc = domain_score(model, tok, rows, cfg, source)
    LOG.info(
        "%s: answer bpb %.4f, label acc %s, fidelity KL %s",
        stage,
        sc.answer_bpb,
        sc.label_accuracy,
        sc.fidelity_kl,
    )
    return StageResult(stage, count_params(model), sc, stage_s, time.perf_counter() - t0)


# ---------------------------------------------------------------- stage cache


def file_hash(path: str | Path) -> str:
    """Content hash of a file, or of the name for a built-in task (no file)."""
    p = Path(path)
    return bytes_digest([p.read_bytes()]) if p.is_file() else f"name:{path}"


class StageCache:
    """Stage outputs under ``root``, each in ``<kind>-<key>`` where the key hashes the settings that made it.

    ``root=None`` disables it (every lookup misses, nothing is written)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(*parts: Any) -> str:
        return digest(parts)

    def dir(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / f"{kind}-{key}"

    def get(self, kind: str, key: str) -> Any | None:
        d = self.dir(kind, key)
        if d is None or not (d / "value.json").is_file():
            return None
        LOG.info("stage cache: reusing %s", d)
        return read_json(d / "value.json")

    def put(self, kind: str, key: str, value: Any, model=None, tok=None) -> None:
        d = self.dir(kind, key)
        if d is None:
            return
        with atomic_output_dir(d, overwrite=True) as tmp:
            if model is not None:
                save_model_dir(model, tok, tmp)
            write_json_atomic(tmp / "value.json", value)


# ---------------------------------------------------------------- report


def render_markdown(r: FinescopeReport) -> str:
    lines = [
        f"# FineScope on {r.model}",
        "",
        "| stage | params | answer bits/byte (lower is better) | label accuracy | fidelity KL to source "
        "(nats/token, lower is better) | stage time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in r.stages:
        acc = "-" if s.score.label_accuracy is None else f"{s.score.label_accuracy:.3f}"
        kl = "-" if s.score.fidelity_kl is None else f"{s.score.fidelity_kl:.4f}"
        cached = " (cached)" if s.cached else ""
        lines.append(
            f"| {s.stage} | {s.params:,} | {s.score.answer_bpb:.4f} | {acc} | {kl} | {s.stage_wall_s:.1f}{cached} |"
        )
    lines += ["", "Share of the pruning loss won back (answer bits/byte; fidelity KL):", ""]
    for k, v in r.recovery.items():
        f = r.fidelity_recovery.get(k)
        lines.append(f"- {k}: {'n/a' if v is None else f'{v:.3f}'}; {'n/a' if f is None else f'{f:.3f}'}")
    if r.versus_plain:
        lines += [
            "",
            "Answer bits/byte minus plain fine-tuning's, same rows (negative: better than plain):",
            "",
        ]
        for k, d in r.versus_plain.items():
            lines.append(
                f"- {k}: {d['diff']:+.4f}, {100 * d['level']:.0f}% paired bootstrap interval "
                f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] over {d['n_rows']} rows; "
                f"better in {100 * d['share_a_better']:.0f}% of draws"
            )
    for name, d in r.distill.items():
        lines.append(
            f"- {name}: teacher mode {d['teacher_mode']}, {d['kept']} answers "
            f"(mean {d['mean_answer_chars']:.0f} chars), {d['fallbacks']} gold fallbacks, KL weight {d['kl_weight']}"
        )
    cur = r.curation
    lines += ["", f"Curation: top {cur['top']} of {cur['n_pool']} pool rows, {cur['n_seeds']} seeds."]
    for m in cur["methods"]:
        p = "n/a" if m["precision"] is None else f"{m['precision']:.3f}"
        lines.append(f"- {m['method']}: precision {p} ({m['wall_s']:.1f} s)")
    return "\n".join(lines) + "\n"


def _drop_overlap(eval_rows: list[Example], pool: list[Example]) -> tuple[list[Example], int]:
    seen = {e.question.strip() for e in pool}
    kept = [e for e in eval_rows if e.question.strip() not in seen]
    return kept, len(eval_rows) - len(kept)


# ---------------------------------------------------------------- stages


def _curated_from(value: dict, pool: Sequence[Example]) -> Curated:
    by_id = {e.id: e for e in pool}
    rep = dict(value["report"])
    rep["methods"] = [MethodSummary(**m) for m in rep["methods"]]
    return Curated([by_id[i] for i in value["ids"]], value["scores"], CurationReport(**rep))


def _curate_stage(job: FinescopeJob, pool, seeds, source, tok, cache: StageCache, key: str) -> Curated:
    hit = cache.get("curate", key)
    if hit is not None:
        return _curated_from(hit, pool)
    cur = curate_examples(pool, seeds, job.curate, source, tok, str(job.model))
    cache.put(
        "curate",
        key,
        {"ids": [e.id for e in cur.examples], "scores": cur.scores, "report": cur.report.to_dict()},
    )
    return cur


def _prune_stage(job: FinescopeJob, source, tok, rows, cache: StageCache, key: str) -> tuple[Any, dict]:
    hit = cache.get("prune", key)
    if hit is not None:
        d = cache.dir("prune", key)
        pruned, _ = load_model(d)
        return pruned, hit
    pruned = copy.deepcopy(source)
    rep = structured_prune(pruned, tok, [e.text() for e in rows], job.prune).to_dict()
    cache.put("prune", key, rep, pruned, tok)
    return pruned, rep


def _teacher_stage(source, tok, rows, cfg: DistillConfig, cache: StageCache, key: str):
    """The teacher's answers to the curated rows (``cfg.teacher_mode``), and the generation time."""
    hit = cache.get("teacher", key)
    if hit is not None:
        return [DistillRow(**r) for r in hit["rows"]], hit["wall_s"]
    t0 = time.perf_counter()
    out = teacher_rows(
        source, tok, [e.prompt() for e in rows], cfg, [e.answer for e in rows], [e.label for e in rows]
    )
    wall = time.perf_counter() - t0
    cache.put("teacher", key, {"rows": [asdict(r) for r in out], "wall_s": wall})
    return out, wall


@dataclass
class Recovered:
    result: StageResult
    model: Any = None  # None when read from the cache
    distill: dict | None = None
    rows: list[DistillRow] | None = None


def _recover_stage(
    name: str,
    cfg: DistillConfig | None,
    source,
    pruned,
    tok,
    rows: Sequence[Example],
    eval_rows: Sequence[Example],
    job: FinescopeJob,
    cache: StageCache,
    keys: dict[str, str],
    keep_model: bool,
) -> Recovered:
    """Plain fine-tune on the gold answers (``cfg`` None) or self-distillation in ``cfg``'s mode, scored."""
    ft = job.distill.finetune if cfg is None else cfg.finetune
    key = cache.key(
        name, keys["prune"], keys["score"], None if cfg is None else cfg.model_dump(), ft.model_dump()
    )
    hit = None if keep_model else cache.get("stage", key)
    if hit is not None:
        res = StageResult.from_dict({**hit["result"], "cached": True})
        drows = None if hit["rows"] is None else [DistillRow(**r) for r in hit["rows"]]
        return Recovered(res, None, hit["distill"], drows)
    t0 = time.perf_counter()
    distill, drows = None, None
    if cfg is None:
        model = finetune(
            copy.deepcopy(pruned), tok, [(e.prompt(), e.answer) for e in rows], ft, desc="plain FT"
        ).model
    else:
        gen_cfg = {"mode": cfg.teacher_mode, "gen": cfg.generation.model_dump()}
        if cfg.teacher_mode == "rewrite_reference":
            gen_cfg["rewrite"] = cfg.rewrite.model_dump()
        drows, gen_s = _teacher_stage(source, tok, rows, cfg, cache, cache.key(keys["curate"], gen_cfg))
        sd = self_distill(source, copy.deepcopy(pruned), tok, [e.prompt() for e in rows], cfg, rows=drows)
        model = sd.model
        distill = {"kept": sd.kept, "generate_wall_s": gen_s, "train_wall_s": sd.train.wall_s, **sd.stats}
    res = _scored(name, model, tok, eval_rows, job.score, time.perf_counter() - t0, source)
    cache.put(
        "stage",
        key,
        {
            "result": asdict(res),
            "distill": distill,
            "rows": None if drows is None else [asdict(r) for r in drows],
        },
    )
    return Recovered(res, model if keep_model else None, distill, drows)


def _versus_plain(stages: Mapping[str, Recovered], cfg: ScoreSettings) -> dict[str, dict]:
    """Each self-distillation stage's answer bpb minus plain fine-tuning's, paired over the eval rows."""
    plain = stages[PLAIN].result.score
    out = {}
    for name, rec in stages.items():
        sc = rec.result.score
        if name == PLAIN or not sc.row_bits or len(sc.row_bits) != len(plain.row_bits):
            continue
        out[name.removeprefix("pruned + ")] = paired_bpb_difference(
            sc.row_bits, plain.row_bits, sc.row_bytes, cfg.bootstrap, cfg.bootstrap_level, cfg.bootstrap_seed
        ).to_dict()
    return out


def run_finescope(
    job: FinescopeJob,
    cache_dir: str | Path | None = None,
    variants: Mapping[str, DistillConfig] | None = None,
) -> FinescopeReport:
    """Run the recipe and write the run directory (atomically): curated rows, checkpoints, report.

    ``variants`` adds self-distillation stages named ``pruned + self-distillation (<name>)`` with other
    distillation settings (same curated rows, same pruned model); ``cache_dir`` keeps stage outputs for
    re-runs (see the module docstring).
    """
    check_output_dir(job.out, job.overwrite)
    cache = StageCache(cache_dir)
    pool, seeds = load_examples(job.pool), load_examples(job.seeds)
    eval_rows, overlap = _drop_overlap(load_examples(job.eval), pool)
    eval_rows = eval_rows[: job.score.eval_rows]
    if not eval_rows:
        raise DamocError(f"{job.eval}: no eval rows left once rows also in the pool are dropped")
    source, tok = load_model(job.model)
    keys = {"data": cache.key(str(job.model), file_hash(job.pool), file_hash(job.seeds))}
    keys["curate"] = cache.key(keys["data"], job.curate.model_dump())
    keys["prune"] = cache.key(keys["curate"], job.prune.model_dump())
    score_cfg = job.score.model_dump(exclude={"bootstrap", "bootstrap_level", "bootstrap_seed"})
    keys["score"] = cache.key(str(job.model), file_hash(job.eval), score_cfg)
    wall: dict[str, float] = {}

    t0 = time.perf_counter()
    curated = _curate_stage(job, pool, seeds, source, tok, cache, keys["curate"])
    wall["curate"] = time.perf_counter() - t0
    rows = curated.examples

    stages = [_scored("source", source, tok, eval_rows, job.score, 0.0, source)]
    t0 = time.perf_counter()
    pruned, prune_report = _prune_stage(job, source, tok, rows, cache, keys["prune"])
    wall["prune"] = time.perf_counter() - t0
    stages.append(_scored("pruned", pruned, tok, eval_rows, job.score, wall["prune"], source))

    plan: list[tuple[str, DistillConfig | None]] = [(PLAIN, None), (DISTILLED, job.distill)]
    plan += [(f"{DISTILLED} ({n})", c) for n, c in (variants or {}).items()]
    recovered_stages: dict[str, Recovered] = {}
    for name, cfg in plan:
        keep = job.save_models and name == DISTILLED
        rec = _recover_stage(name, cfg, source, pruned, tok, rows, eval_rows, job, cache, keys, keep)
        recovered_stages[name] = rec
        stages.append(rec.result)
        wall[name] = rec.result.stage_wall_s

    src, prn = stages[0].score, stages[1].score
    report = FinescopeReport(
        model=str(job.model),
        stages=stages,
        recovery={
            n.removeprefix("pruned + "): recovered(src.answer_bpb, prn.answer_bpb, r.result.score.answer_bpb)
            for n, r in recovered_stages.items()
        },
        fidelity_recovery={
            n.removeprefix("pruned + "): recovered(
                0.0, prn.fidelity_kl or 0.0, r.result.score.fidelity_kl or 0.0
            )
            for n, r in recovered_stages.items()
        },
        curation=curated.report.to_dict(),
        pruning=prune_report,
        distill={
            n: {**(r.distill or {}), "eval_overlap_dropped": overlap}
            for n, r in recovered_stages.items()
            if r.distill is not None
        },
        wall_s=wall,
        config=job.model_dump(),
        versus_plain=_versus_plain(recovered_stages, job.score),
    )
    with atomic_output_dir(job.out, job.overwrite) as tmp:
        write_jsonl_atomic(tmp / "curated.jsonl", curated.rows())
        write_json_atomic(tmp / "curated.report.json", curated.report.to_dict())
        for name, rec in recovered_stages.items():
            if rec.rows is None:
                continue
            variant = re.sub(r"[^A-Za-z0-9_.+-]", "_", name.removeprefix(DISTILLED).strip(" ()"))
            fname = f"teacher_answers.{variant}.jsonl" if variant else "teacher_answers.jsonl"
            write_jsonl_atomic(
                tmp / fname,
                [
                    {"id": e.id, "stage": name, **asdict(r), "gold": e.answer}
                    for e, r in zip(rows, rec.rows, strict=True)
                ],
            )
        if job.save_models:
            (tmp / "pruned").mkdir()
            save_model_dir(pruned, tok, tmp / "pruned")
            write_json_atomic(tmp / "pruned" / "pruning.json", prune_report)
            (tmp / "distilled").mkdir()
            save_model_dir(recovered_stages[DISTILLED].model, tok, tmp / "distilled")
        write_json_atomic(tmp / "report.json", report.to_dict())
        write_text_atomic(tmp / "report.md", render_markdown(report))
    return report


__all__ = [
    "DomainScore",
    "FinescopeReport",
    "StageCache",
    "StageResult",
    "domain_score",
    "fidelity_kl",
    "label_accuracy",
    "run_finescope",
]
