"""Configs for token compression and rewriting (docs/token_compression.md, docs/rewriting.md), and their YAML job kinds.

Every number the method needs is a field here with its default; nothing is hard-coded in the math.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from damoc.config import JobConfig, StrictModel
from damoc.hardware import HardwareSettings
from damoc.io.tasks import FieldMap

SEGMENTS = ("context", "question", "answer")


def _check_rate(v: float | None, name: str) -> float | None:
    if v is not None and not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {v}")
    return v


class CompressConfig(StrictModel):
    """Token compression with a budget controller (LLMLingua-style word dropping, our own code).

    ``rate`` is kept/original scorer tokens of an example, over the segments ``budget`` names: with
    ``budget="prompt"`` (the default) the context and question, which is what the compressor
    shortens (the answer, the training target, is kept whole at the default ``answer_rate`` 1.0
    and is outside the rate, as LLMLingua counts); with ``budget="example"`` the answer too. Each
    example lands on the rate (within half a word per segment); fidelity works inside it: the kept
    words are those worth most per token, mixing their self-information under the scorer LM and how
    much of the original they cover under the BERTScore encoder, and an example under the floor is
    re-selected at the same rate; ``on_floor`` says what happens to one still under it.

    Example (YAML)::

        compress:
          rate: 0.5
          on_floor: keep_rate      # or back_off (milder rates, then whole) or keep_whole
          fidelity_floor: 0.85
          max_scored_tokens: 2048  # LM-scored tokens per example; the rest by coverage alone
    """

    rate: float = Field(0.5, description="target kept/original scorer tokens per example, in (0, 1]")
    budget: Literal["example", "prompt"] = Field(
        "prompt", description="segments the rate counts: 'prompt' context+question, 'example' all three"
    )
    context_rate: float | None = Field(
        None, description="preferred context rate; None: whatever the budget leaves (compressed hardest)"
    )
    question_rate: float = Field(0.9, description="preferred question rate (compressed lightly)")
    answer_rate: float = Field(1.0, description="preferred answer rate; 1.0 = never touched")
    min_rate: float = Field(0.05, description="no segment is cut below this rate (must-keep spans aside)")
    scorer: str = Field(
        "smollm2-135m", description="causal LM that scores self-information (dir or zoo name)"
    )
    chunk_tokens: int = Field(128, ge=8, description="tokens per chunk re-scored on the compressed prefix")
    batch_size: int | None = Field(
        None,
        ge=1,
        description="examples per scorer forward; None: 1 on CPU (a CPU forward gains nothing from "
        "batching and pays for the padding), accelerator_batch_size elsewhere",
    )
    accelerator_batch_size: int = Field(8, ge=1, description="batch_size=None on a GPU/accelerator")
    max_length: int = Field(2048, ge=16, description="longest scorer input; the prefix is cut from the left")
    kv_cache: bool = Field(
        True, description="reuse the scorer's KV cache of the compressed prefix across chunks (same scores)"
    )
    reuse_kept_keys: bool = Field(
        True,
        description="with kv_cache: keep the kept tokens' keys from the pass that scored them (LLMLingua's "
        "way, ~1 forward token per context token); false re-feeds them so their keys see only the "
        "compressed prefix (exact re-scoring, ~(1+rate)x the forward tokens)",
    )
    unit_score: Literal["mean", "max", "sum"] = Field(
        "mean", description="how a word's token self-informations combine (words are dropped whole)"
    )
    keep_answer_spans: bool = Field(True, description="never drop the gold answer where it occurs verbatim")
    keep_fields: list[str] = Field(
        default_factory=lambda: ["answer_spans"],
        description="extra row fields (string or list of strings) whose text must be kept",
    )
    keep_patterns: list[str] = Field(default_factory=list, description="regexes whose matches must be kept")
    info_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of the LM's self-information in a word's value per token; the rest is the "
        "original's meaning it covers under the fidelity encoder (1: self-information alone, as "
        "LLMLingua; 0: coverage alone, and no LM forward: the scorer is then only the tokenizer)",
    )
    max_scored_tokens: int | None = Field(
        2048,
        ge=0,
        description="LM-scored tokens per example (its shortened segments, in order); words after "
        "them are chosen by coverage alone, so a very long context costs a bounded scorer time; "
        "None: score everything",
    )
    fidelity_floor: float | None = Field(
        0.85, description="BERTScore-F1 floor vs the original; None: no fidelity check"
    )
    repair_info_weights: list[float] = Field(
        default_factory=lambda: [0.0],
        description="an example under the floor is re-selected at the same rate with each of these "
        "info_weight values, all its shortened segments at once (the budget moves between them); "
        "the best BERTScore is kept; []: no re-selection",
    )
    on_floor: Literal["keep_rate", "back_off", "keep_whole"] = Field(
        "keep_rate",
        description="an example still under the floor: keep_rate keeps it at the rate (shortfall "
        "reported), back_off retries at milder rates (retry_step, max_retries) then keeps it whole, "
        "keep_whole keeps it whole",
    )
    fidelity_encoder: str | None = Field(
        None, description="local encoder dir for BERTScore; None: the all-MiniLM-L6-v2 shipped on PyPI"
    )
    fidelity_layer: int | None = Field(None, description="encoder layer for BERTScore; None: its last")
    fidelity_batch_size: int = Field(16, ge=1, description="text pairs per BERTScore encoder batch")
    retry_step: float = Field(
        0.25, gt=0, description="on_floor back_off: each retry keeps this much more rate"
    )
    max_retries: int = Field(1, ge=0, description="on_floor back_off: milder retries before keeping it whole")

    @field_validator("rate", "context_rate", "question_rate", "answer_rate", "min_rate")
    @classmethod
    def _rates(cls, v, info):
        return _check_rate(v, info.field_name)

    @field_validator("repair_info_weights")
    @classmethod
    def _weights(cls, v):
        for w in v:
            if not 0.0 <= w <= 1.0:
                raise ValueError(f"repair_info_weights must be in [0, 1], got {w}")
        return v

    @field_validator("fidelity_floor")
    @classmethod
    def _floor(cls, v):
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"fidelity_floor must be in [0, 1], got {v}")
        return v

    @field_validator("keep_patterns")
    @classmethod
    def _patterns(cls, v):
        import re

        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"keep pattern {p!r} is not a valid regex ({exc})") from None
        return v


class RewriteConfig(StrictModel):
    """Rewriting compressed text into short fluent text, with a negative feedback loop (docs/rewriting.md)."""

    rewriter: str | None = Field(None, description="local chat model (dir or zoo name)")
    endpoint: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    endpoint_model: str = Field("default", description="model name sent to the endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint key")
    fields: list[Literal["context", "question"]] = Field(
        default_factory=lambda: ["context"], description="the segments rewritten (each checked on its own)"
    )
    max_rounds: int = Field(
        3, ge=1, description="rewrite attempts before falling back to the compressed text"
    )
    tau: float = Field(0.85, ge=0.0, le=1.0, description="BERTScore-F1 floor of the rewrite vs the original")
    check_answer: bool = Field(True, description="for extractive examples the answer string must survive")
    max_feedback_terms: int = Field(
        12, ge=1, description="at most this many lost key terms are named in the feedback for the next round"
    )
    min_term_chars: int = Field(4, ge=1, description="shorter words are not key terms (numbers always are)")
    max_new_tokens: int = Field(384, ge=8, description="most tokens generated per rewrite")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature; 0: greedy")
    timeout_s: float = Field(120.0, gt=0, description="seconds to wait for one endpoint request")
    fidelity_encoder: str | None = Field(
        None, description="local encoder dir for BERTScore; None: the all-MiniLM-L6-v2 shipped on PyPI"
    )
    fidelity_layer: int | None = Field(None, description="encoder layer for BERTScore; None: its last")
    fidelity_batch_size: int = Field(16, ge=1, description="text pairs per BERTScore encoder batch")

    @model_validator(mode="after")
    def _one_backend(self):
        if (self.rewriter is None) == (self.endpoint is None):
            raise ValueError("give exactly one of rewriter (a local chat model) or endpoint (a URL)")
        return self


class CompressJob(JobConfig, HardwareSettings):
    """Compress a task's examples to a token rate (``damoc compress``; docs/token_compression.md).

    Sample YAML (``examples/compress.yaml``)::

        job: compress
        task: pubmedqa
        out: runs/pubmedqa.c50.jsonl
        compress: {rate: 0.5, scorer: smollm2-135m}

    Fields:
        task: the task: a JSONL/JSON/CSV file, a datasets directory or a built-in name
        out: the compressed rows (.jsonl); the report goes beside it as <stem>.report.json
        fields: the task's column names (question, context, answer, label, id)
        limit: compress only the first N rows
        compress: the compression settings (CompressConfig)
    """

    job: Literal["compress"] = "compress"
    task: str
    out: str
    fields: FieldMap = Field(default_factory=FieldMap)
    limit: int | None = Field(None, ge=1, description="compress only the first N rows")
    compress: CompressConfig = Field(default_factory=CompressConfig)


class RewriteJob(JobConfig, HardwareSettings):
    """Rewrite compressed examples into fluent text with feedback (``damoc rewrite``; docs/rewriting.md).

    Sample YAML (``examples/rewrite.yaml``)::

        job: rewrite
        compressed: runs/pubmedqa.c50.jsonl
        original: pubmedqa
        out: runs/pubmedqa.c50.rw.jsonl
        rewrite: {rewriter: smollm2-135m, max_rounds: 3}

    Fields:
        compressed: the compressed rows (the output of a compress job)
        original: the original task, its rows matched to the compressed ones by id
        out: the rewritten rows (.jsonl); the report goes beside it as <stem>.report.json
        fields: the tasks' column names (question, context, answer, label, id)
        rewrite: the rewriting settings (RewriteConfig)
    """

    job: Literal["rewrite"] = "rewrite"
    compressed: str
    original: str
    out: str
    fields: FieldMap = Field(default_factory=FieldMap)
    rewrite: RewriteConfig
