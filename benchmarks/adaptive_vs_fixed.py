"""Adaptive vs fixed proxy, and how well the leaderboard's intervals are calibrated, against ground truths.

Two questions:

1. **Does the adaptive proxy find the same top-1 as the fixed proxy at a lower cost?** For each task of
   the selection suite (``benchmarks/suite``: its task configs and its cached, committed ground truths),
   run the fixed proxy (an experiment file of the suite, adaptive off) and the adaptive proxy (the same
   settings as its ceiling, adaptive on) side by side, and judge both picks against the truth: a pick is
   right when it is the truth's best or tied with it within noise (the truth's own paired interval).
2. **Are the intervals calibrated?** Among the pairs a proxy's report calls separated (interval excluding
   zero), how often does the truth order them the same way? Pairs the truth cannot separate are counted
   apart.

    python benchmarks/adaptive_vs_fixed.py suite --tasks wikidata social_iqa    # runs both proxies per task
    python benchmarks/adaptive_vs_fixed.py suite --tasks wikidata --fixed-from-suite  # the fixed proxy's
        # records from the suite's own method run of the experiment (no second fixed run)
    python benchmarks/adaptive_vs_fixed.py calibration   # question 2 on the committed three-model selection
        # records (benchmarks/records/selection: per-row proxy scores and ground truths; no model runs)

Records go to ``benchmarks/records/adaptive_vs_fixed/`` and the page to
``benchmarks/results/adaptive_vs_fixed.md``; costs are the proxy sweeps' summed unit wall and CPU seconds
(data stages included) and their fine-tune tokens (these do not depend on the machine's load).
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
from itertools import combinations
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

RECORDS = HERE / "records" / "adaptive_vs_fixed"
CALIBRATION = RECORDS / "calibration_selection.json"  # the interval calibration, recomputed by `calibration`
PAGE = HERE / "results" / "adaptive_vs_fixed.md"
RUNS = ROOT / "runs" / "adaptive_vs_fixed"
SELECTION = HERE / "records" / "selection"


# --- truth and proxy pairs ------------------------------------------------------------------------------


def verdict(d) -> int:
    """+1: a is better, -1: b is better, 0: tied within noise (a PairedDifference)."""
    if not d.separated:
        return 0
    return 1 if d.a_ahead else -1


def judge_pairs(proxy: dict[str, int], truth: dict[str, int]) -> dict[str, int]:
    """Counts over the pairs the proxy calls separated: truth agrees / disagrees / ties them."""
    out = {"called": 0, "agree": 0, "disagree": 0, "truth_tied": 0, "tied_by_proxy": 0}
    for pair, v in proxy.items():
        if v == 0:
            out["tied_by_proxy"] += 1
            continue
        out["called"] += 1
        t = truth.get(pair, 0)
        out["agree" if t == v else ("truth_tied" if t == 0 else "disagree")] += 1
    return out


def add(total: dict[str, int], part: dict[str, int]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v


def agreement_line(c: dict[str, int]) -> str:
    resolved = c["agree"] + c["disagree"]
    share = f"{c['agree'] / resolved:.2f}" if resolved else "—"
    return (
        f"{c['called']} pairs called separated: the truth agrees on {c['agree']}, disagrees on "
        f"{c['disagree']}, ties {c['truth_tied']} (agreement among the truth's resolved pairs {share}); "
        f"{c['tied_by_proxy']} pairs called tied"
    )


# --- calibration on the committed three-model selection records -------------------------------------


def _truth_per_row() -> dict[tuple[str, float], list[float]]:
    out = {}
    for f in glob.glob(str(SELECTION / "groundtruth" / "*.json")):
        d = json.loads(Path(f).read_text())
        if d["status"] == "ok" and d.get("per_example"):
            out[(d["candidate"], round(d["score"], 12))] = d["per_example"]
    return out


def calibration(level: float, n_boot: int) -> dict:
    """Interval calibration of the proxies in ``per_row.json`` against their runs' ground truths."""
    from damoc.evaluate.paired import paired_difference

    per_row = json.loads((SELECTION / "per_row.json").read_text())
    truth_rows = _truth_per_row()

    def diff(a, b, nbytes):
        bits = lambda per: [p * max(1, n) for p, n in zip(per, nbytes, strict=True)]  # noqa: E731
        return paired_difference(bits(a), bits(b), nbytes, higher_is_better=False, n_boot=n_boot, level=level)

    runs, total = {}, {}
    truth_cache: dict[str, dict] = {}
    for name, run in sorted(per_row.items()):
        nbytes = run["bytes"]
        cands = sorted(run["proxy"])
        key = json.dumps(sorted(run["truth"].items()))
        if key not in truth_cache:
            t_rows = {c: truth_rows[(c, round(s, 12))] for c, s in run["truth"].items()}
            truth_cache[key] = {
                f"{a}|{b}": verdict(diff(t_rows[a], t_rows[b], nbytes)) for a, b in combinations(cands, 2)
            }
        truth = truth_cache[key]
        proxy = {
            f"{a}|{b}": verdict(diff(run["proxy"][a], run["proxy"][b], nbytes))
            for a, b in combinations(cands, 2)
        }
        counts = judge_pairs(proxy, truth)
        runs[name] = {"proxy": proxy, "truth": truth, "counts": counts}
        add(total, counts)
    seeds = _seed_groups(per_row, truth_cache, diff)
    held_out = _held_out_rows(per_row, level, n_boot)
    by_setting: dict[str, dict[str, int]] = {}
    for name, r in runs.items():
        add(by_setting.setdefault(setting_of(name), {}), r["counts"])
    return {
        "level": level,
        "n_boot": n_boot,
        "runs": runs,
        "total": total,
        "by_setting": by_setting,
        "seeds": seeds,
        "held_out_rows": held_out,
        "truths": len(truth_cache),
    }


SPLITS = 10  # random halvings of each run's dev rows for the held-out-rows check


def _held_out_rows(per_row: dict, level: float, n_boot: int) -> dict[str, int]:
    """Is the interval calibrated for the dev rows' own noise? Each run's dev rows are halved at random
    (``SPLITS`` times); a pair the interval on one half calls separated is checked against the other half's
    order (its point estimate, itself noisy: a lower bound on the agreement)."""
    import random

    from damoc.evaluate.paired import paired_difference

    out = {"called": 0, "agree": 0, "disagree": 0, "tied_by_proxy": 0}
    rng = random.Random(0)
    for run in per_row.values():
        nbytes = run["bytes"]
        n = len(nbytes)
        for _ in range(SPLITS):
            idx = list(range(n))
            rng.shuffle(idx)
            half, rest = idx[: n // 2], idx[n // 2 :]
            for a, b in combinations(sorted(run["proxy"]), 2):
                bits = {c: [run["proxy"][c][i] * max(1, nbytes[i]) for i in range(n)] for c in (a, b)}
                d = paired_difference(
                    [bits[a][i] for i in half],
                    [bits[b][i] for i in half],
                    [nbytes[i] for i in half],
                    higher_is_better=False,
                    n_boot=n_boot,
                    level=level,
                )
                if not d.separated:
                    out["tied_by_proxy"] += 1
                    continue
                out["called"] += 1
                other = sum(bits[a][i] - bits[b][i] for i in rest) / max(1, sum(nbytes[i] for i in rest))
                out["agree" if (other < 0) == (d.diff < 0) else "disagree"] += 1
    return out


def setting_of(run: str) -> str:
    """A selection run's proxy setting, without its domain, training size and seed (``lf0_ep3``)."""
    parts = [p for p in run.split("@")[1:] if not re.fullmatch(r"n\d+", p)]
    name = parts[0] if parts else "base"
    for suffix in ("_s1", "_s2"):
        name = name.removesuffix(suffix)
    return name


def _seed_groups(per_row: dict, truth_cache: dict, diff) -> dict:
    """Runs made under seeds 0, 1, 2 of one setting: their three-seed intervals (rows and seeds resampled)."""
    from damoc.evaluate.paired import paired_difference

    groups = {}
    for name in per_row:
        if name.endswith("_s1") and name[:-3] in per_row and f"{name[:-3]}_s2" in per_row:
            base = name[:-3]
            groups[base] = [base, name, f"{base}_s2"]
        elif name.endswith("@base_s1"):
            base = name[: -len("@base_s1")]
            if base in per_row and f"{base}@base_s2" in per_row:
                groups[base] = [base, name, f"{base}@base_s2"]
    out, total = {}, {}
    for base, names in sorted(groups.items()):
        nbytes = per_row[names[0]]["bytes"]
        cands = sorted(per_row[names[0]]["proxy"])
        truth = truth_cache[json.dumps(sorted(per_row[names[0]]["truth"].items()))]
        bits = {
            c: [[p * max(1, n) for p, n in zip(per_row[x]["proxy"][c], nbytes, strict=True)] for x in names]
            for c in cands
        }
        proxy = {}
        for a, b in combinations(cands, 2):
            d = paired_difference(bits[a], bits[b], nbytes, higher_is_better=False, n_boot=2000)
            proxy[f"{a}|{b}"] = verdict(d)
        counts = judge_pairs(proxy, truth)
        out[base] = {"runs": names, "proxy": proxy, "counts": counts}
        add(total, counts)
    return {"groups": out, "total": total}


# --- adaptive vs fixed on the suite ---------------------------------------------------------------------


def _suite():
    """The selection suite's modules (``benchmarks/suite``), or a clear exit when this checkout lacks them."""
    try:
        from suite import analyze, run  # type: ignore[import-not-found]
    except ImportError as exc:
        raise SystemExit(
            f"the selection suite (benchmarks/suite) is needed for this command: {exc}"
        ) from None
    return run, analyze


def proxy_cost(board) -> dict[str, float]:
    proxy = [r for r in board.records if r.method == "proxy"]
    return {
        "wall_s": board.data.wall_s + sum(r.wall_s for r in proxy),
        "cpu_s": board.data.cpu_s + sum(r.cpu_s for r in proxy),
        "train_tokens": sum(r.train_tokens for r in proxy),
        "units": len(proxy),
    }


def _truth_verdicts(truth: dict, dev_bytes: list[int], settings) -> dict[str, int]:
    from damoc.select.confidence import compare

    out = {}
    for a, b in combinations(sorted(truth), 2):
        d = compare([truth[a]], [truth[b]], dev_bytes, settings)
        if d is None:
            raise SystemExit(f"the ground truth of {a} or {b} has no per-row scores on these dev rows")
        out[f"{a}|{b}"] = verdict(d)
    return out


def _proxy_verdicts(board, dev_bytes: list[int], settings) -> dict[str, int]:
    """Every pair of a board's proxy, compared on the dev rows (adaptive: in the last round both ran)."""
    from damoc.select.confidence import compare
    from damoc.select.records import UnitRecord

    recs: dict[str, dict[int, UnitRecord]] = {}
    if board.adaptive is None:
        for r in board.records:
            if r.method == "proxy" and r.status == "ok":
                recs.setdefault(r.candidate, {})[0] = r
    else:
        for rnd in board.adaptive.rounds:
            for e in rnd.entries:
                if e.status != "failed":
                    path = Path(board.run_dir) / e.record
                    recs.setdefault(e.candidate, {})[rnd.round] = UnitRecord.load(path)
    out = {}
    for a, b in combinations(sorted(recs), 2):
        r = min(max(recs[a]), max(recs[b]))
        d = compare([recs[a][r]], [recs[b][r]], dev_bytes, settings)
        if d is not None:
            out[f"{a}|{b}"] = verdict(d)
    return out


def _top1(pick: str | None, truth_scores: dict[str, float], truth_v: dict[str, int], hib: bool) -> dict:
    best = max(truth_scores, key=truth_scores.get) if hib else min(truth_scores, key=truth_scores.get)
    tied = pick == best or truth_v.get(f"{min(pick, best)}|{max(pick, best)}", None) == 0 if pick else False
    return {"pick": pick, "truth_best": best, "exact": pick == best, "within_noise": bool(tied)}


def _truths(analyze, task: str, truth_dir: Path | None) -> dict:
    """The task's ground-truth records per candidate: the suite's committed cache, or ``truth_dir`` (a cache
    directory where truths land before they are committed)."""
    index = analyze.load_index()
    if truth_dir is None:
        return analyze.truth_records(task, index)
    from damoc.select.cache import GroundTruthCache

    cache = GroundTruthCache(truth_dir)
    recs = {c: cache.get(k) for c, k in index[task]["keys"].items()}
    return {c: r for c, r in recs.items() if r is not None and r.status == "ok"}


def run_suite(args) -> None:
    from damoc.select.pipeline import run_select
    from damoc.select.records import Leaderboard

    run, analyze = _suite()
    over = run.experiment(args.experiment)
    if args.dev_rows:
        over = {**over, "eval": {**over.get("eval", {}), "dev_rows": args.dev_rows}}
    RECORDS.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        truth = _truths(analyze, task, args.truth_dir)
        cands = args.candidates or [
            c for c in run.load_yaml(run.HERE / "defaults.yaml")["candidates"] if c in truth
        ]
        missing = [c for c in cands if c not in truth]
        if len(cands) < 2:
            print(f"{task}: the ground truth has {sorted(truth)}: fewer than two candidates; skipped")
            continue
        if missing:  # the proxies still run (resumable), and the rerun after the truths land judges them
            print(
                f"{task}: no ground truth yet for {', '.join(missing)}: the proxies run, the picks are not judged"
            )
        truth = {c: truth[c] for c in cands if c in truth}
        name = f"{args.experiment}" + (f"@dev{args.dev_rows}" if args.dev_rows else "")
        boards = {}
        for mode in ("fixed", "adaptive"):
            # adaptive is forced on (below 4 candidates it is off by default)
            adaptive = {"enabled": mode == "adaptive"}
            cfg = run.task_config(
                task,
                {**over, "candidates": cands, "adaptive": adaptive},
                RUNS / task / f"{name}@{mode}",
                truth=False,
            )
            if mode == "fixed" and args.fixed_from_suite:
                cfg.run.run_dir = str(run.RUNS / task / args.experiment)
                boards[mode] = Leaderboard.model_validate_json(
                    (Path(cfg.run.run_dir) / "leaderboard.json").read_text()
                )
                continue
            print(f"{task}: {mode} proxy on {', '.join(cands)}", flush=True)
            boards[mode] = run_select(cfg, resume=True, methods=["proxy"], retry_failed=True)
        dev_bytes = analyze.load_index()[task]["answer_bytes"]  # every dev row the truths scored
        settings = cfg.confidence
        hib = boards["fixed"].higher_is_better
        truth_v = _truth_verdicts(truth, dev_bytes, settings)
        scores = {c: float(r.score) for c, r in truth.items()}
        out = {
            "task": task,
            "truth_missing": missing,
            "experiment": args.experiment,
            "dev_rows": boards["fixed"].data.n_dev,
            "truth_dev_rows": len(dev_bytes),
            "candidates": cands,
            "metric": boards["fixed"].metric,
            "truth": scores,
            "truth_pairs": truth_v,
        }
        for mode, board in boards.items():
            proxy_v = _proxy_verdicts(board, dev_bytes, settings)
            out[mode] = {
                "ranking": [r.candidate for r in board.rows if r.rank is not None],
                "top1": None if missing else _top1(board.best(), scores, truth_v, hib),
                "cost": proxy_cost(board),
                "pairs": proxy_v,
                # only the pairs whose two candidates have a truth are judged
                "calibration": judge_pairs({k: v for k, v in proxy_v.items() if k in truth_v}, truth_v),
                "adaptive": None
                if board.adaptive is None
                else board.adaptive.model_dump(mode="json", exclude={"rounds"}),
                "rounds": None
                if board.adaptive is None
                else [
                    [(e.candidate, e.status, e.score, e.ci_low, e.ci_high) for e in r.entries]
                    for r in board.adaptive.rounds
                ],
            }
        (RECORDS / f"{task}@{name}.json").write_text(json.dumps(out, indent=1) + "\n")
        f, a = out["fixed"], out["adaptive"]
        if missing:
            print(f"{task}: fixed ranks {f['ranking']}, adaptive ranks {a['ranking']} (not judged)")
            continue
        print(
            f"{task}: fixed picks {f['top1']['pick']} ({'right' if f['top1']['within_noise'] else 'wrong'}), "
            f"{f['cost']['cpu_s']:.0f} CPU s; adaptive picks {a['top1']['pick']} "
            f"({'right' if a['top1']['within_noise'] else 'wrong'}), {a['cost']['cpu_s']:.0f} CPU s"
        )
    write_page(args.level)


# --- the page --------------------------------------------------------------------------------------------


def _share(c: dict[str, int]) -> str:
    resolved = c["agree"] + c["disagree"]
    return f"{c['agree'] / resolved:.2f}" if resolved else "—"


def write_page(level: float = 0.95, n_boot: int = 2000) -> str:
    """The results page, the calibration recomputed from the committed selection records and saved as a
    record (``calibration_selection.json``) first."""
    cal = calibration(level, n_boot)
    RECORDS.mkdir(parents=True, exist_ok=True)
    CALIBRATION.write_text(json.dumps(cal, indent=1) + "\n")
    text = render_page(cal)
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    return text


def render_page(cal: dict | None = None) -> str:
    """The results page from the records alone (no model runs, no bootstrap): the calibration record
    (``cal``, by default the committed ``calibration_selection.json``) and the suite records ``*@*.json``."""
    cal = cal if cal is not None else json.loads(CALIBRATION.read_text())
    level, n_boot = cal["level"], cal["n_boot"]
    suite = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*@*.json"))]
    rec = cal["by_setting"].get("lf0_ep3", {})
    base = cal["by_setting"].get("base", {})
    lines = [
        "# Adaptive proxy and the leaderboard's intervals",
        "",
        f"**Current answer.** The leaderboard's {level:.0%} paired intervals over dev rows are calibrated for "
        "the noise of the dev rows (a pair separated on half of a run's dev rows kept its order on the other "
        f"half {cal['held_out_rows']['agree'] / max(1, cal['held_out_rows']['called']):.3f} of the time), not "
        "for a proxy's bias: on the committed three-model selection runs, among "
        "the pairs an interval called separated, the full fine-tune agreed on "
        f"{_share(cal['total'])} of those it resolved itself ({_share(rec)} for the every-layer 3-epoch proxy, "
        f"{_share(base)} for the layer-removal default), short of the 0.90 aimed at. " + _suite_answer(suite),
        "",
        "```",
        "python benchmarks/adaptive_vs_fixed.py calibration        # no model runs, from the committed records",
        "python benchmarks/adaptive_vs_fixed.py suite --tasks ...  # adaptive and fixed proxy per suite task",
        "```",
        "",
        "## Interval calibration on the committed three-model selection records",
        "",
        "The 49 proxy runs of `benchmarks/records/selection/per_row.json` (SmolLM2-135M, Gemma-3-270M, "
        "Qwen2.5-Coder-0.5B; five domains; several proxy settings and seeds; 60 dev rows, answer bits/byte) "
        f"against their ground truths ({cal['truths']} distinct truths, each pair resolved by the truth's own "
        f"{level:.0%} paired interval over the same dev rows). Each run's three pairs are compared by the "
        f"leaderboard's paired bootstrap ({n_boot} draws). Record: "
        "`benchmarks/records/adaptive_vs_fixed/calibration_selection.json`.",
        "",
        "| proxies | pairs | called separated | truth agrees | truth disagrees | truth tied | agreement (resolved) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("every run, one seed each", cal["total"])]
    rows += [(f"setting `{k}`", v) for k, v in sorted(cal["by_setting"].items())]
    rows += [("three seeds pooled per setting", cal["seeds"]["total"])]
    for label, c in rows:
        lines.append(
            f"| {label} | {c['called'] + c['tied_by_proxy']} | {c['called']} | {c['agree']} | {c['disagree']} | "
            f"{c['truth_tied']} | {_share(c)} |"
        )
    h = cal["held_out_rows"]
    lines += [
        "",
        f"The same proxies against their own held-out dev rows (each run's 60 rows halved at random {SPLITS} "
        "times; a pair the interval on one half separates, checked against the other half's order): "
        f"{h['called']} of {h['called'] + h['tied_by_proxy']} pairs separated, the other half agreeing on "
        f"{h['agree']} ({h['agree'] / max(1, h['called']):.3f}; the other half's order is itself a noisy "
        "estimate, so this is a lower bound).",
    ]
    lines += [
        "",
        'Reading: "agreement (resolved)" is the share of the pairs a report calls separated that the truth '
        "orders the same way, among the pairs the truth itself separates; pairs the truth ties are shown apart "
        "(no order is right or wrong about them). A proxy that ranks by something else than fine-tuning "
        "ability (layer removal hurting one architecture more than another) is confidently wrong: its "
        "intervals are narrow around a biased difference. The intervals say how sure the proxy is of its own "
        "ranking; whether the proxy ranks like the full fine-tune is what the selection suite measures.",
        "",
        "Limits: the runs share nine truths (five domains at one to three training sizes), so their pairs are "
        "not independent; an interval over dev rows does not cover the proxy's own training draw (rows, "
        "initialisation): the three-seed row pools seeds 0-2 of a setting, which covers it.",
        "",
        "## Adaptive vs fixed proxy on the selection suite",
        "",
    ]
    if not suite:
        lines += ["No suite task has been run with both proxies yet.", ""]
    else:
        lines += _suite_table(suite)
    return "\n".join(lines)


def _cost(s: dict, mode: str) -> str:
    c = s[mode]["cost"]
    return f"{c['cpu_s']:.0f} / {c['wall_s']:.0f} / {c['train_tokens']}"


def _suite_answer(suite: list[dict]) -> str:
    """The page's opening on adaptive vs fixed: what the suite records say, and what they do not."""
    if not suite:
        return "Adaptive vs fixed proxy on the selection suite: not measured yet."
    judged = [s for s in suite if not s.get("truth_missing")]
    cpu = {m: sum(s[m]["cost"]["cpu_s"] for s in suite) for m in ("fixed", "adaptive")}
    tasks = ", ".join(f"{s['task']} ({len(s['candidates'])} candidates)" for s in suite)
    out = (
        f"Adaptive vs fixed proxy, side by side on {len(suite)} suite task(s) so far ({tasks}): the adaptive "
        f"proxy cost {cpu['adaptive'] / max(1e-9, cpu['fixed']):.2f}x the fixed proxy's CPU seconds "
        f"({cpu['adaptive']:.0f} vs {cpu['fixed']:.0f})"
    )
    if judged:
        hits = {m: sum(bool(s[m]["top1"]["within_noise"]) for s in judged) for m in ("fixed", "adaptive")}
        out += (
            f"; top-1 right (the truth's best or tied with it) on {hits['adaptive']}/{len(judged)} task(s) "
            f"for adaptive, {hits['fixed']}/{len(judged)} for fixed"
        )
    missing = sorted({c for s in suite for c in s.get("truth_missing") or []})
    if missing:
        out += f"; picks not judged where a candidate's truth is not computed yet ({', '.join(missing)})"
    return (
        out + ". One task is far from the suite's twelve: this is not yet the measurement the suite is for."
    )


def _suite_table(suite: list[dict]) -> list[str]:
    lines = [
        "Each task's fixed proxy (the experiment named) and the adaptive proxy with that proxy as its last "
        "round, run side by side on the same candidates; a pick is right when it is the truth's best or tied "
        "with it (the truth's own 95% paired interval over its dev rows). Cost: the proxy sweep's summed CPU "
        "and wall seconds (data stages included) and fine-tune tokens. Records: "
        "`benchmarks/records/adaptive_vs_fixed/<task>@<experiment>.json`.",
        "",
        "| task | proxy dev rows | truth (task metric) | fixed: ranking; pick right? | "
        "adaptive: ranking; pick right? | fixed CPU s / wall s / tokens | adaptive CPU s / wall s / tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    tot: dict[str, dict[str, int]] = {"fixed": {}, "adaptive": {}}
    for s in suite:
        truth = ", ".join(f"{c} {v:.3f}" for c, v in sorted(s["truth"].items(), key=lambda t: -t[1]))
        if s.get("truth_missing"):
            truth += f"; {', '.join(s['truth_missing'])}: not yet"
        cells = []
        for mode in ("fixed", "adaptive"):
            t = s[mode]["top1"]
            add(tot[mode], s[mode]["calibration"])
            right = "not judged" if t is None else ("yes" if t["within_noise"] else "no")
            cells.append(f"{' > '.join(s[mode]['ranking'])}; {right}")
        lines.append(
            f"| {s['task']} | {s['dev_rows']} of {s['truth_dev_rows']} | {truth} | {cells[0]} | {cells[1]} | "
            f"{_cost(s, 'fixed')} | {_cost(s, 'adaptive')} |"
        )
    lines += [
        "",
        "The adaptive rounds (score on the round's dev rows; interval of the gap to the leader):",
        "",
    ]
    for s in suite:
        ad = s["adaptive"]["adaptive"] or {}
        lines.append(f"- {s['task']}: stop `{ad.get('stop', '—')}` ({ad.get('note', '')})")
        planned = ad.get("planned") or []
        for r, entries in enumerate(s["adaptive"]["rounds"] or []):
            size = planned[r] if r < len(planned) else None
            head = f"round {r}" + (
                f" ({size[0]} rows × {size[1]:g} epochs, {size[2]} dev rows)" if size else ""
            )
            parts = []
            for e in entries:
                cand, status, score = e[0], e[1], e[2]
                ci = f" [{e[3]:+.3f}, {e[4]:+.3f}]" if len(e) > 4 and e[3] is not None else ""
                parts.append(f"{cand} {status} {score if score is None else f'{score:.3f}'}{ci}")
            lines.append(f"  - {head}: " + "; ".join(parts))
    run, _ = _suite()
    every = run.load_yaml(run.HERE / "defaults.yaml")["candidates"]
    left_out = sorted({c for s in suite for c in every if c not in s["candidates"]})
    lines += [
        "",
        "Reading: a round's fixed cost (loading the model, preparing it, starting the worker, scoring even a "
        "few dev rows by generation) does not shrink with the round's rows, so with a 12-row proxy whose "
        "scoring dominates, every extra round adds close to a unit's fixed cost; the adaptive proxy pays off "
        "when a clear loser is dropped early and the full proxy is much larger than round 0 (many training "
        "rows or epochs, many dev rows, many candidates).",
        "",
        "Limits: "
        + (f"{', '.join(left_out)} left out (no truth yet); " if left_out else "")
        + "the proxies score the first dev rows only (the truths all of theirs) to keep each run to minutes; "
        "one worker thread on a 2-core machine shared with other jobs (CPU seconds are less load-sensitive "
        "than wall seconds); one proxy seed.",
    ]
    return lines + [
        "",
        "Pairs the proxies call separated, judged against the truth (pairs whose two candidates have a truth):",
        "",
        f"- fixed proxy: {agreement_line(tot['fixed'])}",
        f"- adaptive proxy: {agreement_line(tot['adaptive'])}",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite", help="adaptive vs fixed on suite tasks (runs models)")
    s.add_argument("--tasks", nargs="+", required=True, help="suite task names (benchmarks/suite/tasks.py)")
    s.add_argument(
        "--experiment", default="proxy_rows12_lf0_ep3", help="the suite experiment of the fixed proxy"
    )
    s.add_argument(
        "--fixed-from-suite", action="store_true", help="take the fixed proxy from the suite's own run"
    )
    s.add_argument(
        "--candidates", nargs="+", help="a subset of the suite's candidates (default: those with a truth)"
    )
    s.add_argument(
        "--dev-rows", type=int, help="score the proxies on the first N dev rows (the truths keep theirs)"
    )
    s.add_argument("--truth-dir", type=Path, help="a ground-truth cache directory (default: the suite's)")
    s.add_argument("--level", type=float, default=0.95)
    c = sub.add_parser("calibration", help="interval calibration on the committed selection records")
    c.add_argument("--level", type=float, default=0.95)
    c.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    if args.cmd == "suite":
        run_suite(args)
    else:
        print(write_page(args.level, args.n_boot))


if __name__ == "__main__":
    main()
