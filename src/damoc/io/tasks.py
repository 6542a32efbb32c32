"""Task loading: JSONL / JSON / CSV files, `datasets` directories, hub datasets and the bundled domain sets.

Every row becomes an :class:`Example` with ``question``, optional ``context``, ``answer`` and
optional ``label``. Field names are mapped with :class:`FieldMap`. A source with named splits (a saved
``DatasetDict``, or a Hugging Face hub dataset given as ``org/name``) keeps them: its train split trains
and its validation split (or dev/valid/val/test, in that order) is the dev split, unless ``splits`` names
others. Errors are one-line :class:`~damoc.errors.DamocError` messages that name the file and, where it
helps, the line.
"""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from damoc.errors import DamocError
from damoc.io.hashing import rows_digest
from damoc.zoo.registry import hub_download, is_hub_id

BUILTIN_TASKS = {
    "pubmedqa": "PubMedQA PQA-L, 1,000 biomedical yes/no/maybe questions with abstracts (MIT)",
    "finance": "TAT-QA dev subset, 1,200 financial questions over report tables and text (CC BY 4.0)",
}


class FieldMap(BaseModel):
    """Which column of the user's data holds each field."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = "id"
    question: str = "question"
    context: str | None = "context"
    answer: str = "answer"
    label: str | None = "label"


@dataclass
class Example:
    id: str
    question: str
    answer: str
    context: str = ""
    label: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": self.id,
            "question": self.question,
            "context": self.context,
            "answer": self.answer,
        }
        if self.label is not None:
            row["label"] = self.label
        row.update({k: v for k, v in self.meta.items() if k not in row})
        return row

    def user_text(self) -> str:
        """The context and the question: what a chat prompt puts in the user's turn."""
        parts = []
        if self.context:
            parts.append(f"Context: {self.context}")
        parts.append(f"Question: {self.question}")
        return "\n".join(parts)

    def prompt(self) -> str:
        """The raw text a model sees before the answer (context, question, then ``Answer:``)."""
        return f"{self.user_text()}\nAnswer:"

    def text(self) -> str:
        return f"{self.prompt()} {self.answer}"


@dataclass
class Task:
    name: str
    train: list[Example]
    dev: list[Example]
    source: str = ""

    @property
    def examples(self) -> list[Example]:
        return self.train + self.dev

    def fingerprint(self) -> str:
        """A content hash of the task (ids, texts and split), for caching results."""
        return rows_digest(
            [split, *_row(ex)] for split, rows in (("train", self.train), ("dev", self.dev)) for ex in rows
        )

    def labels(self) -> list[str]:
        return sorted({e.label for e in self.examples if e.label is not None})


def _row(ex: Example) -> list[Any]:
    return [ex.id, ex.question, ex.context, ex.answer, ex.label]


def examples_fingerprint(examples: list[Example]) -> str:
    """A content hash of examples (ids and texts, in order), for caching results made from them."""
    return rows_digest(_row(ex) for ex in examples)


def builtin_path(name: str) -> Path:
    root = resources.files("damoc") / "resources" / "data" / name / "data.jsonl"
    return Path(str(root))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line. Lines end at "\\n" only: JSON keeps U+2028/U+2029, U+0085 and other
    characters that ``str.splitlines`` would split on raw inside its strings."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DamocError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DamocError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append(obj)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DamocError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(obj, dict) and "data" in obj and isinstance(obj["data"], list):
        obj = obj["data"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DamocError(f"{path}: expected a JSON list of objects")
    return obj


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


# Splits that serve as the dev split of a source with named splits, in order of preference.
DEV_SPLITS = ("validation", "dev", "valid", "val", "test")


def _require_datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise DamocError(f"{what}: pip install datasets to read it") from None
    return datasets


def is_datasets_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists())


def is_hub_dataset(name: str) -> bool:
    """``org/name`` that is not a local path: a Hugging Face hub dataset."""
    return not Path(name).expanduser().exists() and str(name) not in BUILTIN_TASKS and is_hub_id(str(name))


def _hub_dataset(repo_id: str, subset: str | None = None):
    """A hub dataset as a ``DatasetDict``: its repository through the hub client (downloaded when the
    network is there, the cache when offline), then read by ``datasets`` from the local snapshot."""
    datasets = _require_datasets(f"{repo_id} is a hub dataset")

    try:
        local = hub_download(repo_id, repo_type="dataset")
    except DamocError as exc:  # it may also be a mistyped local path
        raise DamocError(f"{exc} (and no local file or directory {repo_id} exists)") from None
    try:
        loaded = datasets.load_dataset(
            str(local), name=subset, cache_dir=os.environ.get("HF_DATASETS_CACHE") or None
        )
    except (ValueError, FileNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DamocError(f"hub dataset '{repo_id}': {first}") from None
    return loaded


def source_splits(path: str | Path, subset: str | None = None) -> dict[str, list[dict[str, Any]]] | None:
    """The rows of each named split of a source that has them (a saved ``DatasetDict`` or a hub dataset);
    None for a file or a single dataset."""
    p = Path(str(path)).expanduser()
    if is_datasets_dir(p):
        datasets = _require_datasets(f"{p} looks like a `datasets` directory")
        ds = datasets.load_from_disk(str(p))
    elif not p.exists() and is_hub_dataset(str(path)):
        ds = _hub_dataset(str(path), subset)
    else:
        return None
    if not isinstance(ds, dict):  # a single Dataset: no named splits
        return None
    return {name: [dict(r) for r in ds[name]] for name in ds}


def _pooled(splits: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{**r, "split": r.get("split", name)} for name, rows in splits.items() for r in rows]


def _read_datasets_dir(path: Path) -> list[dict[str, Any]]:
    datasets = _require_datasets(f"{path} looks like a `datasets` directory")
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        return _pooled({name: [dict(r) for r in ds[name]] for name in ds})
    return [dict(r) for r in ds]


def read_rows(path: str | Path, subset: str | None = None) -> list[dict[str, Any]]:
    """Read raw rows from a file, directory or hub dataset (no field mapping; named splits pooled, each
    row's split in a ``split`` column)."""
    p = Path(path)
    if not p.exists():
        if str(path) in BUILTIN_TASKS:
            p = builtin_path(str(path))
        elif is_hub_dataset(str(path)):
            splits = source_splits(str(path), subset)
            rows = _pooled(splits) if splits else []
            if not rows:
                raise DamocError(f"hub dataset '{path}': no rows")
            return rows
        else:
            raise DamocError(
                f"task file {path} does not exist (built-in tasks: {', '.join(BUILTIN_TASKS)}; "
                f"a Hugging Face dataset is named org/name)"
            )
    try:
        if p.is_dir():
            if is_datasets_dir(p):
                rows = _read_datasets_dir(p)
            else:
                files = sorted([*p.glob("*.jsonl"), *p.glob("*.csv"), *p.glob("*.json")])
                if not files:
                    raise DamocError(
                        f"{p}: directory holds no .jsonl/.csv/.json files and is not a `datasets` directory"
                    )
                rows = [r for f in files for r in read_rows(f)]
        elif p.suffix == ".jsonl":
            rows = read_jsonl(p)
        elif p.suffix == ".json":
            rows = _read_json(p)
        elif p.suffix == ".csv":
            rows = _read_csv(p)
        else:
            raise DamocError(
                f"{p}: unknown task format '{p.suffix}' (use .jsonl, .json, .csv or a datasets directory)"
            )
    except UnicodeDecodeError as exc:
        raise DamocError(f"{p}: not UTF-8 text (byte {exc.start}): re-encode the file as UTF-8") from None
    if not rows:
        raise DamocError(f"{p}: no rows")
    return rows


def check_optional_fields(rows: list[dict[str, Any]], fields: FieldMap, where: str = "") -> None:
    """An optional field (id, context, label) mapped to a column of the user's choosing must exist.

    The default names (``id``, ``context``, ``label``) may be absent: the field is then empty. A name the
    user gave instead names a column they expect, and reading it as absent would, for instance, train on
    empty contexts without a word.
    """
    defaults = FieldMap()
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(map(str, r)))
    for name in ("id", "context", "label"):
        col = getattr(fields, name)
        if col is not None and col != getattr(defaults, name) and col not in columns:
            raise DamocError(
                f"{where}the {name} field is mapped to '{col}', which is not a column "
                f"(columns: {', '.join(columns)})"
            )


def to_examples(
    rows: list[dict[str, Any]], fields: FieldMap | None = None, source: str = ""
) -> list[Example]:
    fields = fields or FieldMap()
    where = f"{source}: " if source else ""
    for required in (fields.question, fields.answer):
        if required not in rows[0]:
            raise DamocError(
                f"{where}field '{required}' is missing (columns: {', '.join(map(str, rows[0]))}); "
                f"map it with --question-field/--answer-field"
            )
    check_optional_fields(rows, fields, where)
    out: list[Example] = []
    seen: set[str] = set()
    used = {fields.id, fields.question, fields.context, fields.answer, fields.label}
    for i, r in enumerate(rows):
        for required in (fields.question, fields.answer):
            if r.get(required) is None:
                raise DamocError(f"{where}row {i + 1} has no '{required}'")
        rid = str(r[fields.id]) if fields.id and r.get(fields.id) is not None else str(i)
        if rid in seen:
            raise DamocError(f"{where}duplicate id '{rid}' (row {i + 1})")
        seen.add(rid)
        ctx = r.get(fields.context) if fields.context else None
        if isinstance(ctx, list):
            ctx = "\n\n".join(map(str, ctx))
        label = r.get(fields.label) if fields.label else None
        meta = {k: v for k, v in r.items() if k not in used}
        out.append(
            Example(
                id=rid,
                question=str(r[fields.question]),
                answer=str(r[fields.answer]),
                context="" if ctx is None else str(ctx),
                label=None if label in (None, "") else str(label),
                meta=meta,
            )
        )
    return out


def split_examples(
    examples: list[Example], dev_size: int | float = 0.2, seed: int = 0, max_rows: int | None = None
) -> tuple[list[Example], list[Example]]:
    """Shuffle with ``seed`` and split; ``dev_size`` is a fraction (<1) or a row count."""
    rng = random.Random(seed)
    idx = list(range(len(examples)))
    rng.shuffle(idx)
    if max_rows is not None:
        idx = idx[:max_rows]
    n_dev = int(round(dev_size * len(idx))) if isinstance(dev_size, float) and dev_size < 1 else int(dev_size)
    if n_dev <= 0 or n_dev >= len(idx):
        raise DamocError(f"cannot hold out {n_dev} dev rows from a task of {len(idx)} rows")
    dev = [examples[i] for i in idx[:n_dev]]
    train = [examples[i] for i in idx[n_dev:]]
    return train, dev


def pick_splits(available: list[str], splits: dict[str, str] | None, source: str) -> tuple[str, str] | None:
    """The (train, dev) split names of a source with named splits: ``splits`` where given (each must
    exist), else ``train`` and the first of :data:`DEV_SPLITS` it has; None when it has no such pair."""
    splits = dict(splits or {})
    for role, name in splits.items():
        if role not in ("train", "dev"):
            raise DamocError(f"unknown split role '{role}' (use train and dev, e.g. dev=validation)")
        if name not in available:
            raise DamocError(f"unknown split '{name}' for {source} (its splits: {', '.join(available)})")
    train = splits.get("train", "train")
    dev = splits.get("dev") or next((d for d in DEV_SPLITS if d in available and d != train), None)
    if train not in available or dev is None:
        if splits:
            raise DamocError(
                f"{source}: name both splits (its splits: {', '.join(available)}), e.g. train=train,dev=test"
            )
        return None
    if train == dev:
        raise DamocError(f"{source}: the train and dev splits are both '{train}'")
    return train, dev


def load_task(
    path: str | Path,
    fields: FieldMap | None = None,
    dev_size: int | float = 0.2,
    seed: int = 0,
    max_rows: int | None = None,
    dev_path: str | Path | None = None,
    splits: dict[str, str] | None = None,
    subset: str | None = None,
) -> Task:
    """Load a task. The dev split comes from ``dev_path`` when given; else from the source's own splits
    when it has them (``splits`` names them: ``{"train": "train", "dev": "validation"}``); else
    ``dev_size`` rows are held out at random. ``max_rows`` bounds the training rows when the dev split is
    given, the whole task when it is held out."""
    name = Path(str(path)).stem if str(path) not in BUILTIN_TASKS else str(path)
    own = source_splits(path, subset) if dev_path is None else None
    if splits and own is None:
        raise DamocError(
            f"{path} has no named splits (a saved DatasetDict or a hub dataset has): drop the split setting"
        )
    picked = pick_splits(list(own), splits, str(path)) if own is not None else None
    if dev_path is not None or picked is not None:
        if picked is not None:
            train_rows, dev_rows = own[picked[0]], own[picked[1]]  # type: ignore[index]
            if not train_rows or not dev_rows:
                raise DamocError(f"{path}: split '{picked[0] if not train_rows else picked[1]}' has no rows")
            examples = to_examples(train_rows, fields, source=f"{path}[{picked[0]}]")
            dev = to_examples(dev_rows, fields, source=f"{path}[{picked[1]}]")
        else:
            examples = to_examples(read_rows(path, subset), fields, source=str(path))
            dev = to_examples(read_rows(dev_path), fields, source=str(dev_path))  # type: ignore[arg-type]
        rng = random.Random(seed)
        train = list(examples)
        rng.shuffle(train)
        if max_rows is not None:
            train = train[:max_rows]
        return Task(name=name, train=train, dev=dev, source=str(path))
    rows = _pooled(own) if own is not None else read_rows(path, subset)
    examples = to_examples(rows, fields, source=str(path))
    train, dev = split_examples(examples, dev_size, seed, max_rows)
    return Task(name=name, train=train, dev=dev, source=str(path))


def load_examples(path: str | Path, fields: FieldMap | None = None) -> list[Example]:
    """All rows of a file as examples, no split."""
    return to_examples(read_rows(path), fields, source=str(path))


def calibration_texts(
    path: str | Path, fields: FieldMap | None = None, limit: int | None = None
) -> list[str]:
    """Texts to calibrate on: a task file's examples (context + question + answer) or a plain .txt file.

    A .txt file gives one text per blank-line-separated paragraph.
    """
    p = Path(path)
    if p.suffix == ".txt":
        if not p.exists():
            raise DamocError(f"text file {p} does not exist")
        try:
            raw = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DamocError(f"{p}: not UTF-8 text") from None
        texts = [t.strip() for t in raw.split("\n\n") if t.strip()]
        if not texts:
            raise DamocError(f"{p}: no text")
    else:
        texts = [e.text() for e in load_examples(path, fields)]
    return texts[:limit] if limit else texts
