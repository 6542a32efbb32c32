"""Layer pruning on real zoo models: held-out domain loss after removing 25% of the layers, per merge method.

For each model and calibration domain: the layers to remove are scored (block influence) once on
training rows; then each merge method prunes a fresh copy of the model with those layers, and the
loss (nats/token) is measured on held-out dev rows of BOTH domains (in-domain and cross-domain).
Also: time and peak memory (RSS above the loaded model) of scoring and of pruning, as a ratio to one
plain forward pass over the same calibration text.

Resumable: every (model, domain, method) result is cached as JSON in benchmarks/records/layer_pruning/.

    python benchmarks/layer_pruning.py                      # all zoo models found, both domains
    python benchmarks/layer_pruning.py --models smollm2-135m --domains pubmedqa --methods none,linear
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
from pathlib import Path

import torch

from damoc.evaluate.likelihood import text_loss
from damoc.io.files import read_json, write_json_atomic, write_text_atomic
from damoc.io.tasks import load_task
from damoc.model.arch import load_model
from damoc.model.importance import calibration_batches, choose_layers, score_batches
from damoc.model.layer_pruning import LayerPruneConfig, prune_layers

ROOT = Path(__file__).resolve().parent
RECORDS = ROOT / "records" / "layer_pruning"
RESULTS = ROOT / "results" / "layer_pruning.md"
MODELS = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"]
DOMAINS = ["pubmedqa", "finance"]
# name -> LayerPruneConfig overrides (besides the layers to remove)
METHODS: dict[str, dict] = {
    "none": {"merge": "none"},
    "magnitude": {"merge": "magnitude", "density": 0.2, "scale": 0.5, "scale_by_count": True},
    "dare": {"merge": "dare", "density": 0.2, "scale": 0.5, "scale_by_count": True},
    "linear": {"merge": "linear"},
    "linear-topdown": {"merge": "linear", "fit_on_pruned": False},
    "linear-noverify": {"merge": "linear", "verify": False},
    "linear-r0.01": {"merge": "linear", "ridge": 0.01, "token_weight": "uniform", "verify": False},
    "linear-r0.1": {"merge": "linear", "ridge": 0.1, "token_weight": "uniform", "verify": False},
    "linear-r1e-4": {"merge": "linear", "ridge": 1e-4, "token_weight": "uniform", "verify": False},
    "linear-invnorm": {"merge": "linear", "ridge": 1e-3, "token_weight": "inverse_norm", "verify": False},
    # the first defaults (uniform token weights, ridge 1e-3), kept for the record
    "linear-v0": {"merge": "linear", "token_weight": "uniform", "ridge": 1e-3},
    "linear-c64": {"merge": "linear", "calib_samples": 64},
    "linear-c128": {"merge": "linear", "calib_samples": 128},
}
DEFAULT_METHODS = ["none", "magnitude", "dare", "linear", "linear-topdown"]


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every few milliseconds (bytes)."""

    def __init__(self, every_s: float = 0.005):
        self.every_s = every_s
        self.peak = 0

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(self.every_s)

    def __enter__(self):
        gc.collect()
        self.base = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss() - self.base)


def _texts(domain: str, n_calib: int, n_eval: int, seed: int) -> tuple[list[str], list[str]]:
    """Calibration texts from training rows (``n_calib``; a method may use more) and held-out dev rows."""
    task = load_task(domain, dev_size=n_eval, seed=seed)
    return [e.text() for e in task.train[: max(n_calib, 128)]], [e.text() for e in task.dev[:n_eval]]


def _record_path(model: str, domain: str, method: str) -> Path:
    return RECORDS / f"{model}__{domain}__{method}.json"


def _cached(path: Path, fresh: bool):
    return None if fresh or not path.is_file() else read_json(path)


@torch.no_grad()
def run_model(name: str, domains: list[str], methods: list[str], args) -> None:
    texts = {d: _texts(d, args.calib, args.eval, args.seed) for d in DOMAINS}
    base_path = _record_path(name, "all", "original")
    base = _cached(base_path, args.fresh)
    model, tok = load_model(name)
    n_layers = len(model.model.layers)
    if base is None:
        base = {"model": name, "n_layers": n_layers, "loss": {}}
        for d in DOMAINS:
            base["loss"][d] = text_loss(
                model, tok, texts[d][1], max_length=args.length, batch_size=args.batch
            )
        write_json_atomic(base_path, base)
    print(f"{name}: original loss {base['loss']}", flush=True)
    for domain in domains:
        calib = texts[domain][0][: args.calib]
        choice_path = _record_path(name, domain, "choice")
        choice = _cached(choice_path, args.fresh)
        if choice is None:
            batches = calibration_batches(tok, calib, args.length, args.batch)
            with PeakRSS() as fwd:
                for ids, mask in batches:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
            with PeakRSS() as sc:
                scores = score_batches(model, batches, "bi")
            n = LayerPruneConfig(fraction=args.fraction).count(n_layers)
            choice = {
                "removed": choose_layers(scores, n),
                "bi": scores.bi,
                "tokens": scores.n_tokens,
                "forward_s": fwd.wall,
                "forward_peak_mb": fwd.peak / 2**20,
                "score_s": sc.wall,
                "score_peak_mb": sc.peak / 2**20,
            }
            write_json_atomic(choice_path, choice)
        print(f"{name}/{domain}: remove {choice['removed']}", flush=True)
        for method in methods:
            path = _record_path(name, domain, method)
            if _cached(path, args.fresh) is not None:
                continue
            fresh_model, _ = load_model(name)
            opts = {"calib_samples": args.calib, **METHODS[method]}
            cfg = LayerPruneConfig(
                layers=choice["removed"],
                calib_length=args.length,
                batch_size=args.batch,
                seed=args.seed,
                **opts,
            )
            with PeakRSS() as pr:  # exactly the first calib_samples training texts
                report = prune_layers(fresh_model, tok, texts[domain][0][: cfg.calib_samples], cfg)
            eval_domains = DOMAINS if not args.in_domain_only else [domain]
            loss = {
                d: text_loss(fresh_model, tok, texts[d][1], max_length=args.length, batch_size=args.batch)
                for d in eval_domains
            }
            rec = {
                "model": name,
                "calib_domain": domain,
                "method": method,
                "config": cfg.model_dump(mode="json"),
                "removed": report.removed,
                "loss": loss,
                "prune_s": pr.wall,
                "prune_peak_mb": pr.peak / 2**20,
                "merge_details": report.merge_details,
            }
            write_json_atomic(path, rec)
            print(f"{name}/{domain}/{method}: {loss} ({pr.wall:.1f}s)", flush=True)
            del fresh_model
            gc.collect()
    del model
    gc.collect()


def _gap_back(orig: float, plain: float, merged: float) -> float:
    return (plain - merged) / (plain - orig) if plain != orig else float("nan")


def render(methods: list[str]) -> str:
    """The results tables, from the cached records: loss per method (gap back vs plain removal in brackets)."""
    head = "| model (removed/layers) | calib → eval | original | " + " | ".join(methods) + " |"
    rows = [head, "|" + "---|" * (len(methods) + 3)]
    cost = [
        "| model / domain | forward s | score s (×fwd) | score peak MB (×fwd) | prune s (×fwd) | prune peak MB (×fwd) |",
        "|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        base_p = _record_path(name, "all", "original")
        if not base_p.is_file():
            continue
        base = read_json(base_p)
        for domain in DOMAINS:
            recs = {m: read_json(p) for m in methods if (p := _record_path(name, domain, m)).is_file()}
            if not recs:
                continue
            choice = read_json(_record_path(name, domain, "choice"))
            for ev in DOMAINS:
                plain = recs.get("none", {}).get("loss", {}).get(ev)
                cells = []
                for m in methods:
                    loss = recs.get(m, {}).get("loss", {}).get(ev)
                    if loss is None:
                        cells.append("–")
                    elif plain is None or m == "none":
                        cells.append(f"{loss:.3f}")
                    else:
                        cells.append(f"{loss:.3f} ({100 * _gap_back(base['loss'][ev], plain, loss):.0f}%)")
                if all(c == "–" for c in cells):
                    continue
                tag = f"{domain} → {ev}" + (" (in-domain)" if ev == domain else "")
                n = f"{len(choice['removed'])}/{base['n_layers']}"
                rows.append(f"| {name} ({n}) | {tag} | {base['loss'][ev]:.3f} | " + " | ".join(cells) + " |")
            fwd, fmb = choice["forward_s"], max(1e-9, choice["forward_peak_mb"])
            prune = ", ".join(f"{m} {r['prune_s']:.0f} ({r['prune_s'] / fwd:.1f}×)" for m, r in recs.items())
            pmem = ", ".join(
                f"{m} {r['prune_peak_mb']:.0f} ({r['prune_peak_mb'] / fmb:.1f}×)" for m, r in recs.items()
            )
            cost.append(
                f"| {name} / {domain} | {fwd:.1f} | {choice['score_s']:.1f} ({choice['score_s'] / fwd:.2f}×) | "
                f"{choice['score_peak_mb']:.0f} ({choice['score_peak_mb'] / fmb:.2f}×) | {prune} | {pmem} |"
            )
    return "\n".join(rows) + "\n\n" + "\n".join(cost) + "\n"


PAGE_METHODS = ["none", "magnitude", "dare", "linear", "linear-v0", "linear-r1e-4", "linear-invnorm"]


def render_tables() -> str:
    """The tables of ``results/layer_pruning.md`` from the committed records, for the methods the page
    compares (``--table-only --methods`` of PAGE_METHODS; no model runs). ``assemble_results.py --check``
    finds each in the page."""
    return render(PAGE_METHODS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--calib", type=int, default=32)
    ap.add_argument("--eval", type=int, default=32)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--in-domain-only", action="store_true", help="score only the calibration domain")
    ap.add_argument("--fresh", action="store_true", help="ignore cached records")
    ap.add_argument("--table-only", action="store_true", help="only render the table from the records")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if not args.table_only:
        for name in args.models.split(","):
            run_model(name, args.domains.split(","), methods, args)
    table = render(methods)
    print(table)
    write_text_atomic(RECORDS / "table.md", table)


if __name__ == "__main__":
    main()
