"""Curation end to end: load pool and seeds, score with the chosen method (and the comparison ones),
write the top M rows with their scores and a report."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from damoc.curate.config import CurateJob, CurationSettings
from damoc.curate.curation import CURATORS, CurateContext, expected_random_precision, run_method
from damoc.curate.sae_io import export_sae_lens, load_sae, save_sae
from damoc.errors import DamocError
from damoc.io.files import check_output_dir, write_json_atomic, write_jsonl_atomic
from damoc.io.tasks import Example, load_examples
from damoc.model.arch import load_model

LOG = logging.getLogger(__name__)


@dataclass
class MethodSummary:
    method: str
    precision: float | None
    overlap_with_primary: float
    wall_s: float


@dataclass
class CurationReport:
    method: str
    top: int
    n_pool: int
    n_seeds: int
    dropped_seed_duplicates: int
    target_domain: str | None
    pool_domains: dict[str, int]
    random_expected_precision: float | None
    methods: list[MethodSummary]
    sae: dict | None = None
    embed_backend: str | None = None
    selected_ids: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def precision_of(self, method: str) -> float | None:
        return next((m.precision for m in self.methods if m.method == method), None)


@dataclass
class Curated:
    examples: list[Example]
    scores: list[float]
    report: CurationReport
    sae: Any = None  # the SAE the sae method used (trained, cached or given), when it ran

    def rows(self) -> list[dict]:
        return [
            {**ex.to_row(), "curation_score": s, "curation_rank": r}
            for r, (ex, s) in enumerate(zip(self.examples, self.scores, strict=True))
        ]


def check_inputs(n_pool: int, n_seeds: int, cfg: CurationSettings) -> None:
    if n_seeds < cfg.min_seeds:
        raise DamocError(
            f"need at least {cfg.min_seeds} seed rows, got {n_seeds} (add seeds or lower min_seeds)"
        )
    if n_pool < cfg.top:
        raise DamocError(f"the pool has {n_pool} rows, fewer than --top {cfg.top}: lower --top or add rows")


def _domain(ex: Example, field_name: str) -> str | None:
    v = ex.meta.get(field_name)
    return None if v is None else str(v)


def row_text(ex: Example, view: str) -> str:
    """The text of a row that curation scores (``CurationSettings.text_view``)."""
    if view == "question":
        return ex.question
    return ex.prompt() if view == "prompt" else ex.text()


def curate_examples(
    pool: list[Example],
    seeds: list[Example],
    cfg: CurationSettings,
    model=None,
    tok=None,
    model_name: str | None = None,
) -> Curated:
    """Score ``pool`` against ``seeds`` with ``cfg.method`` (plus ``cfg.compare``) and keep the top ``cfg.top``."""
    for name in [cfg.method, *cfg.compare]:
        CURATORS.entry(name)
    seeds = seeds[: cfg.max_seeds]
    seed_q = {s.question.strip() for s in seeds}
    kept = [e for e in pool if e.question.strip() not in seed_q]
    dropped = len(pool) - len(kept)
    check_inputs(len(kept), len(seeds), cfg)
    needs_model = "sae" in [cfg.method, *cfg.compare]
    if needs_model and model is None:
        raise DamocError("the sae curation method needs a model (pass --model)")
    domains = [_domain(e, cfg.domain_field) for e in kept]
    target = cfg.target_domain
    if target is None:
        seed_domains = [d for d in (_domain(s, cfg.domain_field) for s in seeds) if d is not None]
        target = Counter(seed_domains).most_common(1)[0][0] if seed_domains else None
    known = target is not None and any(d is not None for d in domains)
    pool_texts = [row_text(e, cfg.text_view) for e in kept]
    seed_texts = [row_text(s, cfg.text_view) for s in seeds]
    ctx = CurateContext(model=model, tok=tok, cfg=cfg, model_name=model_name)
    results = {}
    for name in dict.fromkeys([cfg.method, *cfg.compare]):
        LOG.info("curation: scoring %d rows with '%s'", len(kept), name)
        results[name] = run_method(
            name, pool_texts, seed_texts, ctx, cfg.top, domains if known else None, target
        )
    primary = results[cfg.method]
    chosen = set(primary.selected)
    summaries = [
        MethodSummary(n, r.precision, len(chosen & set(r.selected)) / cfg.top, r.wall_s)
        for n, r in results.items()
    ]
    report = CurationReport(
        method=cfg.method,
        top=cfg.top,
        n_pool=len(kept),
        n_seeds=len(seeds),
        dropped_seed_duplicates=dropped,
        target_domain=target if known else None,
        pool_domains=dict(Counter(d or "(none)" for d in domains)),
        random_expected_precision=expected_random_precision(domains, target) if known else None,
        methods=summaries,
        sae=ctx.artifacts.get("sae"),
        embed_backend=ctx.artifacts.get("embed_backend"),
        selected_ids=[kept[i].id for i in primary.selected],
        settings=cfg.model_dump(),
    )
    return Curated(
        [kept[i] for i in primary.selected],
        [primary.scores[i] for i in primary.selected],
        report,
        ctx.artifacts.get("sae_module"),
    )


def report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".report.json")


def run_curate(job: CurateJob) -> Curated:
    """Load files (and the model when the sae method is used), curate, write rows and report."""
    out = Path(job.out)
    if out.suffix != ".jsonl":
        raise DamocError(f"--out must be a .jsonl file, got {out}")
    if out.exists() and not job.overwrite:
        raise DamocError(f"{out} exists (pass --overwrite to replace it)")
    if job.save_sae:
        if "sae" not in [job.method, *job.compare]:
            raise DamocError("--save-sae needs the sae method (in --method or --compare)")
        check_output_dir(job.save_sae, job.overwrite)
    pool = load_examples(job.pool)
    seeds = load_examples(job.seeds)
    settings = CurationSettings.model_validate(job.model_dump(include=set(CurationSettings.model_fields)))
    for name in [settings.method, *settings.compare]:
        CURATORS.entry(name)
    check_inputs(len(pool), len(seeds[: settings.max_seeds]), settings)
    if settings.sae_path and "sae" in [settings.method, *settings.compare]:
        load_sae(settings.sae_path)  # a bad SAE directory fails before the model loads
    model = tok = None
    if "sae" in [settings.method, *settings.compare]:
        if not job.model:
            raise DamocError("the sae curation method needs a model (pass --model)")

        model, tok = load_model(job.model)
    curated = curate_examples(pool, seeds, settings, model, tok, job.model)
    write_jsonl_atomic(out, curated.rows())
    write_json_atomic(report_path(out), curated.report.to_dict())
    if job.save_sae and curated.sae is not None:
        save_sae_as(curated, job)
    return curated


def save_sae_as(curated: Curated, job: CurateJob) -> None:
    """Write the SAE a curation used, in damoc's layout or sae-lens's (``job.save_sae_format``)."""
    info = {k: v for k, v in (curated.report.sae or {}).items() if isinstance(v, str | int | float | bool)}
    info["model"] = job.model
    if job.save_sae_format == "sae-lens":
        layer = info.get("layer")
        hook = f"blocks.{layer}.hook_resid_post" if isinstance(layer, int) else None
        export_sae_lens(curated.sae, job.save_sae, job.model, hook, overwrite=job.overwrite)
    else:
        save_sae(curated.sae, job.save_sae, info, overwrite=job.overwrite)
