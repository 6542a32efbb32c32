"""``damoc select`` top to bottom: check → data stages → work units per candidate → leaderboard.

Run directory::

    config.yaml               the config used
    data/                     train/dev splits, filtered/compressed subsets, shots, data.json
    candidates/<slug>/        <method>.json records (adaptive rounds: proxy@r<r>.json), worker.log, job.json
    adaptive/round<r>/        adaptive proxy: each round's training and dev rows; adaptive.json its trail
    leaderboard.json          typed Leaderboard (records, intervals, ranking agreement, cost)
    report.md, leaderboard.png

Records are the unit of resume: ``resume=True`` reruns only the units without a successful record.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from damoc.config import parse_config
from damoc.data.compress import CompressConfig, RewriteConfig, compress_examples
from damoc.data.compress import rewrite as rewriting
from damoc.data.filters import make_filter, run_filter
from damoc.data.filters.run import split_options
from damoc.errors import DamocError, require
from damoc.evaluate.metrics import get_metric
from damoc.evaluate.scoring import check_metric_fits
from damoc.io.files import atomic_output_dir, read_json, to_jsonable, write_jsonl_atomic, write_text_atomic
from damoc.io.tasks import Example, Task, load_task
from damoc.select.adaptive_run import run_adaptive
from damoc.select.backends.base import BACKENDS, Backend
from damoc.select.cache import GroundTruthCache, ground_truth_key
from damoc.select.calibrated_stage import check_settings
from damoc.select.config import SelectConfig, candidate_slug, config_hash, resolve_auto, settings_payload
from damoc.select.lock import run_lock
from damoc.select.records import DataRecord, Leaderboard, Method, UnitRecord
from damoc.select.report import build_leaderboard, write_reports
from damoc.select.worker import CandidateJob, UnitSpec, layer_prune_config, read_examples
from damoc.threads import torch_threads
from damoc.train.finetune import FinetuneConfig
from damoc.zoo.registry import ZOO, hub_model_dir, is_hub_id

LOG = logging.getLogger(__name__)

DEFAULT_REWRITER = "smollm2-135m"  # local chat model used when data.rewrite_options names none

# Config sections that must match when a run is resumed (the rest only says how/where to run).
# Other changes (data, model, proxy, eval, validate) only rerun the units they affect.
RESUME_KEYS = ("task", "seed")


@dataclass
class DataStage:
    record: DataRecord
    train: Path  # the whole (bounded) training split
    dev: Path
    proxy_train: Path  # filtered (+ compressed, + rewritten)
    calibration: Path  # filtered, uncompressed: texts for layer importance
    shots: Path


# --- checks (before anything is written) ---------------------------------------------------------


def check_candidates(candidates: list[str]) -> None:
    """Each candidate is an existing path, a zoo name, or a hub id (downloaded here, once, before any
    worker starts; found in the hub cache when offline).

    A broken model directory is not caught here: it fails in its worker and is recorded.
    """
    known = ZOO.names()
    for c in candidates:
        if Path(c).expanduser().exists() or c.lower() in known:
            continue
        if is_hub_id(c):
            hub_model_dir(c)  # a one-line error when the hub has no such model (or is off and lacks it)
            continue
        zoo = f"; zoo models: {', '.join(sorted(known))}" if known else ""
        raise DamocError(f"unknown candidate '{c}': not a model directory, a zoo model nor a hub id{zoo}")


def load_checked_task(cfg: SelectConfig) -> tuple[Task, list[Example]]:
    """The task and the dev rows to score, with one-line errors for what cannot work."""
    t = cfg.task
    task = load_task(t.path, t.fields, t.dev_size, t.seed, t.max_rows, t.dev_path, t.splits, t.subset)
    need = cfg.eval.dev_rows
    if need is not None and len(task.dev) < need:
        raise DamocError(
            f"the task has {len(task.dev)} dev rows but eval.dev_rows is {need} "
            f"(raise task.dev_size or lower eval.dev_rows)"
        )
    dev = task.dev[:need] if need is not None else task.dev
    if len(dev) < 2:
        raise DamocError(f"need at least 2 dev rows to score candidates, the task has {len(dev)}")
    for name in [cfg.eval.metric, *cfg.eval.extra_metrics]:
        check_metric_fits(name, dev, cfg.eval.options_field)
    if train_target(cfg) == "label":
        check_metric_fits(cfg.eval.metric, task.train)
    if cfg.baselines and cfg.eval.few_shot_k > len(task.train):
        raise DamocError(f"few-shot k={cfg.eval.few_shot_k} is more than the {len(task.train)} training rows")
    return task, dev


def train_target(cfg: SelectConfig) -> str:
    if cfg.eval.train_target != "auto":
        return cfg.eval.train_target
    return "label" if get_metric(cfg.eval.metric).needs_labels else "answer"


# --- run directory ---------------------------------------------------------------------------------


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    return None if a == b else where


def refuse_a_used_run_dir(run: Path, resume: bool, overwrite: bool) -> None:
    """A run directory that already holds something is continued (resume) or replaced (overwrite), never
    mixed with a new run; checked before the lock is taken (nothing is written to refuse) and again under it."""
    if run.exists() and not run.is_dir():
        raise DamocError(f"run directory {run} exists and is not a directory")
    if not (resume or overwrite) and run.is_dir() and any(run.iterdir()):
        raise DamocError(f"run directory {run} is not empty (pass --resume to continue it, or --overwrite)")


def open_run_dir(cfg: SelectConfig, resume: bool, overwrite: bool) -> Path:
    run = Path(cfg.run.run_dir).expanduser()
    refuse_a_used_run_dir(run, resume, overwrite)
    saved = run / "config.yaml"
    if run.is_dir() and any(run.iterdir()):
        if overwrite:
            shutil.rmtree(run)
        elif saved.is_file():
            old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
            new = cfg.dump()
            for key in RESUME_KEYS:
                diff = _first_difference(old.get(key), new.get(key), key)
                if diff:
                    raise DamocError(
                        f"cannot resume {run}: '{diff}' differs from the run's config.yaml (use a new run dir)"
                    )
            for key in ("data", "model", "proxy", "eval", "validate"):
                if old.get(key) != new.get(key):
                    LOG.info("resume: '%s' settings changed; the units they affect will be redone", key)
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, yaml.safe_dump(cfg.dump(), sort_keys=False))
    return run


# --- data stages -----------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, (str, int, float, bool, list, dict)):
        return obj
    try:
        return to_jsonable(obj)
    except TypeError:
        return str(obj)


def _write_examples(path: Path, examples: list[Example]) -> Path:
    return write_jsonl_atomic(path, [e.to_row() for e in examples])


def run_filter_stage(cfg: SelectConfig, train: list[Example], rec: DataRecord) -> list[Example]:
    d = cfg.data
    if d.filter is None or d.filter == "none":
        return list(train)
    t0 = time.perf_counter()
    sel = run_filter(d.filter, train, d.budget, seed=cfg.seed, **d.filter_options)
    rec.stage_s["filter"] = time.perf_counter() - t0
    picked = [train[i] for i in sel.indices]
    if not picked:
        raise DamocError(f"filter '{d.filter}' with budget {d.budget} kept no training rows")
    return picked


def compress_config(cfg: SelectConfig):
    options = {**cfg.data.compress_options, "rate": cfg.data.compress_rate}
    return parse_config(CompressConfig, options, where="data.compress_options")


def rewrite_config(cfg: SelectConfig):
    options = dict(cfg.data.rewrite_options)
    if not options.get("rewriter") and not options.get("endpoint"):
        options["rewriter"] = DEFAULT_REWRITER
    return parse_config(RewriteConfig, options, where="data.rewrite_options")


def check_stages(cfg: SelectConfig) -> None:
    """Stage settings (filter name and options, compression, rewriting, layer pruning) checked up front."""
    d = cfg.data
    if d.filter not in (None, "none"):
        make_filter(d.filter, split_options(d.filter_options)[1])
    if d.compress_rate is not None and d.compress_rate < 1:
        compress_config(cfg)
    if d.rewrite:
        rewrite_config(cfg)
    if cfg.model.layer_fraction > 0:
        layer_prune_config(cfg.model)
    if cfg.model.calibrated is not None:
        check_settings(cfg.model.calibrated)


def run_compress_stage(cfg: SelectConfig, examples: list[Example], rec: DataRecord) -> list[Example]:
    d = cfg.data
    if d.compress_rate is None or d.compress_rate >= 1:
        return examples
    ccfg = compress_config(cfg)
    t0 = time.perf_counter()
    result = compress_examples(examples, ccfg)
    rec.stage_s["compress"] = time.perf_counter() - t0
    summary = result.summary
    rec.summaries["compress"] = _jsonable(summary)
    rec.achieved_rate = summary.achieved_rate
    rec.tokens_before = summary.original_tokens
    rec.tokens_after = summary.kept_tokens
    rec.prep_tokens += int(rec.tokens_before or 0)  # the scorer reads every original token
    return list(result.examples)


def run_rewrite_stage(cfg: SelectConfig, originals: list[Example], examples: list[Example], rec: DataRecord):
    """Rewrite the compressed examples into fluent text, checked against the originals (docs/rewriting.md)."""
    if not cfg.data.rewrite:
        return examples
    rcfg = rewrite_config(cfg)
    t0 = time.perf_counter()
    result = rewriting.rewrite_examples(examples, originals, rcfg, rewriting.build_rewriter(rcfg))
    rec.stage_s["rewrite"] = time.perf_counter() - t0
    rec.summaries["rewrite"] = _jsonable(result.summary)
    return list(result.examples)


def prepare_data(
    cfg: SelectConfig, task: Task, dev: list[Example], run: Path, resume: bool, need_proxy: bool = True
) -> DataStage:
    """Filter → compress → rewrite once, for every candidate; reused on resume when the settings match.

    Without ``need_proxy`` (only baselines or ground truth to run) the splits are written but the
    data-level compression is left for later.
    """
    root = run / "data"
    stage = DataStage(
        record=None,  # type: ignore[arg-type]
        train=root / "train.jsonl",
        dev=root / "dev.jsonl",
        proxy_train=root / "proxy_train.jsonl",
        calibration=root / "calibration.jsonl",
        shots=root / "shots.jsonl",
    )
    key = config_hash(
        {
            "task": task.fingerprint(),
            "data": cfg.data,
            "seed": cfg.seed,
            "dev": len(dev),
        }
    )
    if resume and (root / "data.json").is_file():
        rec = DataRecord.load(root / "data.json")
        if rec.config_hash == key and (rec.proxy_ready or not need_proxy):
            LOG.info("data stages: reusing %s", root)
            stage.record = rec
            return stage
    rec = DataRecord(
        task=task.name,
        fingerprint=task.fingerprint(),
        n_train=len(task.train),
        n_dev=len(dev),
        n_proxy_train=0,
        filter=cfg.data.filter,
        budget=cfg.data.budget if cfg.data.filter else None,
        compress_rate=cfg.data.compress_rate,
        rewrite=cfg.data.rewrite,
        config_hash=key,
    )
    filtered: list[Example] = []
    proxy_train: list[Example] = []
    if need_proxy:
        cpu0 = time.process_time()
        filtered = run_filter_stage(cfg, task.train, rec)
        compressed = run_compress_stage(cfg, filtered, rec)
        proxy_train = run_rewrite_stage(cfg, filtered, compressed, rec)
        rec.proxy_ready = True
        rec.cpu_s = time.process_time() - cpu0
    rec.n_proxy_train = len(proxy_train)
    rng = random.Random(cfg.seed)
    shots = rng.sample(task.train, min(cfg.eval.few_shot_k, len(task.train)))
    with atomic_output_dir(root, overwrite=True) as tmp:
        _write_examples(tmp / stage.train.name, task.train)
        _write_examples(tmp / stage.dev.name, dev)
        _write_examples(tmp / stage.proxy_train.name, proxy_train)
        _write_examples(tmp / stage.calibration.name, filtered)
        _write_examples(tmp / stage.shots.name, shots)
        rec.save(tmp / "data.json")
    LOG.info("data stages: %d training rows -> %d proxy rows", len(task.train), len(proxy_train))
    stage.record = rec
    return stage


# --- work units ------------------------------------------------------------------------------------


def candidate_dir(run: Path, slug: str) -> Path:
    return run / "candidates" / slug


def plan_units(cfg: SelectConfig, task: Task, stage: DataStage, run: Path) -> list[UnitSpec]:
    """Every (candidate, method) unit of the run, proxies first, full fine-tunes last."""
    methods: list[Method] = ["proxy"]
    if cfg.baselines:
        methods += ["zero_shot", "few_shot"] if cfg.eval.few_shot_k > 0 else ["zero_shot"]
    if cfg.validate_.enabled:
        methods.append("full")
    target = train_target(cfg)
    labels = task.labels() or None
    units = []
    for method in methods:
        for cand in cfg.candidates:
            for ft in cfg.validate_.finetunes() if method == "full" else [None]:
                units.append(_unit(cfg, stage, run, method, cand, ft, labels, target))
    return units


def _unit(
    cfg: SelectConfig,
    stage: DataStage,
    run: Path,
    method: Method,
    cand: str,
    ft: FinetuneConfig | None,
    labels: list[str] | None,
    target: str,
) -> UnitSpec:
    """One (candidate, method) unit; a full fine-tune of an lr grid is named after its rate."""
    slug = candidate_slug(cand)
    name = f"full@lr{ft.lr:g}" if ft is not None and cfg.validate_.lr_grid is not None else method
    spec = UnitSpec(
        candidate=cand,
        slug=slug,
        method=method,
        record_path=str(candidate_dir(run, slug) / f"{name}.json"),
        dev_path=str(stage.dev),
        labels=labels,
        eval=cfg.eval.model_copy(update={"prompt_format": cfg.prompt_format(cand), "prompt_formats": {}}),
        train_target=target,  # type: ignore[arg-type]
        device=cfg.run.device,
        dtype=cfg.run.dtype,
        threads=cfg.run.threads,
        checkpoint_every_s=cfg.run.checkpoint_every_s,
        seed=cfg.seed,
    )
    if method == "proxy":
        spec = spec.model_copy(
            update={
                "train_path": str(stage.proxy_train),
                "calib_path": str(stage.calibration),
                "finetune": cfg.proxy,
                "model": cfg.model,
            }
        )
    elif method == "few_shot":
        spec = spec.model_copy(update={"shots_path": str(stage.shots)})
    elif method == "full":
        truth_eval = spec.eval.model_copy(update={"precision": cfg.validate_.eval_precision})
        spec = spec.model_copy(update={"train_path": str(stage.train), "finetune": ft, "eval": truth_eval})
    return spec


def _done(spec: UnitSpec, retry_failed: bool = False) -> UnitRecord | None:
    """The unit's record when it needs no rerun: a success, or a failure unless retrying failures."""
    rec = _current(spec)
    if rec is None or (rec.status != "ok" and retry_failed):
        return None
    return rec


def _current(spec: UnitSpec) -> UnitRecord | None:
    """The unit's record if it was made with the current settings (failed ones included)."""
    p = Path(spec.record_path)
    if not p.is_file():
        return None
    try:
        rec = UnitRecord.load(p)
    except ValueError:
        return None
    return rec if rec.spec_hash == spec.spec_hash and rec.cache_key == spec.cache_key else None


def make_backend(cfg: SelectConfig) -> Backend:
    """The backend ``run.backend`` names, built from the job's ``run:`` settings."""
    return BACKENDS.get(cfg.run.backend).from_run(cfg.run)


def attach_cache_keys(cfg: SelectConfig, units: list[UnitSpec], stage: DataStage) -> None:
    """Full fine-tune units get their ground-truth cache key (task data, candidate, fine-tune, eval)."""
    if not cfg.validate_.enabled:
        return
    train, dev = read_examples(stage.train), read_examples(stage.dev)
    for i, u in enumerate(units):
        if u.method == "full":
            key = ground_truth_key(
                train,
                dev,
                u.candidate,
                u.finetune,
                u.eval,
                u.train_target,
            )
            units[i] = u.model_copy(update={"cache_key": key})


def attach_spec_hashes(units: list[UnitSpec], stage: DataStage) -> None:
    """Each unit's settings hash (its records are reused on resume only while it matches)."""
    skip = {"record_path", "device", "threads", "checkpoint_every_s", "spec_hash"}
    for i, u in enumerate(units):
        payload = settings_payload(u, exclude=skip)
        payload["data"] = stage.record.config_hash if u.method == "proxy" else stage.record.fingerprint
        units[i] = u.model_copy(update={"spec_hash": config_hash(payload)})


def group_jobs(cfg: SelectConfig, units: list[UnitSpec], run: Path) -> list[CandidateJob]:
    """One job (one worker process) per candidate, its units in plan order; stale records removed."""
    jobs: dict[str, CandidateJob] = {}
    for u in units:
        Path(u.record_path).unlink(missing_ok=True)
        if u.candidate not in jobs:
            d = candidate_dir(run, u.slug)
            jobs[u.candidate] = CandidateJob(
                candidate=u.candidate,
                slug=u.slug,
                job_path=str(d / "job.json"),
                log_path=str(d / "worker.log"),
                units=[],
                timeout_s=cfg.run.timeout_s,
                progress_s=cfg.run.progress_s or None,
            )
        jobs[u.candidate].units.append(u)
    order = {c: i for i, c in enumerate(cfg.candidates)}
    return sorted(jobs.values(), key=lambda j: order[j.candidate])


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops the run like Ctrl-C: the backend stops its workers and finished records stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_select(
    cfg: SelectConfig,
    resume: bool = False,
    overwrite: bool = False,
    methods: Sequence[Method] | None = None,
    retry_failed: bool = False,
):
    """Run (or resume) a selection and return its :class:`~damoc.select.records.Leaderboard`.

    ``methods`` limits the units run now (e.g. ``["full"]`` to compute the ground truth first); the
    leaderboard still shows every record already in the run directory. On resume, units with a
    record are skipped; failed ones too unless ``retry_failed``.
    """
    cfg = resolve_auto(cfg)
    check_candidates(cfg.candidates)
    check_stages(cfg)
    task, dev = load_checked_task(cfg)
    if cfg.run.backend == "ray":
        require("ray", "ray")
    refuse_a_used_run_dir(Path(cfg.run.run_dir).expanduser(), resume, overwrite)
    with run_lock(Path(cfg.run.run_dir)):
        return _run_locked(cfg, task, dev, resume, overwrite, methods, retry_failed)


def _run_locked(
    cfg: SelectConfig,
    task: Task,
    dev: list[Example],
    resume: bool,
    overwrite: bool,
    methods: Sequence[Method] | None,
    retry_failed: bool,
):
    run = open_run_dir(cfg, resume, overwrite)
    need_proxy = methods is None or "proxy" in methods
    with torch_threads(cfg.run.threads):  # the data stages run here, in the main process
        stage = prepare_data(cfg, task, dev, run, resume, need_proxy)
    units = plan_units(cfg, task, stage, run)
    attach_cache_keys(cfg, units, stage)
    attach_spec_hashes(units, stage)
    cache = GroundTruthCache(cfg.validate_.cache_dir)
    adaptive = cfg.adaptive.active(len(cfg.candidates)) and stage.record.proxy_ready
    todo = []
    for u in units:
        if methods is not None and u.method not in methods:
            continue
        if adaptive and u.method == "proxy":
            continue  # the adaptive rounds run these
        if resume and _done(u, retry_failed) is not None:
            LOG.info("resume: %s / %s already done", u.candidate, u.method)
            continue
        hit = cache.get(u.cache_key) if u.method == "full" and u.cache_key else None
        if hit is not None:
            LOG.info("ground truth for %s from the cache", u.candidate)
            hit = hit.model_copy(
                update={
                    "cached": True,
                    "candidate": u.candidate,
                    "slug": u.slug,
                    "spec_hash": u.spec_hash,
                    "lr": u.finetune.lr if u.finetune else hit.lr,
                }
            )
            hit.save(u.record_path)
            continue
        todo.append(u)

    def on_done(spec: UnitSpec, rec: UnitRecord) -> None:
        LOG.info("%s / %s: %s %s", spec.candidate, spec.method, rec.status, rec.error or f"{rec.score:.4f}")
        if spec.method == "full":
            cache.put(rec)

    def run_units(specs: list[UnitSpec]) -> None:
        with _sigterm_as_interrupt():
            make_backend(cfg).run(group_jobs(cfg, specs, run), on_done)

    rounds = None
    if adaptive:  # the proxy in rounds of growing size, clear losers dropped (damoc.select.adaptive)
        rounds = run_adaptive(
            cfg,
            [u for u in units if u.method == "proxy"],
            run,
            stage.proxy_train,
            stage.dev,
            stage.record.n_proxy_train,
            run_units if methods is None or "proxy" in methods else None,
            lambda u: _done(u, retry_failed),
        )
    if todo:
        run_units(todo)
    records = [
        rec for u in units if (rec := _current(u)) is not None and not (rounds and u.method == "proxy")
    ]
    board = build_leaderboard(cfg, stage.record, records, run, rounds)
    write_reports(board, run)
    return board


def load_leaderboard(run_dir: str | Path):
    return Leaderboard.model_validate(read_json(Path(run_dir) / "leaderboard.json"))
