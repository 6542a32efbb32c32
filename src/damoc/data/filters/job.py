"""Run a :class:`~damoc.data.filters.config.FilterJob`: load the task, filter, write the subset.

One method writes ``SUBSET.jsonl`` (the kept rows, in the method's priority order) and
``SUBSET.scores.json`` beside it (what was run, every pool row's score, and which rows were kept).
A comparison writes a directory with each method's subset and scores plus ``compare.json``.
Every input is checked before any work, and files appear whole or not at all.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.data.filters.base import FILTERS, Selection, resolve_budget
from damoc.data.filters.config import FilterJob
from damoc.data.filters.run import Comparison, compare_filters, run_filter
from damoc.errors import DamocError
from damoc.io.files import atomic_output_dir, check_output_dir, write_json_atomic, write_jsonl_atomic
from damoc.io.tasks import Example, load_examples, load_task

log = logging.getLogger(__name__)


@dataclass
class FilterOutcome:
    """What a filter job did (the CLI prints it)."""

    pool: int
    dev: int
    budget: int
    selection: Selection | None = None
    comparison: Comparison | None = None
    wall_s: float = 0.0
    written: list[Path] | None = None


def scores_path(subset: Path) -> Path:
    return (
        subset.with_name(subset.name[: -len(subset.suffix)] + ".scores.json")
        if subset.suffix
        else subset.with_name(subset.name + ".scores.json")
    )


def load_pool(cfg: FilterJob) -> tuple[list[Example], list[Example]]:
    """``(pool, dev)``: the train split to filter and the held-out dev rows (empty with dev_size 0)."""
    if cfg.dev_size == 0:
        rows = load_examples(cfg.task, cfg.fields)
        if cfg.max_rows is not None and cfg.max_rows < len(rows):
            order = list(range(len(rows)))
            random.Random(cfg.seed).shuffle(order)
            rows = [rows[i] for i in order[: cfg.max_rows]]
        return rows, []
    dev_size: int | float = int(cfg.dev_size) if cfg.dev_size >= 1 else cfg.dev_size
    task = load_task(cfg.task, cfg.fields, dev_size=dev_size, seed=cfg.seed, max_rows=cfg.max_rows)
    return task.train, task.dev


def selection_record(
    cfg: FilterJob, method: str, sel: Selection, pool: list[Example], wall_s: float, options: dict[str, Any]
) -> dict[str, Any]:
    cls = FILTERS.get(method)
    kept = set(sel.indices)
    return {
        "method": method,
        "code": cls.code,
        "family": cls.family,
        "task": cfg.task,
        "seed": cfg.seed,
        "budget": cfg.budget,
        "pool": len(pool),
        "kept": len(sel.indices),
        "options": options,
        "wall_s": round(wall_s, 4),
        "score_name": sel.score_name,
        "info": sel.info,
        "selected": [pool[i].id for i in sel.indices],
        "rows": [
            {"id": ex.id, "score": None if sel.scores is None else sel.scores[i], "kept": i in kept}
            for i, ex in enumerate(pool)
        ],
    }


def _context_options(cfg: FilterJob, dev: list[Example]) -> dict[str, Any]:
    target = load_examples(cfg.target, cfg.fields) if cfg.target else (dev or None)
    opts: dict[str, Any] = {
        "embedder": cfg.embedder,
        "text_view": cfg.text_view,
        "reference_model": cfg.reference_model,
        "target": target,
        "label_field": cfg.fields.label,
    }
    if cfg.judge_model:
        opts["judge_model"] = cfg.judge_model
    return opts


def _check_out(cfg: FilterJob) -> None:
    if cfg.out is None:
        if cfg.method:
            raise DamocError("--out SUBSET.jsonl is needed to write the subset")
        return
    if cfg.method:
        if cfg.out.suffix != ".jsonl":
            raise DamocError(f"--out must be a .jsonl file, got {cfg.out}")
        for p in (cfg.out, scores_path(cfg.out)):
            if p.exists() and not cfg.overwrite:
                raise DamocError(f"{p} exists (pass --overwrite to replace it)")
            if p.is_dir():
                raise DamocError(f"{p} is a directory")


def run_filter_job(cfg: FilterJob) -> FilterOutcome:
    _check_out(cfg)
    if cfg.method and cfg.method not in FILTERS:
        FILTERS.entry(cfg.method)
    pool, dev = load_pool(cfg)
    k = resolve_budget(cfg.budget if cfg.budget < 1 else int(cfg.budget), len(pool))
    ctx_opts = _context_options(cfg, dev)
    if cfg.compare:
        return _run_compare(cfg, pool, dev, k, ctx_opts)
    assert cfg.method and cfg.out is not None
    method = FILTERS.entry(cfg.method).name
    if method == "dsir" and not ctx_opts["target"]:
        raise DamocError("dsir needs target rows: pass --target FILE or keep a dev split (--dev-size > 0)")
    t0 = time.perf_counter()
    sel = run_filter(method, pool, k, seed=cfg.seed, **ctx_opts, **cfg.options)
    wall = time.perf_counter() - t0
    record = selection_record(cfg, method, sel, pool, wall, cfg.options)
    sp = scores_path(cfg.out)
    write_json_atomic(sp, record)
    try:
        write_jsonl_atomic(cfg.out, [pool[i].to_row() for i in sel.indices])
    except BaseException:
        sp.unlink(missing_ok=True)
        raise
    return FilterOutcome(
        pool=len(pool), dev=len(dev), budget=k, selection=sel, wall_s=wall, written=[cfg.out, sp]
    )


def _run_compare(
    cfg: FilterJob, pool: list[Example], dev: list[Example], k: int, ctx_opts: dict[str, Any]
) -> FilterOutcome:
    names = [FILTERS.entry(n).name for n in cfg.compare or []]
    if "dsir" in names and not ctx_opts["target"]:
        raise DamocError("dsir needs target rows: pass --target FILE or keep a dev split (--dev-size > 0)")
    if cfg.out is not None:
        check_output_dir(cfg.out, cfg.overwrite)
    t0 = time.perf_counter()
    comp = compare_filters(names, pool, k, seed=cfg.seed, **ctx_opts, **cfg.options)
    wall = time.perf_counter() - t0
    written: list[Path] = []
    if cfg.out is not None:
        with atomic_output_dir(cfg.out, cfg.overwrite) as tmp:
            for run in comp.runs:
                if run.selection is None:
                    continue
                own = {
                    a: b for a, b in cfg.options.items() if a in FILTERS.get(run.method).Options.model_fields
                }
                write_jsonl_atomic(tmp / f"{run.method}.jsonl", [pool[i].to_row() for i in run.indices])
                write_json_atomic(
                    tmp / f"{run.method}.scores.json",
                    selection_record(cfg, run.method, run.selection, pool, run.wall_s, own),
                )
            write_json_atomic(tmp / "compare.json", {"task": cfg.task, **comp.to_record()})
        written = [cfg.out]
    return FilterOutcome(
        pool=len(pool), dev=len(dev), budget=k, comparison=comp, wall_s=wall, written=written
    )
