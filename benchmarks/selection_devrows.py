"""How many dev rows does the proxy need? Its ranking on random subsets of the 60 dev rows.

Dev scoring is a fixed part of every proxy (the same 60 rows per candidate, whatever the training
size): about a quarter to a half of a proxy's wall time in benchmarks/selection.py. This reads the
proxies' per-row answer bits/byte (the score is bits summed over rows ÷ answer bytes summed over
rows, so a subset's score is exact, not an average of averages) and asks, for k dev rows drawn at
random (``--draws`` draws per k, without replacement), how often the proxy's top-1 and its whole
order are still the full fine-tune truth's (the truth keeps its 60-row scores).

    python benchmarks/selection_devrows.py --extract   # runs/selection/* -> records/selection/per_row.json
    python benchmarks/selection_devrows.py             # the table, from the committed per-row record

No model runs here; the per-row record is committed so the table reproduces on a fresh checkout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from damoc.select.devrows import agreement, subset_score

ROOT = Path(__file__).resolve().parent
RUNS = ROOT.parent / "runs" / "selection"
RECORDS = ROOT / "records" / "selection"
PER_ROW = RECORDS / "per_row.json"
KS = (10, 20, 30, 40, 60)


def summary_for(run: str) -> Path:
    return RECORDS / f"{run}.json" if "@" not in run else RECORDS / "variants" / f"{run}.json"


def extract() -> dict:
    """Per-row proxy scores of every finished run whose committed summary holds the same proxy scores."""
    out = {}
    for run_dir in sorted(p for p in RUNS.iterdir() if p.is_dir() and "#" not in p.name):
        summ_path = summary_for(run_dir.name)
        dev = run_dir / "data" / "dev.jsonl"
        if not summ_path.is_file() or not dev.is_file():
            continue
        summ = json.loads(summ_path.read_text())
        if summ.get("metric") != "answer_bpb":
            continue
        truth = {r["candidate"]: r["scores"].get("full") for r in summ["rows"]}
        proxy = {r["candidate"]: r["scores"].get("proxy") for r in summ["rows"]}
        if None in truth.values() or None in proxy.values():
            continue
        nbytes = [len(json.loads(line)["answer"].strip().encode()) for line in dev.read_text().splitlines()]
        rows = {}
        for rec_path in run_dir.glob("candidates/*/proxy.json"):
            rec = json.loads(rec_path.read_text())
            per = rec.get("per_example")
            if rec.get("status") != "ok" or not per or len(per) != len(nbytes):
                continue
            whole = subset_score(per, nbytes, range(len(nbytes)))
            if abs(whole - proxy.get(rec["candidate"], float("nan"))) > 1e-9:
                continue  # the run directory's proxy is not the one the summary reports
            rows[rec["candidate"]] = [round(b, 6) for b in per]
        if set(rows) == set(truth):
            out[run_dir.name] = {"bytes": nbytes, "truth": truth, "proxy": rows}
    return out


def table(per_row: dict, draws: int) -> str:
    head = "| run | top-1 / order at " + " | ".join(f"{k} rows" for k in KS) + " |\n|---|" + "---|" * len(KS)
    lines = [head]
    shares = {name: [agreement(run, k, draws) for k in KS] for name, run in per_row.items()}
    for name, row in shares.items():
        lines.append(f"| {name} | " + " | ".join(f"{t:.0%} / {o:.0%}" for t, o in row) + " |")
    # the runs that are right with all 60 rows: how much of that survives fewer rows (worst and median run)
    for what, i in (("top-1", 0), ("order", 1)):
        right = [row for row in shares.values() if row[-1][i] == 1.0]
        cells = []
        for j in range(len(KS)):
            vals = sorted(row[j][i] for row in right)
            cells.append(f"{vals[0]:.0%} / {vals[len(vals) // 2]:.0%}")
        lines.append(
            f"| **{what} right at 60 rows ({len(right)} runs): worst / median** | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extract", action="store_true", help="rebuild the per-row record from runs/selection/")
    ap.add_argument("--draws", type=int, default=1000, help="random dev subsets per size (default 1000)")
    args = ap.parse_args()
    if args.extract:
        data = extract()
        PER_ROW.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        print(f"wrote {PER_ROW} ({len(data)} runs)")
    per_row = json.loads(PER_ROW.read_text())
    print(table(per_row, args.draws))


if __name__ == "__main__":
    main()
