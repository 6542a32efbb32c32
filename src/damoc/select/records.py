"""Typed records of a selection run, written as JSON; reports render from these, never from ad-hoc dicts.

A :class:`UnitRecord` is the unit of resume: one (candidate, method) result, written atomically.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from damoc.io.files import read_json, write_json_atomic

Method = Literal["proxy", "zero_shot", "few_shot", "full"]
METHODS: tuple[Method, ...] = ("proxy", "zero_shot", "few_shot", "full")
METHOD_TITLES = {"proxy": "proxy", "zero_shot": "zero-shot", "few_shot": "few-shot", "full": "full FT"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path):
        return cls.model_validate(read_json(path))


class MetricScore(Record):
    """A unit's score by one more metric (``eval.extra_metrics``) on the same dev rows."""

    value: float
    higher_is_better: bool
    per_example: list[float] = Field(default_factory=list)
    predictions: list[str] | None = None


class UnitRecord(Record):
    """One candidate scored by one method (the proxy, a baseline, or the full fine-tune)."""

    candidate: str
    slug: str
    method: Method
    status: Literal["ok", "failed"]
    error: str | None = None
    error_detail: str | None = None  # a failure's full account (the library's load report, the traceback)
    metric: str
    higher_is_better: bool
    score: float | None = None
    n_dev: int = 0
    n_train: int = 0  # training rows used by the fine-tune
    train_steps: int = 0
    train_tokens: int = 0  # tokens through the fine-tune (forward + backward)
    eval_tokens: int = 0  # tokens through dev scoring
    prep_tokens: int = 0  # tokens through calibration (layer importance)
    wall_s: float = 0.0  # the work unit, in its worker (load + prune + train + eval)
    stage_s: dict[str, float] = Field(default_factory=dict)
    n_params: int | None = None  # after layer removal
    n_params_orig: int | None = None
    n_layers: int | None = None  # after layer removal
    layers_removed: list[int] = Field(default_factory=list)
    compression: dict[str, Any] | None = None  # the optional cross-calibrated stage (method, sparsity, ...)
    lr: float | None = None  # learning rate of the unit's fine-tune (proxy, full)
    train_loss_first: float | None = None
    train_loss_last: float | None = None
    per_example: list[float] = Field(default_factory=list)
    predictions: list[str] | None = None
    extra: dict[str, MetricScore] = Field(default_factory=dict)  # eval.extra_metrics, by name
    device: str = "cpu"
    host: str = ""
    pid: int = 0
    started_at: str = ""
    finished_at: str = ""
    cpu_s: float = 0.0  # CPU time of the work unit (all threads): a cost measure robust to a shared machine
    peak_rss_mb: float | None = None  # peak resident memory of the unit's worker during the unit (MiB)
    peak_gpu_mb: float | None = None  # peak CUDA memory torch allocated during the unit (MiB)
    cached: bool = False  # ground truth reused from the cache
    cache_key: str | None = None
    spec_hash: str | None = None  # the settings this record was made with (resume reruns it when they change)

    @property
    def tokens(self) -> int:
        return self.train_tokens + self.eval_tokens + self.prep_tokens


class DataRecord(Record):
    """What the data stages did (shared by every candidate)."""

    task: str
    fingerprint: str
    n_train: int
    n_dev: int
    n_proxy_train: int
    filter: str | None = None
    budget: float | None = None
    compress_rate: float | None = None
    achieved_rate: float | None = None
    rewrite: bool = False
    tokens_before: int | None = None
    tokens_after: int | None = None
    prep_tokens: int = 0  # tokens run through scorer/embedding models by the data stages
    stage_s: dict[str, float] = Field(default_factory=dict)
    summaries: dict[str, Any] = Field(default_factory=dict)
    config_hash: str = ""
    cpu_s: float = 0.0  # CPU time of the data stages in the main process
    proxy_ready: bool = False  # the proxy subset was made (not when only baselines/ground truth ran)

    @property
    def wall_s(self) -> float:
        return float(sum(self.stage_s.values()))


class Agreement(Record):
    """How well a cheap method's ranking matches the full fine-tune's (the true ranking)."""

    method: Method
    n: int
    spearman: float | None = None
    kendall: float | None = None
    top1_hit: bool | None = None
    top1_regret: float | None = None
    pairwise_acc: float | None = None
    ranking: list[str] = Field(default_factory=list)


class Cost(Record):
    """Full sweep ÷ proxy sweep, in wall time and tokens processed."""

    full_wall_s: float
    proxy_wall_s: float
    full_tokens: int
    proxy_tokens: int
    full_train_wall_s: float
    proxy_train_wall_s: float
    full_train_tokens: int
    proxy_train_tokens: int
    full_cpu_s: float | None = None  # None when a record has no CPU time
    proxy_cpu_s: float | None = None
    # wall seconds per stage, summed over each sweep's units (the proxy's also has "data stages")
    full_stage_s: dict[str, float] = Field(default_factory=dict)
    proxy_stage_s: dict[str, float] = Field(default_factory=dict)
    # the proxy subset is a fixed number of rows (data.budget >= 1), not a fraction: with more training
    # rows only the filter, which passes over all of them, grows on the proxy side
    fixed_budget: bool = False
    filter_wall_s: float = 0.0
    # the largest one-unit peak of each sweep's workers (MiB); None when a unit has none recorded
    full_peak_rss_mb: float | None = None
    proxy_peak_rss_mb: float | None = None
    full_peak_gpu_mb: float | None = None
    proxy_peak_gpu_mb: float | None = None

    @property
    def wall_ratio(self) -> float:
        return self.full_wall_s / max(1e-9, self.proxy_wall_s)

    @property
    def growing_wall_s(self) -> tuple[float, float] | None:
        """(full, proxy) wall seconds that grow with the training rows: the full fine-tunes; the data
        stages and the proxy fine-tunes when the proxy subset is a fraction of the rows, only the filter
        when it is a fixed number of rows. None: no breakdown."""
        if not self.full_stage_s or not self.proxy_stage_s:
            return None
        full = self.full_stage_s.get("finetune", 0.0)
        if self.fixed_budget:
            proxy = self.filter_wall_s
        else:
            proxy = self.proxy_stage_s.get("data stages", 0.0) + self.proxy_stage_s.get("finetune", 0.0)
        return (full, proxy) if full > 0 and (proxy > 0 or self.fixed_budget) else None

    def projected_wall_ratio(self, scale: float) -> float | None:
        """The wall ratio with ``scale`` times the training rows and the same dev split, from this run's
        measured parts: the growing parts scale, model load, layer removal and dev scoring stay."""
        grow = self.growing_wall_s
        if grow is None:
            return None
        full = self.full_wall_s + grow[0] * (scale - 1.0)
        proxy = self.proxy_wall_s + grow[1] * (scale - 1.0)
        return full / max(1e-9, proxy)

    @property
    def wall_ratio_limit(self) -> float | None:
        """What the wall ratio tends to as the training rows grow (the fixed parts vanish); ``inf`` when
        nothing on the proxy side grows."""
        grow = self.growing_wall_s
        if grow is None:
            return None
        return grow[0] / grow[1] if grow[1] > 0 else math.inf

    @property
    def cpu_ratio(self) -> float | None:
        if not self.full_cpu_s or not self.proxy_cpu_s:
            return None
        return self.full_cpu_s / self.proxy_cpu_s

    @property
    def token_ratio(self) -> float:
        return self.full_tokens / max(1, self.proxy_tokens)

    @property
    def train_wall_ratio(self) -> float:
        return self.full_train_wall_s / max(1e-9, self.proxy_train_wall_s)

    @property
    def train_token_ratio(self) -> float:
        return self.full_train_tokens / max(1, self.proxy_train_tokens)


class Row(Record):
    """One candidate on the leaderboard."""

    rank: int | None  # by proxy score (None when the proxy failed)
    candidate: str
    slug: str
    scores: dict[str, float | None] = Field(default_factory=dict)  # method -> score
    errors: dict[str, str] = Field(default_factory=dict)  # method -> error
    proxy_wall_s: float | None = None
    proxy_tokens: int | None = None
    layers_removed: list[int] = Field(default_factory=list)
    n_params: int | None = None


class Leaderboard(Record):
    """The result of ``damoc select``: candidates ranked by the proxy, with baselines and validation."""

    task: str
    metric: str
    higher_is_better: bool
    candidates: list[str]
    rows: list[Row]
    data: DataRecord
    records: list[UnitRecord]
    agreement: list[Agreement] = Field(default_factory=list)
    cost: Cost | None = None
    # candidates whose proxy score is worse than their uncompressed zero-shot score: proxy ÷ zero-shot
    compression_check: dict[str, float] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    run_dir: str = ""
    created_at: str = Field(default_factory=now_iso)

    def best(self) -> str | None:
        ranked = [r for r in self.rows if r.rank is not None]
        return min(ranked, key=lambda r: r.rank).candidate if ranked else None
