"""The FineScope recipe, top to bottom: curate -> structured prune -> plain fine-tune / self-distil -> score.

Each stage is scored on held-out domain rows (:mod:`damoc.curate.scores`: answer bits per byte, label
accuracy, fidelity KL to the source) and the run is reported by :mod:`damoc.curate.finescope_report`.
With a ``cache_dir``, every stage's output (curated rows, pruned checkpoint, teacher answers, scores of
the recovered models) is kept under a key made of the settings (and input file hashes) that produced it
(:mod:`damoc.curate.stage_cache`), so a re-run that only changes the distillation does not curate or
prune again.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from damoc.curate.config import FinescopeJob, ScoreSettings
from damoc.curate.finescope_report import FinescopeReport, render_markdown
from damoc.curate.pipeline import Curated, CurationReport, MethodSummary, curate_examples
from damoc.curate.scores import StageResult, recovered, score_stage
from damoc.curate.stage_cache import StageCache, file_hash
from damoc.errors import DamocError
from damoc.evaluate.paired import paired_bpb_difference
from damoc.io.files import (
    atomic_output_dir,
    check_output_dir,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from damoc.io.tasks import Example, load_examples
from damoc.model.arch import load_model
from damoc.model.structured.prune import structured_prune
from damoc.model.structured.save import save_model_dir
from damoc.train.distill import DistillConfig, DistillRow, self_distill, teacher_rows
from damoc.train.finetune import finetune

LOG = logging.getLogger(__name__)

PLAIN = "pruned + fine-tune"
DISTILLED = "pruned + self-distillation"


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
    res = score_stage(name, model, tok, eval_rows, job.score, time.perf_counter() - t0, source)
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

    stages = [score_stage("source", source, tok, eval_rows, job.score, 0.0, source)]
    t0 = time.perf_counter()
    pruned, prune_report = _prune_stage(job, source, tok, rows, cache, keys["prune"])
    wall["prune"] = time.perf_counter() - t0
    stages.append(score_stage("pruned", pruned, tok, eval_rows, job.score, wall["prune"], source))

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


__all__ = ["PLAIN", "DISTILLED", "run_finescope"]
