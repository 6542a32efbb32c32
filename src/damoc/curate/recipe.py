"""The FineScope recipe, top to bottom: curate -> structured prune -> plain fine-tune / self-distil -> score.

Each stage's domain score is the teacher-forced bits per byte of the gold answers of held-out domain
rows (lower is better) and, where rows carry labels, label accuracy (the label whose text is most
likely as the answer).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from damoc.curate.config import FinescopeJob, ScoreSettings
from damoc.curate.pipeline import curate_examples
from damoc.errors import DamocError
from damoc.evaluate.likelihood import answer_scores
from damoc.io.files import atomic_output_dir, write_json_atomic, write_jsonl_atomic, write_text_atomic
from damoc.io.tasks import Example, load_examples
from damoc.model.structured.prune import count_params, structured_prune
from damoc.model.structured.save import save_model_dir
from damoc.train.distill import self_distill
from damoc.train.finetune import finetune

LOG = logging.getLogger(__name__)

MAX_LABELS = 10  # more distinct labels than this: not a classification task, no label accuracy


@dataclass
class DomainScore:
    answer_bpb: float
    label_accuracy: float | None
    n_rows: int
    n_labelled: int


@dataclass
class StageResult:
    stage: str
    params: int
    score: DomainScore
    stage_wall_s: float  # time to produce this model (curation excluded)
    score_wall_s: float


@dataclass
class FinescopeReport:
    model: str
    stages: list[StageResult]
    recovery: dict[str, float | None]  # share of the pruning loss in answer bpb won back, per recovery stage
    curation: dict
    pruning: dict
    distill: dict
    wall_s: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def stage(self, name: str) -> StageResult:
        return next(s for s in self.stages if s.stage == name)


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


def domain_score(model, tok, examples: Sequence[Example], cfg: ScoreSettings) -> DomainScore:
    scores = answer_scores(
        model,
        tok,
        [e.prompt() for e in examples],
        [e.answer for e in examples],
        cfg.batch_size,
        cfg.max_length,
    )
    nll_bits = sum(s.nll for s in scores) / 0.6931471805599453
    bpb = nll_bits / max(1, sum(s.n_bytes for s in scores))
    acc, n_lab = label_accuracy(model, tok, examples, cfg)
    return DomainScore(answer_bpb=bpb, label_accuracy=acc, n_rows=len(examples), n_labelled=n_lab)


def recovered(source: float, pruned: float, stage: float) -> float | None:
    """(pruned - stage) / (pruned - source): 1 = back to the source's score, 0 = no better than pruned."""
    gap = pruned - source
    return None if abs(gap) < 1e-12 else (pruned - stage) / gap


def _scored(stage: str, model, tok, rows, cfg: ScoreSettings, stage_s: float) -> StageResult:
    t0 = time.perf_counter()
    sc = domain_score(model, tok, rows, cfg)
    LOG.info("%s: answer bpb %.4f, label acc %s", stage, sc.answer_bpb, sc.label_accuracy)
    return StageResult(stage, count_params(model), sc, stage_s, time.perf_counter() - t0)


def render_markdown(r: FinescopeReport) -> str:
    lines = [
        f"# FineScope on {r.model}",
        "",
        "| stage | params | answer bits/byte (lower is better) | label accuracy | stage time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in r.stages:
        acc = "-" if s.score.label_accuracy is None else f"{s.score.label_accuracy:.3f}"
        lines.append(
            f"| {s.stage} | {s.params:,} | {s.score.answer_bpb:.4f} | {acc} | {s.stage_wall_s:.1f} |"
        )
    lines += ["", "Share of the pruning loss won back (answer bits/byte):", ""]
    for k, v in r.recovery.items():
        lines.append(f"- {k}: {'n/a' if v is None else f'{v:.3f}'}")
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


def run_finescope(job: FinescopeJob) -> FinescopeReport:
    """Run the recipe and write the run directory (atomically): curated rows, checkpoints, report."""
    from damoc.io.files import check_output_dir
    from damoc.model.arch import load_model

    check_output_dir(job.out, job.overwrite)
    pool, seeds = load_examples(job.pool), load_examples(job.seeds)
    eval_rows, overlap = _drop_overlap(load_examples(job.eval), pool)
    eval_rows = eval_rows[: job.score.eval_rows]
    if not eval_rows:
        raise DamocError(f"{job.eval}: no eval rows left once rows also in the pool are dropped")
    source, tok = load_model(job.model)
    wall: dict[str, float] = {}

    t0 = time.perf_counter()
    curated = curate_examples(pool, seeds, job.curate, source, tok)
    wall["curate"] = time.perf_counter() - t0
    rows = curated.examples

    stages = [_scored("source", source, tok, eval_rows, job.score, 0.0)]
    t0 = time.perf_counter()
    pruned = copy.deepcopy(source)
    prune_report = structured_prune(pruned, tok, [e.text() for e in rows], job.prune)
    wall["prune"] = time.perf_counter() - t0
    stages.append(_scored("pruned", pruned, tok, eval_rows, job.score, wall["prune"]))

    ft_cfg = job.distill.finetune
    t0 = time.perf_counter()
    plain = finetune(
        copy.deepcopy(pruned), tok, [(e.prompt(), e.answer) for e in rows], ft_cfg, desc="plain FT"
    )
    wall["plain_finetune"] = time.perf_counter() - t0
    stages.append(
        _scored("pruned + fine-tune", plain.model, tok, eval_rows, job.score, wall["plain_finetune"])
    )
    del plain

    t0 = time.perf_counter()
    sd = self_distill(source, copy.deepcopy(pruned), tok, [e.prompt() for e in rows], job.distill)
    wall["self_distill"] = time.perf_counter() - t0
    stages.append(
        _scored("pruned + self-distillation", sd.model, tok, eval_rows, job.score, wall["self_distill"])
    )

    src, prn = stages[0].score.answer_bpb, stages[1].score.answer_bpb
    report = FinescopeReport(
        model=str(job.model),
        stages=stages,
        recovery={
            "plain fine-tune": recovered(src, prn, stages[2].score.answer_bpb),
            "self-distillation": recovered(src, prn, stages[3].score.answer_bpb),
        },
        curation=curated.report.to_dict(),
        pruning=prune_report.to_dict(),
        distill={
            "kept": sd.kept,
            "generate_wall_s": sd.generate_wall_s,
            **sd.stats,
            "eval_overlap_dropped": overlap,
        },
        wall_s=wall,
        config=job.model_dump(),
    )
    with atomic_output_dir(job.out, job.overwrite) as tmp:
        write_jsonl_atomic(tmp / "curated.jsonl", curated.rows())
        write_json_atomic(tmp / "curated.report.json", curated.report.to_dict())
        write_jsonl_atomic(
            tmp / "teacher_answers.jsonl",
            [{"id": e.id, "answer": a, "gold": e.answer} for e, a in zip(rows, sd.answers, strict=True)],
        )
        if job.save_models:
            (tmp / "pruned").mkdir()
            save_model_dir(pruned, tok, tmp / "pruned")
            write_json_atomic(tmp / "pruned" / "pruning.json", prune_report.to_dict())
            (tmp / "distilled").mkdir()
            save_model_dir(sd.model, tok, tmp / "distilled")
        write_json_atomic(tmp / "report.json", report.to_dict())
        write_text_atomic(tmp / "report.md", render_markdown(report))
    return report


__all__ = ["DomainScore", "FinescopeReport", "StageResult", "domain_score", "label_accuracy", "run_finescope"]
