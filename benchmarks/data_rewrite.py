"""The data level, rewriting: compressed PubMedQA contexts rewritten by a zoo chat model.

``--n`` distinct PubMedQA contexts (with their questions) are compressed at ``--rate`` with our
compressor (``budget="prompt"``, scorer ``--scorer``, fidelity check off, as in ``data_level.py``),
then each compressed context is rewritten by ``--rewriter`` through the negative feedback loop
(``rewrite_examples``: BERTScore-F1 vs the original ≥ ``--tau`` and the answer string kept where the
example is extractive, feedback naming lost key terms, ``--max-rounds``, fallback to the compressed
text). Examples are rewritten one at a time so that each gets its own wall time.

Per example the record holds: rounds, the BERTScore-F1 of every round's rewrite and of the
compressed text (both vs the original context), accepted vs fallback, the final text's F1, answer-term
retention (see :func:`answer_terms`) of the original, compressed, last-rewrite and final contexts,
tokens of the original / compressed / final context (the scorer's tokenizer, as in ``data_level.py``)
and the tokens the rewriter generated, and seconds. PubMedQA's answer is the abstract's conclusion,
which is not a span of the context, so the loop's extractive answer check does not apply there; the
answer-term retention is this benchmark's stand-in for "the answer is still derivable".

    OMP_NUM_THREADS=1 python benchmarks/data_rewrite.py --n 10 --rewriter qwen2.5-coder-0.5b --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RECORDS = ROOT / "records" / "data_level"


def answer_terms(answer: str, original: str, min_chars: int = 4) -> list[str]:
    """Key terms (numbers, content words) of the answer that occur in the original context."""
    from damoc.data.compress.rewrite import key_terms, missing_terms

    terms = key_terms(answer, min_chars)
    lost = set(missing_terms(terms, original))
    return [t for t in terms if t not in lost]


def retention(terms: list[str], text: str) -> float | None:
    from damoc.data.compress.rewrite import missing_terms

    if not terms:
        return None
    return 1.0 - len(missing_terms(terms, text)) / len(terms)


class Recording:
    """Wraps a rewriter: keeps each reply with its wall time and generated-token count."""

    def __init__(self, rewriter, tok):
        self.rewriter, self.tok = rewriter, tok
        self.calls: list[dict[str, Any]] = []

    def __call__(self, messages):
        t0 = time.perf_counter()
        out = self.rewriter(messages)
        n = len(self.tok(out, add_special_tokens=False)["input_ids"]) if out else 0
        self.calls.append({"text": out, "s": time.perf_counter() - t0, "new_tokens": n})
        return out


def _mean(vals) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.fmean(vals) if vals else None


def run(args) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from data_level import _count, pick_examples

    from damoc.data.compress import CompressConfig, RewriteConfig, compress_examples
    from damoc.data.compress.rewrite import LocalChatRewriter, rewrite_examples
    from damoc.data.fidelity import BertScoreFidelity
    from damoc.model.arch import load_model

    examples = pick_examples("pubmedqa", args.n)
    scorer, stok = load_model(args.scorer)
    t0 = time.perf_counter()
    comp = compress_examples(
        examples, CompressConfig(rate=args.rate, budget="prompt", fidelity_floor=None), scorer, stok
    ).examples
    compress_s = time.perf_counter() - t0
    if args.rewriter == args.scorer:
        model, tok = scorer, stok
    else:
        del scorer
        model, tok = load_model(args.rewriter)
    cfg = RewriteConfig(
        rewriter=args.rewriter, max_rounds=args.max_rounds, tau=args.tau, max_new_tokens=args.max_new_tokens
    )
    fid = BertScoreFidelity()
    rec_rw = Recording(LocalChatRewriter(model, tok, cfg.max_new_tokens, cfg.temperature), tok)
    rows = []
    out_path = RECORDS / f"rewrite_pubmedqa_r{args.rate}_n{args.n}_{Path(args.rewriter).name}.json"
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with background jobs, "
        f"torch threads {args.threads}",
        "torch": torch.__version__,
        "scorer": args.scorer,
        "rewriter": args.rewriter,
        "rate": args.rate,
        "rewrite_config": cfg.model_dump(),
        "compress_s": compress_s,
        "command": " ".join(["python", *sys.argv]),
    }
    for o, c in zip(examples, comp, strict=True):
        n_calls = len(rec_rw.calls)
        t1 = time.perf_counter()
        res = rewrite_examples([c], [o], cfg, rec_rw, fid)
        secs = time.perf_counter() - t1
        rec = res.records[0]
        calls = rec_rw.calls[n_calls:]
        final = res.examples[0].context
        comp_f1 = fid([c.context], [o.context])[0]
        terms = answer_terms(o.answer, o.context, cfg.min_term_chars)
        row = {
            "id": o.id,
            "rounds": rec.rounds,
            "accepted": rec.passed,
            "round_f1": rec.scores,
            "feedback_terms": rec.feedback,
            "compressed_f1": comp_f1,
            "final_f1": rec.final_fidelity,
            "last_rewrite_f1": rec.scores[-1] if rec.scores else None,
            "answer_terms": terms,
            "answer_retention": {
                "original": retention(terms, o.context),
                "compressed": retention(terms, c.context),
                "last_rewrite": retention(terms, calls[-1]["text"]) if calls else None,
                "final": retention(terms, final),
            },
            "tokens": {
                "original": _count(stok, o.context),
                "compressed": _count(stok, c.context),
                "final": _count(stok, final),
                "generated_per_round": [x["new_tokens"] for x in calls],
                "hit_max_new_tokens": [x["new_tokens"] >= cfg.max_new_tokens - 2 for x in calls],
            },
            "seconds": secs,
            "seconds_per_round": [x["s"] for x in calls],
            "load_avg": os.getloadavg(),
            "compressed": c.context,
            "rewrites": [x["text"] for x in calls],
            "final": final,
        }
        rows.append(row)
        print(
            f"{o.id}: rounds {rec.rounds} {'accepted' if rec.passed else 'fallback'} "
            f"F1 rounds {[round(s, 3) for s in rec.scores]} compressed {comp_f1:.3f} "
            f"tokens {row['tokens']['original']}->{row['tokens']['compressed']}->{row['tokens']['final']} "
            f"{secs:.0f}s load {row['load_avg'][0]:.1f}",
            flush=True,
        )
        out = {"meta": meta, "summary": summarize(rows), "rows": rows}
        RECORDS.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=2) + "\n")  # after each example: a cut run keeps its rows
    print(json.dumps(out["summary"], indent=2))
    print(f"record: {out_path}")
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    acc = [r for r in rows if r["accepted"]]
    return {
        "n": len(rows),
        "accepted": len(acc),
        "accepted_round1": sum(r["rounds"] == 1 for r in acc),
        "fallback": len(rows) - len(acc),
        "mean_rounds": _mean(r["rounds"] for r in rows),
        "mean_compressed_f1": _mean(r["compressed_f1"] for r in rows),
        "mean_round1_f1": _mean(r["round_f1"][0] for r in rows if r["round_f1"]),
        "mean_last_rewrite_f1": _mean(r["last_rewrite_f1"] for r in rows),
        "mean_final_f1": _mean(r["final_f1"] for r in rows),
        "mean_answer_retention": {
            k: _mean(r["answer_retention"][k] for r in rows) for k in ("compressed", "last_rewrite", "final")
        },
        "tokens_original": sum(r["tokens"]["original"] for r in rows),
        "tokens_compressed": sum(r["tokens"]["compressed"] for r in rows),
        "tokens_final": sum(r["tokens"]["final"] for r in rows),
        "rewrite_calls": sum(r["rounds"] for r in rows),
        "calls_hit_max_new_tokens": sum(sum(r["tokens"]["hit_max_new_tokens"]) for r in rows),
        "seconds_total": sum(r["seconds"] for r in rows),
        "seconds_per_example_mean": _mean(r["seconds"] for r in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10, help="PubMedQA contexts")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--scorer", default="smollm2-135m")
    ap.add_argument("--rewriter", default="qwen2.5-coder-0.5b")
    ap.add_argument("--max-rounds", type=int, default=2)
    ap.add_argument("--tau", type=float, default=0.85)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
    run(args)


if __name__ == "__main__":
    main()
