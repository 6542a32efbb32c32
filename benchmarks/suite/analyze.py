"""Score every method run on the suite against the resolved ground truth; write the results page.

    python benchmarks/suite/analyze.py           # benchmarks/results/selection_suite.md, its plot and analysis.json
    python benchmarks/suite/analyze.py --check   # fail when the committed page differs from its records

Inputs (all committed, so the page regenerates without the tasks' data): the ground-truth cache
``benchmarks/records/suite/groundtruth/``, found through ``index.json`` (each task's truth keys and dev answer
bytes, written by ``--index`` from the data), and the methods' records ``benchmarks/records/suite/methods/<experiment>/<task>.json``. A task
counts for a method only when the truth has all four candidates and the method scored all four.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from damoc.evaluate.metrics import get_metric  # noqa: E402
from damoc.select.ats import accept_then_stop  # noqa: E402
from damoc.select.cache import GroundTruthCache, ground_truth_key  # noqa: E402
from damoc.select.fidelity import judge, resolve_truth, separated_agreement  # noqa: E402
from damoc.select.pipeline import load_checked_task, train_target  # noqa: E402
from damoc.select.records import UnitRecord  # noqa: E402
from suite.run import RECORDS, halves, load_yaml, task_config  # noqa: E402
from suite.tasks import TASKS  # noqa: E402

ROOT = HERE.parents[1]
PAGE = ROOT / "benchmarks" / "results" / "selection_suite.md"
PLOT = ROOT / "benchmarks" / "results" / "selection_suite.png"
ANALYSIS = RECORDS / "analysis.json"
README = ROOT / "README.md"
CANDIDATES = load_yaml(HERE / "defaults.yaml")["candidates"]
# methods as the page names them: experiment files, or several (AtS: its subset sizes)
METHODS = {
    "zero-shot": ["zero_shot"],
    "few-shot k=1": ["few_shot_k1"],
    "few-shot k=5": ["few_shot_k5"],
    "AtS (8/16/32 rows)": ["ats_n8", "ats_n16", "ats_n32"],
    "proxy: product default": ["proxy_default"],
    "proxy: 12 rows, all layers, 3 ep": ["proxy_rows12_lf0_ep3"],
    "  scored on 64 dev rows": ["proxy_rows12_lf0_ep3_dev64"],
    "  + kcenter filter": ["proxy_rows12_lf0_ep3_kcenter"],
    "  + dsir filter": ["proxy_rows12_lf0_ep3_dsir"],
    "  + heuristics filter": ["proxy_rows12_lf0_ep3_heuristics"],
}


INDEX = RECORDS / "index.json"


def task_index(task: str) -> dict:
    """What the analysis needs from a task's data: each candidate's ground-truth key (as the pipeline files
    the truth in its cache) and the dev rows' answer bytes (the weights of bits/byte)."""
    from damoc.io.tasks import load_examples

    cfg = task_config(task, {}, ROOT / "runs" / "suite" / task / "analysis", truth=True)
    t, dev = load_checked_task(cfg)
    ft = cfg.validate_.finetunes()[0]
    truth_eval = cfg.eval.model_copy(update={"precision": cfg.validate_.eval_precision})
    keys = {c: ground_truth_key(t.train, dev, c, ft, truth_eval, train_target(cfg)) for c in CANDIDATES}
    dev_rows = load_examples(cfg.task.dev_path)[: len(dev)]
    return {"keys": keys, "answer_bytes": [len(e.answer.strip().encode()) for e in dev_rows]}


def write_index() -> None:
    """Index every task (needs the tasks' data: the bigbench sdist is downloaded once)."""
    INDEX.parent.mkdir(parents=True, exist_ok=True)
    INDEX.write_text(json.dumps({t: task_index(t) for t in TASKS}, indent=1) + "\n", encoding="utf-8")


def load_index() -> dict:
    if not INDEX.is_file():
        raise SystemExit(f"{INDEX} is missing: run python benchmarks/suite/analyze.py --index")
    return json.loads(INDEX.read_text(encoding="utf-8"))


def truth_records(task: str, index: dict) -> dict[str, UnitRecord]:
    """The task's ground-truth record per candidate, from the committed cache."""
    cache = GroundTruthCache(RECORDS / "groundtruth")
    out = {}
    for cand, key in index[task]["keys"].items():
        rec = cache.get(key)
        if rec is not None and rec.status == "ok":
            out[cand] = rec
    return out


def method_records(experiment: str, task: str) -> tuple[dict[str, UnitRecord], dict] | None:
    path = RECORDS / "methods" / experiment / f"{task}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    recs = {}
    for r in data["records"]:
        rec = UnitRecord.model_validate(r)
        if rec.status == "ok":
            recs[rec.candidate] = rec
    return recs, data


def metric_of(rec: UnitRecord, metric: str) -> tuple[float, list[float]]:
    if rec.metric == metric:
        return float(rec.score), rec.per_example
    extra = rec.extra[metric]
    return extra.value, extra.per_example


@dataclass
class Cost:
    wall_s: float
    cpu_s: float


def unit_cost(recs) -> Cost:
    return Cost(sum(r.wall_s for r in recs), sum(r.cpu_s for r in recs))


def method_scores(
    name: str, task: str, metric: str
) -> tuple[dict[str, float], bool, Cost, dict[str, list[float]] | None] | None:
    """A method's score per candidate on ``task`` by ``metric`` (and its direction), its whole cost, and its
    per-dev-row scores (None for AtS, which ranks by an extrapolation, not by rows)."""
    runs = [method_records(e, task) for e in METHODS[name]]
    if any(r is None or len(r[0]) < len(CANDIDATES) for r in runs):
        return None
    cost = Cost(0.0, 0.0)
    for recs, data in runs:  # type: ignore[misc]
        c = unit_cost(recs.values())
        stages = data["data"]
        cost = Cost(
            cost.wall_s + c.wall_s + sum(stages["stage_s"].values()), cost.cpu_s + c.cpu_s + stages["cpu_s"]
        )
    if name.startswith("AtS"):
        n_train = TASKS[task].train
        sizes = [runs[i][1]["data"]["n_proxy_train"] for i in range(len(runs))]  # type: ignore[index]
        pred = {}
        for cand in CANDIDATES:
            losses = [metric_of(runs[i][0][cand], "answer_bpb")[0] for i in range(len(runs))]  # type: ignore[index]
            pred[cand] = accept_then_stop(sizes, losses).predict(n_train)
        return pred, False, cost, None  # the predicted loss ranks the candidates for every metric
    recs = runs[0][0]  # type: ignore[index]
    scores = {c: metric_of(recs[c], metric)[0] for c in CANDIDATES}
    per_row = {c: list(metric_of(recs[c], metric)[1]) for c in CANDIDATES}
    return scores, get_metric(metric).higher_is_better, cost, per_row


def analyse() -> dict:
    out: dict = {"tasks": {}, "methods": list(METHODS)}
    index = load_index()
    for task in TASKS:
        truth = truth_records(task, index)
        t = TASKS[task]
        done = {c: metric_of(r, t.metric)[0] for c, r in truth.items()}
        hours = sum(r.cpu_s or 0.0 for r in truth.values()) / 3600
        if len(truth) < len(CANDIDATES):
            out["tasks"][task] = {"truth_done": done, "truth_cpu_h": hours}
            continue
        entry: dict = {"truth_done": done, "truth_cpu_h": hours, "metrics": {}}
        truth_cost = unit_cost(truth.values())
        entry["truth_cost"] = asdict(truth_cost)
        for metric in (t.metric, "answer_bpb"):
            hib = get_metric(metric).higher_is_better
            weights = [float(b) for b in index[task]["answer_bytes"]] if metric == "answer_bpb" else None
            resolved = resolve_truth({c: metric_of(truth[c], metric)[1] for c in CANDIDATES}, hib, weights)
            m: dict = {
                "truth": resolved.scores,
                "pairs": [asdict(p) for p in resolved.pairs],
                "methods": {},
            }
            for name in METHODS:
                got = method_scores(name, task, metric)
                if got is None:
                    continue
                scores, mhib, cost, per_row = got
                f = judge(resolved, scores, mhib)
                m["methods"][name] = {
                    **asdict(f),
                    "scores": scores,
                    "calibration": None
                    if per_row is None
                    else asdict(separated_agreement(per_row, mhib, resolved, weights)),
                    "cost": asdict(cost),
                    "ratio_wall": truth_cost.wall_s / max(1e-9, cost.wall_s),
                    "ratio_cpu": truth_cost.cpu_s / max(1e-9, cost.cpu_s),
                }
            entry["metrics"][metric] = m
        out["tasks"][task] = entry
    return out


# --- the page ---------------------------------------------------------------------------------------------


def _f(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def summary_rows(an: dict, tasks: list[str], which: str) -> list[tuple[str, dict]]:
    """Per method: tasks, top-1 within noise, mean regret, pooled resolved-pair accuracy, mean τ, median ratio."""
    rows = []
    for name in METHODS:
        per = []
        for task in tasks:
            e = an["tasks"][task]
            if "metrics" not in e:
                continue
            metric = TASKS[task].metric if which == "task" else "answer_bpb"
            got = e["metrics"][metric]["methods"].get(name)
            if got is not None:
                per.append(got)
        if not per:
            continue
        pairs = sum(p["resolved_pairs"] for p in per)
        right = sum((p["resolved_pair_acc"] or 0) * p["resolved_pairs"] for p in per)
        taus = [p["kendall"] for p in per if p["kendall"] is not None]
        cal = [p["calibration"] for p in per if p.get("calibration")]
        agree = sum(c["agree"] for c in cal)
        judged = agree + sum(c["disagree"] for c in cal)
        rows.append(
            (
                name,
                {
                    "n": len(per),
                    "top1": sum(p["top1_within_noise"] for p in per),
                    "regret": statistics.mean(p["regret"] for p in per),
                    "pair_acc": right / pairs if pairs else None,
                    "pairs": pairs,
                    "tau": statistics.mean(taus) if taus else None,
                    "ratio": statistics.median(p["ratio_cpu"] for p in per),
                    "calibration": (agree / judged if judged else None, judged) if cal else None,
                },
            )
        )
    return rows


def versus(an: dict, tasks: list[str], a: str, b: str) -> tuple[float, float, float, int] | None:
    """Paired bootstrap over tasks of the difference in resolved-pair accuracy (task metric): a - b."""
    diffs = []
    for task in tasks:
        e = an["tasks"][task]
        if "metrics" not in e:
            continue
        ms = e["metrics"][TASKS[task].metric]["methods"]
        if a in ms and b in ms and ms[a]["resolved_pair_acc"] is not None:
            diffs.append(ms[a]["resolved_pair_acc"] - ms[b]["resolved_pair_acc"])
    if len(diffs) < 2:
        return None
    rng = random.Random(0)
    boots = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(2000))
    return statistics.mean(diffs), boots[50], boots[1949], len(diffs)


README_BEGIN = "<!-- selection-suite:begin (python benchmarks/suite/analyze.py) -->"
README_END = "<!-- selection-suite:end -->"


def truth_table(an: dict) -> list[str]:
    """Per task, each candidate's fine-tuned score on its task metric, as far as the truths have come."""
    short = [c.split("-")[0] + "-" + c.split("-")[-1] for c in CANDIDATES]
    lines = [
        "| task | half | metric | " + " | ".join(short) + " | CPU hours |",
        "|---|---|---|" + "---|" * len(CANDIDATES) + "---|",
    ]
    h = halves()
    for half in ("development", "held_out"):
        for task in h[half]:
            e = an["tasks"][task]
            cells = [_f(e["truth_done"].get(c), 3) for c in CANDIDATES]
            lines.append(
                f"| {task} | {half.replace('_', '-')} | {TASKS[task].metric} | "
                + " | ".join(cells)
                + f" | {e['truth_cpu_h']:.1f} |"
            )
    return lines


def readme_block(an: dict) -> str:
    n_done = sum("metrics" in e for e in an["tasks"].values())
    n_units = sum(len(e["truth_done"]) for e in an["tasks"].values())
    lines = [
        README_BEGIN,
        "",
        f"Ground truths so far: {n_units} of {len(TASKS) * len(CANDIDATES)} fine-tunes, {n_done} of "
        f"{len(TASKS)} tasks complete (each candidate LoRA-fine-tuned on the task's training split, scored on "
        "200 dev rows by the task metric; — = not run yet):",
        "",
        *truth_table(an),
        "",
        README_END,
    ]
    return "\n".join(lines)


def with_readme_block(readme: str, block: str) -> str:
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < 0:
        raise SystemExit(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    return readme[:start] + block + readme[end + len(README_END) :]


def page(an: dict) -> str:
    h = halves()
    lines = [
        "# Selection suite: does a cheap ranking match fine-tuning?",
        "",
        "```",
        "python benchmarks/suite/run.py truth --half development held_out   # ground truths (cached, committed)",
        "python benchmarks/suite/run.py method EXPERIMENT --half development  # each setting compared",
        "python benchmarks/suite/analyze.py                                   # this page",
        "```",
        "",
        f"Truth recipe (every candidate, every task): {truth_recipe()}; scored on each task's dev rows by its "
        "task metric and answer bits/byte. A pair of candidates whose paired-bootstrap 95% interval (over the "
        "dev rows) crosses zero is a tie: it counts in no pair accuracy, and a pick tied with the best is a "
        "top-1 hit. Cost: CPU seconds of everything a method's ranking needs (data stages, model loads, "
        "fine-tunes, dev scoring), the full sweep's over the method's. \"Separated by its own interval\": the "
        "pairs a method's own 95% paired interval over its dev rows separates (what a leaderboard marks as "
        "ordered rather than tied), and the share of them the truth orders the same way, among those the truth "
        "resolves (the leaderboard's intervals aim at 0.90 or better).",
        "",
        *(
            ["![fidelity against cost](selection_suite.png)", ""]
            if any("metrics" in e for e in an["tasks"].values())
            else []
        ),
        "## Ground truths so far",
        "",
        "Each candidate's fine-tuned score on the task metric (— = not run yet); CPU hours of the truths.",
        "",
        *truth_table(an),
        "",
    ]
    for half in ("development", "held_out"):
        tasks = h[half]
        done = [t for t in tasks if "metrics" in an["tasks"][t]]
        lines += [
            f"## {half.replace('_', '-')} half: {len(done)} of {len(tasks)} tasks with a complete truth",
            "",
        ]
        if not done:
            lines += ["No task of this half has its ground truth for all four candidates yet.", ""]
            continue
        for which, title in (("task", "task metric"), ("bpb", "answer bits/byte")):
            rows = summary_rows(an, done, which)
            if not rows:
                continue
            lines += [
                f"By the {title}:",
                "",
                "| method | tasks | top-1 within noise | mean regret | resolved-pair accuracy (pairs) | mean Kendall τ "
                "| separated by its own interval: truth agrees (pairs) | full ÷ method, CPU time (median) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for name, r in rows:
                cal = (
                    "—" if r["calibration"] is None else f"{_f(r['calibration'][0])} ({r['calibration'][1]})"
                )
                lines.append(
                    f"| {name.strip()} | {r['n']} | {r['top1']} / {r['n']} | {_f(r['regret'], 3)} | "
                    f"{_f(r['pair_acc'])} ({r['pairs']}) | {_f(r['tau'])} | {cal} | {r['ratio']:.1f}x |"
                )
            lines.append("")
        lines += per_task_lines(an, done)
        lines += versus_lines(an, done)
    lines += [
        "## Tasks",
        "",
        "| task | half | domain | metric | train / dev rows | source | original license |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in TASKS.items():
        half = next(k for k, v in h.items() if name in v)
        lines.append(
            f"| {name} | {half} | {t.domain} | {t.metric} | {t.train} / {t.dev} | {t.source} | {t.license} |"
        )
    return "\n".join(lines) + "\n"


def per_task_lines(an: dict, tasks: list[str]) -> list[str]:
    lines = [
        "Per task (task metric): the truth's order with its unresolved pairs, then each method's pick "
        "(✓ best or tied with it) and resolved-pair accuracy:",
        "",
    ]
    names = [n for n in METHODS]
    lines.append("| task | truth (best first; = tied) | " + " | ".join(n.strip() for n in names) + " |")
    lines.append("|---" * (2 + len(names)) + "|")
    for task in tasks:
        e = an["tasks"][task]["metrics"][TASKS[task].metric]
        hib = get_metric(TASKS[task].metric).higher_is_better
        order = sorted(e["truth"], key=lambda c: -e["truth"][c] if hib else e["truth"][c])
        ties = {frozenset((p["a"], p["b"])) for p in e["pairs"] if p["better"] is None}
        text = order[0]
        for prev, cur in zip(order, order[1:], strict=False):
            text += (" = " if frozenset((prev, cur)) in ties else " > ") + cur
        cells = []
        for n in names:
            m = e["methods"].get(n)
            cells.append(
                "—" if m is None else f"{'✓' if m['top1_within_noise'] else '✗'} {_f(m['resolved_pair_acc'])}"
            )
        lines.append(f"| {task} | {text} | " + " | ".join(cells) + " |")
    return lines + [""]


PEERS = ("few-shot k=1", "few-shot k=5", "AtS (8/16/32 rows)")


def versus_lines(an: dict, tasks: list[str]) -> list[str]:
    """Each proxy setting against each peer: mean per-task difference in resolved-pair accuracy, 95% interval."""
    lines = []
    for a in METHODS:
        if not a.strip().startswith(("proxy", "+")):
            continue
        for b in PEERS:
            v = versus(an, tasks, a, b)
            if v is not None:
                mean, lo, hi, n = v
                lines.append(f"| {a.strip()} | {b} | {n} | {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] |")
    if not lines:
        return []
    head = [
        "Proxy settings against the peers (task metric): mean over tasks of the difference in resolved-pair "
        "accuracy, with a 95% bootstrap interval over tasks (an interval that excludes zero separates them):",
        "",
        "| setting | peer | tasks | difference [95% interval] |",
        "|---|---|---|---|",
    ]
    return head + lines + [""]


def truth_recipe() -> str:
    ft = load_yaml(HERE / "defaults.yaml")["validate"]["finetune"]
    return ", ".join(f"{k} {v}" for k, v in ft.items())


def plot(an: dict, path: Path) -> None:
    """Fidelity (resolved-pair accuracy, task metric) against cost ratio, one point per method and half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for half, marker in (("development", "o"), ("held_out", "s")):
        done = [t for t in halves()[half] if "metrics" in an["tasks"][t]]
        for name, r in summary_rows(an, done, "task"):
            if r["pair_acc"] is None:
                continue
            ax.scatter(r["ratio"], r["pair_acc"], marker=marker, s=40)
            ax.annotate(
                name.strip(),
                (r["ratio"], r["pair_acc"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("full fine-tune sweep ÷ method, CPU time (median over tasks; right is cheaper)")
    ax.set_ylabel("resolved-pair accuracy (task metric)")
    ax.set_ylim(-0.05, 1.05)
    ax.axvline(20, color="grey", lw=0.8, ls=":")
    ax.set_title(
        "Selection suite: agreement with the fine-tuned truth against cost (o development, □ held out)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--check", action="store_true", help="fail when the committed page differs from its records"
    )
    ap.add_argument(
        "--index", action="store_true", help="first re-index the tasks' truth keys (needs their data)"
    )
    args = ap.parse_args()
    if args.index:
        write_index()
    an = analyse()
    text = page(an)
    readme = README.read_text(encoding="utf-8")
    new_readme = with_readme_block(readme, readme_block(an))
    if args.check:
        stale = [
            p.name
            for p, want in ((PAGE, text), (README, new_readme))
            if not p.is_file() or p.read_text(encoding="utf-8") != want
        ]
        if stale:
            raise SystemExit(
                f"{', '.join(stale)} out of date with the records: run python benchmarks/suite/analyze.py"
            )
        print(f"{PAGE.name} and README.md match their records")
        return
    README.write_text(new_readme, encoding="utf-8")
    ANALYSIS.parent.mkdir(parents=True, exist_ok=True)
    ANALYSIS.write_text(
        json.dumps(an, indent=1, default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
        + "\n"
    )
    PAGE.write_text(text, encoding="utf-8")
    if any("metrics" in e for e in an["tasks"].values()):  # nothing to plot before a task is judged
        plot(an, PLOT)
    print(text)


if __name__ == "__main__":
    main()
