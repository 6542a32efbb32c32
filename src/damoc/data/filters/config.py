"""The ``filter`` job: pick a subset of a task's rows with one filter, or compare several.

```yaml
job: filter
task: pubmedqa            # a file, a directory, or a built-in task name
method: kcenter           # or compare: [random, kcenter, heuristics]
budget: 0.1               # fraction in (0, 1) or a row count
out: subset.jsonl         # with compare: a directory
options: {embedder: tfidf}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from damoc.config import JobConfig
from damoc.data.filters.base import FILTERS
from damoc.hardware import HardwareSettings
from damoc.io.tasks import FieldMap


class FilterJob(JobConfig, HardwareSettings):
    """Keep a budget of a task's rows with one filter, or compare several (``damoc filter``; docs/data_filters.md).

    Sample YAML (``examples/filter.yaml``)::

        job: filter
        task: pubmedqa
        method: kcenter
        budget: 0.1
        out: runs/pubmedqa.kcenter.jsonl
        options: {start: medoid}

    Fields:
        method: the filter to run (damoc filter --list); give either method or compare
        seed: seed of the dev split and of every random choice
        fields: the task's column names (question, context, answer, label, id)
        overwrite: replace existing outputs
    """

    job: str = "filter"
    task: str  # file, directory or built-in task name
    method: str | None = None
    compare: list[str] | None = None  # several methods: report time and overlap, write each subset
    budget: float = 0.1  # fraction in (0, 1) or a row count >= 1
    out: Path | None = None  # SUBSET.jsonl (one method) or a directory (compare)
    seed: int = Field(0, ge=0)
    fields: FieldMap = Field(default_factory=FieldMap)
    dev_size: float = Field(0.2, ge=0)  # rows held out as dev (fraction or count); 0 filters every row
    max_rows: int | None = Field(None, ge=1)  # cap on the rows read (after shuffling with the seed)
    target: str | None = None  # DSIR target rows (file); default the held-out dev split
    embedder: str = "auto"  # auto, minilm or tfidf
    text_view: Literal["qac", "text", "prompt", "question", "answer"] = "qac"  # the text embedded / hashed
    reference_model: str = "smollm2-135m"  # LM for perplexity and IFD (zoo name or directory)
    judge_model: str | None = None  # instruct LM for llm-judge; default reference_model
    options: dict[str, Any] = Field(default_factory=dict)  # the method's own options
    overwrite: bool = False

    @field_validator("budget")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("budget must be > 0 (a fraction in (0, 1) or a row count)")
        if v >= 1 and not float(v).is_integer():
            raise ValueError("a budget >= 1 is a row count and must be whole")
        return v

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, v: str) -> str:
        if v not in ("auto", "minilm", "tfidf"):
            raise ValueError("embedder must be auto, minilm or tfidf")
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> FilterJob:
        if bool(self.method) == bool(self.compare):
            raise ValueError("give either method or compare")
        for name in [self.method] if self.method else list(self.compare or []):
            if name not in FILTERS:
                FILTERS.entry(name)  # raises the helpful unknown-name error
        return self
