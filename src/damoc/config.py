"""Configs are data: pydantic models with unknown keys rejected, loaded from YAML.

Each job kind (``select``, ``prune-layers``, ``filter``, ...) is a :class:`JobConfig` subclass listed
in :data:`JOBS`. A YAML job file names its kind in ``job:``; ``damoc validate`` loads and checks it
without running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from damoc.errors import DamocError
from damoc.registry import Entry, Registry


class StrictModel(BaseModel):
    """Base for every config: unknown keys are an error, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class JobConfig(StrictModel):
    """A runnable job; subclasses add their fields and are listed in :data:`JOBS` under their ``job`` name."""

    job: str


# Every job kind a YAML file can name in ``job:`` (its module is imported when a file names it; its help
# is the first line of its class docstring). docs/jobs.md lists them with their examples.
JOBS: Registry[type[JobConfig]] = Registry(
    "job kind",
    [
        Entry("select", "damoc.select.config:SelectConfig"),
        Entry("filter", "damoc.data.filters.config:FilterJob"),
        Entry("compress", "damoc.data.compress.config:CompressJob"),
        Entry("rewrite", "damoc.data.compress.config:RewriteJob"),
        Entry("prune-layers", "damoc.model.config:PruneLayersJob"),
        Entry("prune-calibrated", "damoc.model.calibrated.config:PruneCalibratedJob"),
        Entry("quantize", "damoc.model.calibrated.config:QuantizeJob"),
        Entry("curate", "damoc.curate.config:CurateJob"),
        Entry("finescope", "damoc.curate.config:FinescopeJob"),
    ],
)


def format_validation_error(exc: ValidationError, where: str = "") -> str:
    """One line naming the first offending key and what is wrong with it."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    prefix = f"{where}: " if where else ""
    return f"{prefix}{loc}: {msg}{more}"


def parse_config(cls: type[BaseModel], data: dict[str, Any], where: str = "") -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise DamocError(format_validation_error(exc, where)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise DamocError(f"job file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise DamocError(f"{p}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise DamocError(f"{p}: a job file must be a YAML mapping with a 'job:' key")
    return data


def load_job(path: str | Path) -> JobConfig:
    data = read_yaml(path)
    kind = data.get("job")
    if not kind:
        raise DamocError(f"{path}: missing 'job:' key (one of: {', '.join(sorted(job_kinds()))})")
    cls = JOBS.get(str(kind))
    return parse_config(cls, data, where=str(path))


def job_kinds() -> list[str]:
    return JOBS.names()
