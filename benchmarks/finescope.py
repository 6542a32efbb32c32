"""FineScope benchmark on a real zoo model (default smollm2-135m), 2-core CPU, bounded sizes.

Pool = PubMedQA (medical) + TAT-QA (finance) + SQuAD v1.1 dev (general, read from the PyPI sdist
``bigbench==1.0.0``; without it the pool is PubMedQA + TAT-QA only); 10 PubMedQA seed rows; held-out
PubMedQA rows for the domain score. Runs the `finescope` recipe (SAE curation -> Taylor structured pruning
-> plain fine-tune vs self-distillation) and records curation precision (SAE vs embeddings vs TF-IDF vs
random), parameter counts, domain scores and wall time of every stage.

    python benchmarks/finescope.py --write-data          # only (re)write the pool/seeds/eval files
    python benchmarks/finescope.py                       # run (~30-60 min on 2 shared cores)
    python benchmarks/finescope.py --curate-method tfidf --variants rewrite_reference,rewrite_reference+kl

The committed data files are used as they are (``--write-data`` rewrites them). Stage outputs are kept
in ``--cache`` (keyed by their settings), so a re-run that only changes the distillation reuses the
curated rows, the pruned checkpoint and any stage already scored. ``--variants`` adds self-distillation
stages: ``answer`` / ``rewrite_reference`` (teacher mode), ``+kl`` adds the KL term (``--kl-weight``), ``+kl=3`` with weight 3.

More eval rows and several fine-tune seeds, then a paired comparison over seeds and rows:

    python benchmarks/finescope.py --write-eval 120      # eval120.jsonl: eval.jsonl + unused PubMedQA rows
    python benchmarks/finescope.py --eval-file eval120.jsonl --eval-rows 120 --ft-seed 1 --record s1.json ...
    python benchmarks/finescope.py --summary s0.json,s1.json,s2.json

Results: benchmarks/records/finescope/<model>.json (the report of the run) and a printed table.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import re
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "records" / "finescope"
DATA = RECORDS / "data"
SQUAD_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/squaddev_v1.1.json"


def find_bigbench(explicit: str | None) -> Path | None:
    cands = [explicit] if explicit else []
    cands += sorted(glob.glob("/tmp/*/bigbench-1.0.0.tar.gz")) + sorted(
        glob.glob(str(Path.home() / "*bigbench-1.0.0.tar.gz"))
    )
    cands.append(
        str(Path.home() / ".cache" / "damoc" / "data" / "bigbench-1.0.0.tar.gz")
    )  # selection.py's copy
    for c in cands:
        if c and Path(c).is_file():
            return Path(c)
    return None


def squad_rows(sdist: Path, n: int, seed: int) -> list[dict]:
    with tarfile.open(sdist) as tf:
        data = json.load(tf.extractfile(SQUAD_MEMBER))["data"]
    rows = []
    for art in data:
        for para in art["paragraphs"]:
            for qa in para["qas"][:1]:
                rows.append(
                    {
                        "id": f"squad-{qa['id']}",
                        "question": qa["question"],
                        "context": para["context"],
                        "answer": qa["answers"][0]["text"],
                        "domain": "general",
                    }
                )
    random.Random(seed).shuffle(rows)
    return rows[:n]


def write_data(n_per_domain: int, n_eval: int, seed: int, bigbench: str | None) -> dict:
    from damoc.io.tasks import read_rows

    rng = random.Random(seed)
    med = [dict(r, domain="medical") for r in read_rows("pubmedqa")]
    fin = [dict(r, domain="finance") for r in read_rows("finance")]
    rng.shuffle(med)
    rng.shuffle(fin)
    seeds, held, med_pool = med[:10], med[10 : 10 + n_eval], med[10 + n_eval : 10 + n_eval + n_per_domain]
    pool = med_pool + fin[:n_per_domain]
    sdist = find_bigbench(bigbench)
    general = squad_rows(sdist, n_per_domain, seed) if sdist else []
    pool += general
    rng.shuffle(pool)
    DATA.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pool", pool), ("seeds", seeds), ("eval", held)):
        (DATA / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    info = {
        "pool": len(pool),
        "medical": len(med_pool),
        "finance": n_per_domain,
        "general": len(general),
        "seeds": len(seeds),
        "eval": len(held),
        "bigbench_sdist": str(sdist) if sdist else None,
    }
    print("data:", info)
    return info


def write_eval(n: int) -> Path:
    """eval<n>.jsonl: the committed eval rows, then PubMedQA rows in neither the pool nor the seeds."""
    from damoc.io.tasks import read_rows

    used = {json.loads(x)["id"] for name in ("pool", "seeds") for x in open(DATA / f"{name}.jsonl")}
    first = [json.loads(x) for x in open(DATA / "eval.jsonl")]
    have = {r["id"] for r in first}
    rest = [dict(r, domain="medical") for r in read_rows("pubmedqa") if r["id"] not in used | have]
    random.Random(0).shuffle(rest)
    rows = (first + rest)[:n]
    path = DATA / f"eval{n}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{path}: {len(rows)} rows ({len(first)} from eval.jsonl)")
    return path


# ---------------------------------------------------------------- the hard pool

SHIFTS = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/"
# paragraphs with at least this many medical words count as medical-topic distractors
MEDICAL_WORDS = re.compile(
    r"\b(patients?|disease|diseases|cancer|tumou?r|clinical|treatment|therapy|hospital|drug|drugs|medication|"
    r"diagnos\w*|symptoms?|infection|vaccine|doctor|physician|surgery|medical|health|blood|cells?|virus|chronic)\b",
    re.I,
)
# (SQuAD-shifts file, source name, rows): medical-topic text from an encyclopedia, newer encyclopedia
# articles, news and a forum
HARD_SOURCES = [
    ("squaddev_v1.1.json", "wiki", 60),
    ("new_wiki_v1.0.json", "newwiki", 50),
    ("nyt_v1.0.json", "nyt", 50),
    ("reddit_v1.0.json", "reddit", 15),
]


def medical_topic_rows(sdist: Path, member: str, source: str, seed: int) -> list[dict]:
    """One question per paragraph whose text has >= 3 medical words, labelled ``medical-topic-<source>``."""
    with tarfile.open(sdist) as tf:
        data = json.load(tf.extractfile(SHIFTS + member))["data"]
    rows = []
    for art in data:
        for para in art["paragraphs"]:
            if len(MEDICAL_WORDS.findall(para["context"])) < 3:
                continue
            qa = para["qas"][0]
            rows.append(
                {
                    "id": f"{source}-{qa['id']}",
                    "question": qa["question"],
                    "context": para["context"],
                    "answer": qa["answers"][0]["text"],
                    "domain": f"medical-topic-{source}",
                }
            )
    random.Random(seed).shuffle(rows)
    return rows


def write_hard_pool(bigbench: str | None, seed: int = 0) -> dict:
    """hard_pool.jsonl: the easy pool's 100 medical, 50 of its finance and 50 of its general rows, plus 175
    medical-topic rows from other genres (encyclopedia, news, forum) that share the seeds' vocabulary."""
    sdist = find_bigbench(bigbench)
    if sdist is None:
        raise SystemExit(
            "error: the hard pool needs bigbench-1.0.0.tar.gz (pip download --no-deps bigbench==1.0.0)"
        )
    easy = [json.loads(x) for x in open(DATA / "pool.jsonl")]
    medical = [r for r in easy if r["domain"] == "medical"]
    finance = [r for r in easy if r["domain"] == "finance"][:50]
    general = [r for r in easy if r["domain"] == "general" and len(MEDICAL_WORDS.findall(r["context"])) < 3][
        :50
    ]
    distractors = []
    for member, source, n in HARD_SOURCES:
        distractors += medical_topic_rows(sdist, member, source, seed)[:n]
    pool = medical + distractors + finance + general
    random.Random(seed).shuffle(pool)
    (DATA / "hard_pool.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pool))
    info = {d: sum(1 for r in pool if r["domain"] == d) for d in sorted({r["domain"] for r in pool})}
    print("hard pool:", len(pool), info)
    return info


# ---------------------------------------------------------------- curation precision


def precision_at(scores: list[float], domains: list[str], target: str, m: int) -> float:
    from damoc.curate.curation import precision, top_m

    return precision(top_m(scores, m), domains, target)


def curation_precision(
    model_name: str,
    pool_file: str,
    view: str,
    args,
    methods: tuple[str, ...] = ("sae", "tfidf", "embed", "random"),
) -> dict:
    """Precision at several M of every method on one pool and text view, with the SAE's time per part."""
    import torch

    from damoc.curate.config import CurationSettings
    from damoc.curate.curation import CurateContext, run_method
    from damoc.curate.pipeline import row_text
    from damoc.io.tasks import load_examples
    from damoc.model.arch import load_model

    pool = load_examples(str(DATA / pool_file))
    seeds = load_examples(str(DATA / "seeds.jsonl"))
    seed_q = {s.question.strip() for s in seeds}
    pool = [e for e in pool if e.question.strip() not in seed_q]
    domains = [str(e.meta.get("domain")) for e in pool]
    cfg = CurationSettings(
        top=100, max_length=args.max_length, text_view=view, sae_cache=args.sae_cache or None,
        sae={"expansion": 16, "k": 32, "steps": args.sae_steps, "batch_size": 512, "lr": 1e-3},
    )  # fmt: skip
    t0 = time.perf_counter()
    model, tok = load_model(model_name)
    load_s = time.perf_counter() - t0
    ctx = CurateContext(model=model, tok=tok, cfg=cfg, model_name=model_name)
    texts, seed_texts = [row_text(e, view) for e in pool], [row_text(e, view) for e in seeds]
    out = {"model": model_name, "pool": pool_file, "view": view, "n_pool": len(pool), "load_s": load_s}
    out["pool_domains"] = {d: domains.count(d) for d in sorted(set(domains))}
    out["methods"] = {}
    for name in methods:
        r = run_method(name, texts, seed_texts, ctx, 100, domains, "medical")
        top = [domains[i] for i in r.selected[:50]]
        out["methods"][name] = {
            "wall_s": r.wall_s,
            **{f"p@{m}": precision_at(r.scores, domains, "medical", m) for m in (25, 50, 100)},
            "top50_domains": {d: top.count(d) for d in sorted(set(top))},
        }
        print(
            f"{model_name} {pool_file} {view} {name}: p@50 {out['methods'][name]['p@50']:.2f} ({r.wall_s:.0f} s)"
        )
    sae_info = {k: v for k, v in ctx.artifacts.get("sae", {}).items() if not isinstance(v, dict)}
    out["sae"] = sae_info
    out["embed_backend"] = ctx.artifacts.get("embed_backend")
    del model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def sae_step_speed(model_name: str, args, steps: int = 10) -> dict:
    """Seconds per SAE step, the dense form (encode, decode, autograd, dense Adam) against damoc's (the top
    k only), on the same activations and the same SAE, alternating so that machine load hits both alike."""
    import torch

    from damoc.curate.activations import residual_activations, resolve_layer
    from damoc.curate.sae import SAEConfig, TopKSAE
    from damoc.curate.train_sae import topk_grads
    from damoc.io.tasks import load_examples
    from damoc.model.arch import load_model

    model, tok = load_model(model_name)
    texts = [e.text() for e in load_examples(str(DATA / "pool.jsonl"))[:40]]
    acts = torch.cat(residual_activations(model, tok, texts, resolve_layer(model, None), args.max_length, 8))
    d = acts.shape[1]
    del model
    scale = float((d / acts.pow(2).sum(1).mean()).sqrt())
    x = acts * scale
    g = torch.Generator().manual_seed(0)
    times = {"dense": [], "topk": []}
    dense = TopKSAE(SAEConfig(d_model=d, expansion=16, k=32))
    fast = TopKSAE(SAEConfig(d_model=d, expansion=16, k=32))
    enc_rows = torch.nn.Parameter(fast.W_enc.detach().t().contiguous())
    opt_d = torch.optim.Adam(dense.parameters(), lr=1e-3)
    fast_params = [enc_rows, fast.b_enc, fast.W_dec, fast.b_dec]
    opt_f = torch.optim.Adam(fast_params, lr=1e-3, fused=True)
    for _ in range(steps):
        xb = x[torch.randint(0, len(x), (512,), generator=g)]
        t0 = time.perf_counter()
        loss = (dense(xb / dense.input_scale)[0] - xb).pow(2).sum(1).mean() / d
        opt_d.zero_grad()
        loss.backward()
        dense.remove_parallel_grads()
        opt_d.step()
        dense.normalize_decoder()
        times["dense"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gr = topk_grads(enc_rows, fast.b_enc, fast.W_dec, fast.b_dec, xb, 32)
        for p_, g_ in zip(fast_params, (gr.enc_rows, gr.b_enc, gr.W_dec, gr.b_dec), strict=True):
            p_.grad = g_
        fast.remove_parallel_grads()
        opt_f.step()
        fast.normalize_decoder()
        times["topk"].append(time.perf_counter() - t0)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"model": model_name, "d_model": d, "width": 16 * d, "batch": 512, "k": 32, "steps": steps,
            "median_s_per_step": med, "ratio_dense_over_topk": med["dense"] / med["topk"]}  # fmt: skip


def run_curation(args) -> int:
    """Curation precision on the easy and hard pools, per model and text view; one record per run."""
    import torch

    torch.set_num_threads(args.threads)
    out_dir = RECORDS / "curation"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not (DATA / "hard_pool.jsonl").is_file():
        write_hard_pool(args.bigbench)
    for model in [m for m in args.models.split(",") if m]:
        for pool_file in [p for p in args.pools.split(",") if p]:
            for view in [v for v in args.views.split(",") if v]:
                path = out_dir / f"{Path(pool_file).stem}.{model}.{view}.json"
                if path.is_file() and not args.fresh:
                    print(f"{path.name}: reused")
                    continue
                rec = curation_precision(model, pool_file, view, args)
                rec.update(machine=f"2-core CPU shared with other jobs, {args.threads} thread(s)",
                           command=" ".join(["python", *sys.argv]))  # fmt: skip
                path.write_text(json.dumps(rec, indent=2) + "\n")
        speed = out_dir / f"sae_step_speed.{model}.json"
        if args.speed and (not speed.is_file() or args.fresh):
            speed.write_text(json.dumps(sae_step_speed(model, args), indent=2) + "\n")
    print(curation_table(sorted(out_dir.glob("*.json"))))
    return 0


def curation_table(paths: list[Path]) -> str:
    lines = [
        "| pool | model | text | SAE p@25 / p@50 / p@100 | TF-IDF | MiniLM | random | SAE s (forward / steps / signatures) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ps(m: dict) -> str:
        return " / ".join(f"{m[f'p@{k}']:.2f}" for k in (25, 50, 100))

    for p in paths:
        rec = json.loads(p.read_text())
        if "methods" not in rec:
            continue
        m, sae = rec["methods"], rec.get("sae", {})
        t = " / ".join(f"{sae.get(k, 0):.0f}" for k in ("activations_s", "train_s", "encode_s"))
        lines.append(
            f"| {Path(rec['pool']).stem} | {rec['model']} | {rec['view']} | {ps(m['sae'])} | {ps(m['tfidf'])} | "
            f"{ps(m['embed'])} | {ps(m['random'])} | {t} ({sae.get('source')}) |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- recovery: curated vs random rows


def _recovery_one(model_name, args, ctx) -> None:
    """One model's stages of :func:`run_recovery` (a record per model, saved after every stage)."""
    import copy
    import gc

    from damoc.curate.config import CurationSettings
    from damoc.curate.pipeline import curate_examples
    from damoc.curate.scores import domain_score, recovered
    from damoc.evaluate.paired import paired_bpb_difference
    from damoc.model.arch import load_model
    from damoc.model.structured import structured_prune
    from damoc.train.finetune import finetune

    pool, seeds, eval_rows = ctx["pool"], ctx["seeds"], ctx["eval_rows"]
    score_cfg, prune_cfg, ft_cfg, out_dir = ctx["score_cfg"], ctx["prune_cfg"], ctx["ft_cfg"], ctx["out_dir"]
    name = f"{Path(args.recovery_pool).stem}.{model_name}.{args.curate_method}"
    path = out_dir / (f"{name}.{args.record}.json" if args.record else f"{name}.json")
    rec = json.loads(path.read_text()) if path.is_file() else {}
    rec.update(model=model_name, pool=args.recovery_pool, curate_method=args.curate_method,
               eval_rows=len(eval_rows), eval_file=args.eval_file, top=args.top, sae_steps=args.sae_steps, prune=prune_cfg.model_dump(), finetune=ft_cfg.model_dump(),
               command=" ".join(["python", *sys.argv]),
               machine=f"2-core CPU shared with other jobs, {args.threads} thread(s)")  # fmt: skip
    stages = rec.setdefault("stages", {})

    def save():
        path.write_text(json.dumps(rec, indent=2) + "\n")

    source, tok = load_model(model_name)
    cur_cfg = CurationSettings(
        method=args.curate_method, compare=["random"], top=args.top, max_length=128,
        sae_cache=args.sae_cache or None,
        sae={"expansion": 16, "k": 32, "steps": args.sae_steps, "batch_size": 512, "lr": 1e-3},
    )  # fmt: skip
    if "rows" not in rec:
        cur = curate_examples(pool, seeds, cur_cfg, source, tok, model_name)
        rng = random.Random(args.ft_seed)
        kept = [e for e in pool if e.question.strip() not in {s.question.strip() for s in seeds}]
        rnd = rng.sample(kept, args.top)
        rec["rows"] = {"curated": [e.id for e in cur.examples], "random": [e.id for e in rnd]}
        rec["precision"] = {
            "curated": sum(e.meta.get("domain") == "medical" for e in cur.examples) / args.top,
            "random": sum(e.meta.get("domain") == "medical" for e in rnd) / args.top,
        }
        save()
    by_id = {e.id: e for e in pool}
    rows = {k: [by_id[i] for i in ids] for k, ids in rec["rows"].items()}

    def scored(name: str, model, wall: float) -> None:
        t0 = time.perf_counter()
        sc = domain_score(model, tok, eval_rows, score_cfg, source)
        stages[name] = {"answer_bpb": sc.answer_bpb, "label_accuracy": sc.label_accuracy,
                        "fidelity_kl": sc.fidelity_kl, "row_bits": sc.row_bits, "row_bytes": sc.row_bytes,
                        "stage_s": wall, "score_s": time.perf_counter() - t0,
                        "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
        save()
        print(f"{model_name} {name}: answer bpb {sc.answer_bpb:.4f}, KL {sc.fidelity_kl:.4f}")

    if "source" not in stages:
        scored("source", source, 0.0)
    for kind in ("curated", "random"):
        texts = [e.text() for e in rows[kind]]
        pairs = [(e.prompt(), e.answer) for e in rows[kind]]
        if f"unpruned + FT on {kind}" not in stages:
            t0 = time.perf_counter()
            m = finetune(copy.deepcopy(source), tok, pairs, ft_cfg, desc=f"FT {kind}").model
            scored(f"unpruned + FT on {kind}", m, time.perf_counter() - t0)
            del m
            gc.collect()
        if f"pruned on {kind}" not in stages or f"pruned on {kind} + FT on {kind}" not in stages:
            t0 = time.perf_counter()
            pruned = copy.deepcopy(source)
            rep = structured_prune(pruned, tok, texts, prune_cfg)
            prune_s = time.perf_counter() - t0
            rec.setdefault("pruning", {})[kind] = {
                k: v for k, v in rep.to_dict().items() if k != "kept_heads"
            }
            if f"pruned on {kind}" not in stages:
                scored(f"pruned on {kind}", pruned, prune_s)
            t0 = time.perf_counter()
            m = finetune(pruned, tok, pairs, ft_cfg, desc=f"recover {kind}").model
            scored(f"pruned on {kind} + FT on {kind}", m, time.perf_counter() - t0)
            del m, pruned
            gc.collect()
    src = stages["source"]["answer_bpb"]
    rec["recovered"] = {
        k: recovered(
            src,
            stages[f"pruned on {k}"]["answer_bpb"],
            stages[f"pruned on {k} + FT on {k}"]["answer_bpb"],
        )
        for k in ("curated", "random")
    }

    def paired(a: str, b: str) -> dict:
        sa, sb = stages[a], stages[b]
        return paired_bpb_difference(sa["row_bits"], sb["row_bits"], sa["row_bytes"], 2000, 0.95, 0).to_dict()

    rec["curated_minus_random"] = {
        "pruned + FT": paired("pruned on curated + FT on curated", "pruned on random + FT on random"),
        "unpruned + FT": paired("unpruned + FT on curated", "unpruned + FT on random"),
        "pruned": paired("pruned on curated", "pruned on random"),
    }
    save()
    print(json.dumps({k: rec[k] for k in ("precision", "recovered", "curated_minus_random")}, indent=1))


def run_recovery(args) -> int:
    """Curated vs random rows of the hard pool, for pruning + recovery and for fine-tuning the unpruned model.

    Stages (each a record field, resumable per model): source; for each row set R in {curated, random}:
    pruned with Taylor importance on R, that pruned model fine-tuned (LoRA) on R's gold answers, and the
    unpruned model fine-tuned on R's gold answers; all scored on the held-out PubMedQA rows (answer bits
    per byte, label accuracy, fidelity KL to the source).
    """
    import torch

    from damoc.curate.config import ScoreSettings
    from damoc.io.tasks import load_examples
    from damoc.model.structured import StructuredPruneConfig
    from damoc.train.finetune import FinetuneConfig

    torch.set_num_threads(args.threads)
    out_dir = RECORDS / "recovery"
    out_dir.mkdir(parents=True, exist_ok=True)
    pool = load_examples(str(DATA / args.recovery_pool))
    seeds = load_examples(str(DATA / "seeds.jsonl"))
    eval_rows = load_examples(str(DATA / args.eval_file))[: args.eval_rows]
    score_cfg = ScoreSettings(eval_rows=args.eval_rows, max_length=256, batch_size=8)
    prune_cfg = StructuredPruneConfig(ratio=args.ratio, samples=args.prune_samples, max_length=256)
    ft_cfg = FinetuneConfig(
        method="lora", epochs=args.epochs, batch_size=4, max_length=256, seed=args.ft_seed
    )
    ctx = {"pool": pool, "seeds": seeds, "eval_rows": eval_rows, "score_cfg": score_cfg, "prune_cfg": prune_cfg,
           "ft_cfg": ft_cfg, "out_dir": out_dir}  # fmt: skip
    for model_name in [m for m in args.models.split(",") if m]:
        _recovery_one(model_name, args, ctx)
    return 0


def summary(records: list[str]) -> str:
    """Self-distillation vs plain fine-tuning over several runs (seeds) on the same eval rows."""
    from damoc.evaluate.paired import paired_bpb_difference

    reps = [json.load(open(RECORDS / r if not Path(r).is_file() else r))["report"] for r in records]
    plain = "pruned + fine-tune"
    lines = [
        "| run | stage | answer bpb | plain FT bpb | difference | 95% paired bootstrap interval |",
        "|---|---|---:|---:|---:|---|",
    ]
    per_stage: dict[str, list] = {}
    for name, rep in zip(records, reps, strict=True):
        stages = {s["stage"]: s["score"] for s in rep["stages"]}
        for stage, d in rep.get("versus_plain", {}).items():
            sc = stages[f"pruned + {stage}"]
            lines.append(
                f"| {Path(name).stem} | {stage} | {sc['answer_bpb']:.4f} | {stages[plain]['answer_bpb']:.4f} "
                f"| {d['diff']:+.4f} | [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}] |"
            )
            per_stage.setdefault(stage, []).append((sc, stages[plain]))
    for stage, pairs in per_stage.items():
        n = len(pairs[0][0]["row_bits"])
        mean_a = [sum(a["row_bits"][i] for a, _ in pairs) / len(pairs) for i in range(n)]
        mean_b = [sum(b["row_bits"][i] for _, b in pairs) / len(pairs) for i in range(n)]
        d = paired_bpb_difference(mean_a, mean_b, pairs[0][0]["row_bytes"], n_boot=5000)
        lines.append(
            f"| mean of {len(pairs)} runs | {stage} | {sum(a['answer_bpb'] for a, _ in pairs) / len(pairs):.4f} "
            f"| {sum(b['answer_bpb'] for _, b in pairs) / len(pairs):.4f} | {d.diff:+.4f} "
            f"| [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (better in {100 * d.share_a_better:.0f}% of draws) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--per-domain", type=int, default=200, help="pool rows per domain")
    ap.add_argument("--eval-rows", type=int, default=40)
    ap.add_argument("--top", type=int, default=128, help="M, curated rows")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--sae-steps", type=int, default=300)
    ap.add_argument("--max-new-tokens", type=int, default=64, help="longest teacher answer")
    ap.add_argument(
        "--bigbench", default=None, help="path of bigbench-1.0.0.tar.gz (pip download --no-deps ...)"
    )
    ap.add_argument("--curate-method", default="sae", help="sae (FineScope), embed or tfidf (cheap)")
    ap.add_argument("--compare", default="embed,tfidf,random", help="curation methods to compare against")
    ap.add_argument(
        "--teacher-mode", default="answer", help="the main self-distillation stage's teacher mode"
    )
    ap.add_argument(
        "--variants", default="", help="comma list of extra distillation stages, e.g. rewrite_reference+kl"
    )
    ap.add_argument(
        "--epochs",
        type=float,
        default=1.0,
        help="LoRA epochs of every recovery stage (plain and self-distilled)",
    )
    ap.add_argument("--kl-weight", type=float, default=1.0, help="KL weight of the '+kl' variants")
    ap.add_argument(
        "--main-kl-weight",
        type=float,
        default=0.0,
        help="KL weight of the main self-distillation stage (0 as in runs 1-4; the library default is 1.0)",
    )
    ap.add_argument("--rewrite-max-new-tokens", type=int, default=64, help="longest teacher rewrite")
    ap.add_argument("--cache", default="/tmp/damoc-finescope-cache", help="stage cache ('' = none)")
    ap.add_argument(
        "--record",
        default=None,
        help="record file name (default <model>.json); with --recovery a tag: <pool>.<model>.<method>.<tag>.json",
    )
    ap.add_argument("--out", default="/tmp/damoc-finescope-bench")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write-data", action="store_true", help="only write the data files")
    ap.add_argument("--seed", type=int, default=0, help="seed of the data files (--write-data)")
    ap.add_argument("--ft-seed", type=int, default=0, help="seed of every recovery fine-tune")
    ap.add_argument("--eval-file", default="eval.jsonl", help="eval rows file under records/finescope/data")
    ap.add_argument("--write-eval", type=int, default=0, help="only write eval<N>.jsonl (N rows)")
    ap.add_argument("--summary", default="", help="comma list of records: print the paired comparison")
    ap.add_argument("--write-hard-pool", action="store_true", help="only write data/hard_pool.jsonl")
    ap.add_argument("--curation", action="store_true", help="curation precision of sae/tfidf/embed/random")
    ap.add_argument("--models", default="smollm2-135m", help="--curation: comma list of models")
    ap.add_argument(
        "--pools", default="pool.jsonl,hard_pool.jsonl", help="--curation: pool files under data/"
    )
    ap.add_argument(
        "--views", default="text,question", help="--curation: text views (text, prompt, question)"
    )
    ap.add_argument("--max-length", type=int, default=128, help="--curation: tokens per row")
    ap.add_argument("--sae-cache", default="~/.cache/damoc/sae", help="--curation: SAE cache ('' = none)")
    ap.add_argument("--speed", action="store_true", help="--curation: also time dense vs top-k SAE steps")
    ap.add_argument("--fresh", action="store_true", help="--curation: redo records that exist")
    ap.add_argument("--recovery", action="store_true", help="curated vs random rows: prune + FT, unpruned FT")
    ap.add_argument("--recovery-pool", default="hard_pool.jsonl", help="--recovery: pool file under data/")
    ap.add_argument(
        "--prune-samples", type=int, default=32, help="--recovery: rows the Taylor importance is measured on"
    )
    args = ap.parse_args(argv)
    if args.recovery:
        return run_recovery(args)
    if args.write_hard_pool:
        write_hard_pool(args.bigbench)
        return 0
    if args.curation:
        return run_curation(args)
    if args.summary:
        print(summary([r for r in args.summary.split(",") if r]))
        return 0
    if args.write_eval:
        write_eval(args.write_eval)
        return 0

    have = all((DATA / f"{n}.jsonl").is_file() for n in ("pool", "seeds", "eval"))
    if args.write_data or not have:
        info = write_data(args.per_domain, args.eval_rows, args.seed, args.bigbench)
    else:
        info = {n: sum(1 for _ in open(DATA / f"{n}.jsonl")) for n in ("pool", "seeds", "eval")}
        info["files"] = "committed"
    if args.eval_file != "eval.jsonl" and (DATA / args.eval_file).is_file():
        info["eval_file"] = args.eval_file
        info["eval"] = sum(1 for _ in open(DATA / args.eval_file))
    if args.write_data:
        return 0
    import shutil

    import torch

    from damoc.config import parse_config
    from damoc.curate.config import FinescopeJob
    from damoc.curate.finescope_report import render_markdown
    from damoc.curate.recipe import run_finescope
    from damoc.io.tasks import read_jsonl
    from damoc.logging_utils import setup_logging
    from damoc.train.distill import DistillConfig

    setup_logging()
    torch.set_num_threads(args.threads)
    job = parse_config(
        FinescopeJob,
        {
            "job": "finescope",
            "model": args.model,
            "pool": str(DATA / "pool.jsonl"),
            "seeds": str(DATA / "seeds.jsonl"),
            "eval": str(DATA / args.eval_file),
            "out": args.out,
            "overwrite": True,
            "save_models": False,
            "curate": {
                "method": args.curate_method,
                "top": args.top,
                "compare": [c for c in args.compare.split(",") if c and c != args.curate_method],
                "max_length": 128,
                "sae": {"expansion": 16, "k": 32, "steps": args.sae_steps, "batch_size": 512, "lr": 1e-3},
            },
            "prune": {"ratio": args.ratio, "samples": 32, "max_length": 256},
            "distill": {
                "teacher_mode": args.teacher_mode,
                "kl_weight": args.main_kl_weight,
                "generation": {"max_new_tokens": args.max_new_tokens, "batch_size": 16},
                "rewrite": {"max_new_tokens": args.rewrite_max_new_tokens},
                "finetune": {
                    "method": "lora",
                    "epochs": args.epochs,
                    "batch_size": 4,
                    "max_length": 256,
                    "seed": args.ft_seed,
                    "precision": "fp32",  # as the records were made (the product's default is auto)
                },
            },
            "score": {"eval_rows": args.eval_rows, "max_length": 256, "batch_size": 8},
        },
    )
    variants = {}
    for v in [v.strip() for v in args.variants.split(",") if v.strip()]:
        mode, _, kl = v.partition("+")
        weight = 0.0
        if kl == "kl":
            weight = args.kl_weight
        elif kl.startswith("kl="):
            weight = float(kl[3:])
        elif kl:
            raise SystemExit(f"error: unknown variant suffix '+{kl}' (use +kl or +kl=WEIGHT)")
        update = {"teacher_mode": mode, "kl_weight": weight}
        variants[v] = DistillConfig.model_validate({**job.distill.model_dump(), **update})
    t0 = time.perf_counter()
    report = run_finescope(job, cache_dir=args.cache or None, variants=variants)
    total = time.perf_counter() - t0
    rec = {
        "model": args.model,
        "machine": f"2-core CPU shared with background jobs, fp32, {args.threads} thread(s)",
        "command": " ".join(["python", *sys.argv]),
        "data": info,
        "total_wall_s": total,
        "report": report.to_dict(),
    }
    rec["report"]["curation"].pop("selected_ids", None)
    rec["teacher_answers"] = [  # per row: what the student was trained on, and whether the gold replaced it
        {k: r[k] for k in ("id", "stage", "fallback", "reason", "teacher_output", "answer")}
        for f in sorted(Path(args.out).glob("teacher_answers*.jsonl"))
        for r in read_jsonl(f)
    ]
    RECORDS.mkdir(parents=True, exist_ok=True)
    path = RECORDS / (args.record or f"{args.model}.json")
    path.write_text(json.dumps(rec, indent=2) + "\n")
    print(render_markdown(report))
    print(
        f"wall per stage (s): {json.dumps({k: round(v, 1) for k, v in report.wall_s.items()})}; total {total:.0f}"
    )
    print(f"-> {path}")
    shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
