"""Rewriting compressed text into short fluent text, with a negative feedback loop (docs/rewriting.md).

A rewriter is any callable ``messages -> text`` (chat messages in the OpenAI format): a local chat
model (:class:`LocalChatRewriter`), an OpenAI-compatible endpoint (:class:`EndpointRewriter`), or a
scripted fake in tests. Each rewrite is checked: BERTScore-F1 vs the original ≥ τ, and for extractive
examples the answer string still present. A failed rewrite is sent back with feedback that names the
key terms it lost, up to ``max_rounds``; after that the compressed text is kept.

The loop runs round by round over all pending items, so each round's fidelity is one batched call.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import statistics
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from damoc.data.compress.config import RewriteConfig
from damoc.data.compress.units import find_spans
from damoc.data.fidelity import BertScoreFidelity
from damoc.errors import DamocError
from damoc.io.redact import redact, register_secret, split_userinfo
from damoc.io.tasks import Example
from damoc.logging_utils import progress
from damoc.model.arch import load_model

LOG = logging.getLogger(__name__)

Messages = list[dict[str, str]]
Rewriter = Callable[[Messages], str]
FidelityFn = Callable[[Sequence[str], Sequence[str]], list[float]]

SYSTEM_PROMPT = (
    "You turn compressed notes back into short, fluent text. Keep every fact, number, name and term; "
    "add nothing that is not in the notes. Answer with the rewritten text only."
)
USER_PROMPT = "Rewrite these compressed notes as short fluent text:\n\n{text}"
FEEDBACK_PROMPT = (
    "Your rewrite lost key information. Rewrite the notes again and keep these terms exactly: {terms}."
)
FEEDBACK_GENERIC = "Your rewrite drifted from the notes. Rewrite them again, staying close to their wording."

STOPWORDS = frozenset(
    "about above after again against also among because been before being below between both could "
    "does doing down during each from further have having here into itself just more most must only "
    "other over same should some such than that their them then there these they this those through "
    "under until very were what when where which while whom will with within would your".split()
)
_TERM = re.compile(r"\d[\d.,:%/-]*\d%?|\d%?|[^\W\d_][\w'-]*", re.UNICODE)


def key_terms(text: str, min_chars: int = 4) -> list[str]:
    """Numbers and content words of ``text`` in order of first use (case-insensitively unique)."""
    seen: set[str] = set()
    out = []
    for m in _TERM.finditer(text):
        t = m.group().strip("'-")
        low = t.lower()
        is_num = t[:1].isdigit()
        if not t or low in seen or (not is_num and (len(t) < min_chars or low in STOPWORDS)):
            continue
        seen.add(low)
        out.append(t)
    return out


def missing_terms(terms: Sequence[str], text: str) -> list[str]:
    """The terms that do not occur in ``text`` (case-insensitive, whole words)."""
    return [t for t in terms if not find_spans(text, [t])]


def build_messages(text: str) -> Messages:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(text=text)},
    ]


def feedback_message(lost: Sequence[str]) -> str:
    return FEEDBACK_PROMPT.format(terms=", ".join(lost)) if lost else FEEDBACK_GENERIC


@dataclass
class RewriteRecord:
    id: str
    field: str
    rounds: int  # rewrites asked for
    passed: bool  # a rewrite passed the check (else the compressed text was kept)
    scores: list[float] = field(default_factory=list)  # fidelity of each round's rewrite vs the original
    answer_ok: list[bool] = field(default_factory=list)
    feedback: list[list[str]] = field(default_factory=list)  # the terms named after each failed round
    required: list[str] = field(default_factory=list)  # answer strings that must survive (extractive)
    final_fidelity: float | None = None


@dataclass
class RewriteSummary:
    n_items: int
    n_passed: int
    n_passed_first_round: int
    n_fallback: int
    mean_rounds: float
    fidelity: dict[str, float]

    @classmethod
    def from_records(cls, records: Sequence[RewriteRecord]) -> RewriteSummary:
        fids = sorted(r.final_fidelity for r in records if r.final_fidelity is not None)
        dist = {}
        if fids:
            dist = {
                "min": fids[0],
                "p50": fids[len(fids) // 2],
                "max": fids[-1],
                "mean": statistics.fmean(fids),
            }
        return cls(
            n_items=len(records),
            n_passed=sum(r.passed for r in records),
            n_passed_first_round=sum(r.passed and r.rounds == 1 for r in records),
            n_fallback=sum(not r.passed for r in records),
            mean_rounds=statistics.fmean(r.rounds for r in records) if records else 0.0,
            fidelity=dist,
        )


@dataclass
class RewriteResult:
    examples: list[Example]
    records: list[RewriteRecord]
    summary: RewriteSummary


@dataclass
class _Item:
    ex_index: int
    field: str
    compressed: str
    original: str
    required: list[str]
    terms: list[str]
    messages: Messages
    record: RewriteRecord
    final: str = ""


def required_strings(original_text: str, ex: Example) -> list[str]:
    """Answer strings that occur verbatim in the original text (the example is extractive for them)."""
    cands = [ex.answer] + [str(s) for s in ex.meta.get("answer_spans", []) or [] if s is not None]
    return [c for c in dict.fromkeys(c.strip() for c in cands) if c and find_spans(original_text, [c])]


def rewrite_examples(
    compressed: Sequence[Example],
    original: Sequence[Example],
    cfg: RewriteConfig,
    rewriter: Rewriter,
    fidelity_fn: FidelityFn | None = None,
) -> RewriteResult:
    """Rewrite each compressed example's fields (``cfg.fields``) against its original; see the module doc."""
    if len(compressed) != len(original):
        raise DamocError("rewrite: compressed and original example lists differ in length")
    if fidelity_fn is None:
        fidelity_fn = BertScoreFidelity(cfg.fidelity_encoder, cfg.fidelity_layer, cfg.fidelity_batch_size)
    items: list[_Item] = []
    for i, (c, o) in enumerate(zip(compressed, original, strict=True)):
        for name in cfg.fields:
            text, orig = getattr(c, name), getattr(o, name)
            if not text.strip():
                continue
            req = required_strings(orig, o) if cfg.check_answer else []
            terms = list(dict.fromkeys([*req, *key_terms(text, cfg.min_term_chars)]))
            rec = RewriteRecord(id=c.id, field=name, rounds=0, passed=False, required=req)
            items.append(_Item(i, name, text, orig, req, terms, build_messages(text), rec, final=text))
    pending = list(items)
    bar = progress(total=len(items) * cfg.max_rounds, desc="rewrite", unit="call")
    for rnd in range(cfg.max_rounds):
        if not pending:
            break
        outs = []
        for it in pending:
            outs.append(rewriter(it.messages).strip())
            bar.update(1)
        scores = fidelity_fn(outs, [it.original for it in pending])
        still = []
        for it, out, score in zip(pending, outs, scores, strict=True):
            rec = it.record
            rec.rounds = rnd + 1
            rec.scores.append(float(score))
            ok_answer = not missing_terms(it.required, out)
            rec.answer_ok.append(ok_answer)
            if out and score >= cfg.tau and ok_answer:
                rec.passed = True
                rec.final_fidelity = float(score)
                it.final = out
                continue
            lost = missing_terms(it.terms, out)[: cfg.max_feedback_terms]
            rec.feedback.append(lost)
            it.messages = [
                *it.messages,
                {"role": "assistant", "content": out},
                {"role": "user", "content": feedback_message(lost)},
            ]
            still.append(it)
        pending = still
    bar.close()
    if pending:  # fall back to the compressed text, scored once for the record
        fb = fidelity_fn([it.compressed for it in pending], [it.original for it in pending])
        for it, f in zip(pending, fb, strict=True):
            it.record.final_fidelity = float(f)
    new = [replace(c, meta=dict(c.meta)) for c in compressed]
    for it in items:
        setattr(new[it.ex_index], it.field, it.final)
    records = [it.record for it in items]
    summary = RewriteSummary.from_records(records)
    LOG.info(
        "rewrote %d texts: %d passed (%d in round 1), %d fell back to the compressed text",
        summary.n_items,
        summary.n_passed,
        summary.n_passed_first_round,
        summary.n_fallback,
    )
    return RewriteResult(new, records, summary)


class LocalChatRewriter:
    """A local chat model through its chat template, greedy (or sampled when temperature > 0)."""

    def __init__(self, model, tok, max_new_tokens: int = 384, temperature: float = 0.0):
        self.model, self.tok = model, tok
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature

    def _prompt(self, messages: Messages) -> str:
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def __call__(self, messages: Messages) -> str:
        import torch

        enc = self.tok(self._prompt(messages), return_tensors="pt", add_special_tokens=False)
        dev = next(self.model.parameters()).device
        sample = self.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                **{k: v.to(dev) for k, v in enc.items()},
                max_new_tokens=self.max_new_tokens,
                do_sample=sample,
                temperature=self.temperature if sample else None,
                top_p=None,
                top_k=None,
                pad_token_id=self.tok.pad_token_id
                if self.tok.pad_token_id is not None
                else self.tok.eos_token_id,
            )
        return self.tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()


class EndpointRewriter:
    """An OpenAI-compatible ``/chat/completions`` endpoint, over plain urllib.

    The key is read from ``api_key_env`` and sent as a bearer token; without one, a user and password in the
    URL (``http://user:password@host/v1``) are sent as basic authorization. Neither ever appears in a message:
    the URL is kept without its user-info part and the values are registered for redaction.
    """

    def __init__(
        self,
        url: str,
        model: str = "default",
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 384,
        temperature: float = 0.0,
        timeout_s: float = 120.0,
    ):
        clean, user, password = split_userinfo(url)
        base = clean.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self._basic = (
            base64.b64encode(f"{user}:{password or ''}".encode()).decode() if user is not None else None
        )
        self.model = model
        self.api_key_env = api_key_env
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s

    def __call__(self, messages: Messages) -> str:
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        register_secret(key)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif self._basic is not None:
            headers["Authorization"] = f"Basic {self._basic}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise DamocError(
                redact(f"rewrite endpoint {self.url} answered HTTP {exc.code} ({exc.reason})")
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DamocError(redact(f"cannot reach the rewrite endpoint {self.url}: {reason}")) from None
        except json.JSONDecodeError:
            raise DamocError(f"rewrite endpoint {self.url} did not answer JSON") from None
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise DamocError(
                f"rewrite endpoint {self.url}: no choices[0].message.content in its answer"
            ) from None


def build_rewriter(cfg: RewriteConfig) -> Rewriter:
    if cfg.endpoint:
        return EndpointRewriter(
            cfg.endpoint,
            cfg.endpoint_model,
            cfg.api_key_env,
            cfg.max_new_tokens,
            cfg.temperature,
            cfg.timeout_s,
        )

    model, tok = load_model(cfg.rewriter)
    return LocalChatRewriter(model, tok, cfg.max_new_tokens, cfg.temperature)
