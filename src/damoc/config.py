"""Configs are data: pydantic models with unknown keys rejected, loaded from YAML.

Each job kind (``select``, ``prune-layers``, ``filter``, ...) is a :class:`JobConfig` subclass listed
in :data:`JOBS`. A YAML job file names its kind in ``job:``; ``damoc validate`` loads and checks it
without running anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from damoc.errors import DamocError
from damoc.registry import Entry, Registry

# load_job and the input checks import io.tasks and model.arch when called: io.tasks imports the zoo
# registry, which imports this module (a circle), and model.arch imports torch.


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


# --- which environment variables a job file may send to an endpoint --------------------------------

# A job file can name an endpoint and the variable whose value goes to it as a key; a shared file could
# so send any secret of the environment (a database password) to a host of its choosing. From a job file
# only these names, and those the user lists in DAMOC_API_KEY_ENVS (comma-separated), are accepted; a
# name given on the command line (--api-key-env) is the user's own choice and always accepted.
DEFAULT_KEY_ENVS = ("OPENAI_API_KEY",)
KEY_ENVS_VAR = "DAMOC_API_KEY_ENVS"


def allowed_key_envs() -> set[str]:
    extra = os.environ.get(KEY_ENVS_VAR, "")
    return {*DEFAULT_KEY_ENVS, *(n.strip() for n in extra.split(",") if n.strip())}


def check_key_envs(data: Any, where: str = "") -> None:
    """Every ``api_key_env`` in a job file's data names an allowed variable (see :data:`DEFAULT_KEY_ENVS`)."""
    if isinstance(data, list):
        for item in data:
            check_key_envs(item, where)
        return
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key == "api_key_env" and value is not None and str(value) not in allowed_key_envs():
            prefix = f"{where}: " if where else ""
            raise DamocError(
                f"{prefix}api_key_env '{value}' is not a variable a job file may send to an endpoint "
                f"(allowed: {', '.join(sorted(allowed_key_envs()))}); pass --api-key-env {value} on the "
                f"command line, or add it to {KEY_ENVS_VAR}"
            )
        check_key_envs(value, where)


def load_job(path: str | Path) -> JobConfig:
    data = read_yaml(path)
    kind = data.get("job")
    if not kind:
        raise DamocError(f"{path}: missing 'job:' key (one of: {', '.join(sorted(job_kinds()))})")
    check_key_envs(data, str(path))
    cls = JOBS.get(str(kind))
    return parse_config(cls, data, where=str(path))


# --- inputs of a job, checked by `damoc validate` ---------------------------------------------------

# Per job kind: dotted field -> what it names. "task": a task file/directory or a built-in task (read, and
# mapped with the job's ``fields`` when it has them); "model": a model directory whose files would load (the
# weights are not read), a zoo name or a cached Hugging Face id; "text": calibration text ('general', a
# built-in task, a .txt or task file).
JOB_INPUTS: dict[str, dict[str, str]] = {
    "select": {"task.path": "task", "task.dev_path": "task", "candidates": "model"},
    "filter": {"task": "task", "target": "task"},
    "compress": {"task": "task", "compress.scorer": "model"},
    "rewrite": {"compressed": "task", "original": "task", "rewrite.rewriter": "model"},
    "prune-layers": {"model": "model", "data": "text"},
    "prune-calibrated": {"model": "model", "calibration.general": "text", "calibration.domain": "text"},
    "quantize": {"model": "model", "calibration.general": "text", "calibration.domain": "text"},
    "curate": {"pool": "task", "seeds": "task", "model": "model"},
    "finescope": {"model": "model", "pool": "task", "seeds": "task", "eval": "task"},
}


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, "validate_" if part == "validate" else part, None)
        if obj is None:
            return None
    return obj


def _check_task_ref(name: str, fields: Any, what: str) -> None:
    from damoc.io.tasks import BUILTIN_TASKS, FieldMap, read_rows, to_examples

    if not Path(name).expanduser().exists() and name not in BUILTIN_TASKS:
        raise DamocError(f"{what} {name} does not exist (built-in tasks: {', '.join(BUILTIN_TASKS)})")
    to_examples(read_rows(name), fields if isinstance(fields, FieldMap) else None, source=name)


def _check_text_ref(name: str, what: str) -> None:
    from damoc.io.tasks import BUILTIN_TASKS

    if name in ("general", *BUILTIN_TASKS) or Path(name).expanduser().exists():
        return
    raise DamocError(f"{what} {name} does not exist ('general', a built-in task, a .txt or a task file)")


def check_job_inputs(cfg: JobConfig) -> None:
    """Every input the job names exists (and tasks read with the job's field mapping); one line if not."""
    fields = getattr(cfg, "fields", None) or getattr(getattr(cfg, "task", None), "fields", None)
    for dotted, kind in JOB_INPUTS.get(cfg.job, {}).items():
        value = _get(cfg, dotted)
        for name in value if isinstance(value, list) else [value]:
            if name is None or (isinstance(name, str) and name.lower() == "none"):
                continue
            what = f"{dotted} '{name}'" if kind != "model" else dotted
            if kind == "model":
                from damoc.model.arch import check_model

                check_model(str(name), dotted)
            elif kind == "task":
                # the field mapping applies to the job's own task; seeds, pools and targets use plain names
                own = dotted in ("task", "task.path", "task.dev_path", "original")
                _check_task_ref(str(name), fields if own else None, dotted)
            else:
                _check_text_ref(str(name), what)


def job_kinds() -> list[str]:
    return JOBS.names()
