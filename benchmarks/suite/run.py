"""The selection suite: ground truths, the methods compared against them, and the analysis.

    python benchmarks/suite/run.py truth --tasks wikidata social_iqa          # full sweeps (cached, resumable)
    python benchmarks/suite/run.py truth --half development --models smollm2-135m
    python benchmarks/suite/run.py method EXPERIMENT --half development      # a setting's sweep per task
    python benchmarks/suite/run.py status                                     # what is done

Tasks, sources and splits: ``tasks.py``; the two halves: ``split.yaml``; the settings every run starts from
(and the truth recipe): ``defaults.yaml``; the settings compared: ``experiments/*.yaml``. Ground-truth
records are cached under ``benchmarks/records/suite/groundtruth/`` by the key of (training rows, dev rows,
candidate, fine-tune and scoring settings) and committed, so no truth is computed twice; a method's records
go to ``benchmarks/records/suite/methods/<experiment>/<task>.json``. A method runs on the held-out half only
once ``frozen.yaml`` names it (the setting chosen on the development half, or one of its peers).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from suite.tasks import TASKS, prepare  # noqa: E402

RECORDS = ROOT / "benchmarks" / "records" / "suite"
TRUTH_CACHE = RECORDS / "groundtruth"
RUNS = ROOT / "runs" / "suite"


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def halves() -> dict[str, list[str]]:
    return load_yaml(HERE / "split.yaml")


def experiment(name: str) -> dict:
    path = HERE / "experiments" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (HERE / "experiments").glob("*.yaml"))
        raise SystemExit(f"no experiment '{name}' (one of: {', '.join(names)})")
    return load_yaml(path)


def task_config(name: str, overrides: dict, run_dir: Path, truth: bool):
    """The ``damoc select`` config of one suite task: defaults, then the task's own settings, then overrides."""
    from damoc.select.config import SelectConfig

    t = TASKS[name]
    train, dev = prepare(name)
    length = t.eval.get("max_length", 256)
    task_eval = {"metric": t.metric, **t.eval}
    if t.metric in ("exact_match", "f1"):
        task_eval["alias_field"] = "aliases"
    data = _merge(
        load_yaml(HERE / "defaults.yaml"),
        {
            "job": "select",
            "task": {"path": str(train), "dev_path": str(dev), "seed": 0},
            "eval": task_eval,
            "proxy": {"max_length": length},
            "validate": {"enabled": truth, "cache_dir": str(TRUTH_CACHE), "finetune": {"max_length": length}},
            "run": {"run_dir": str(run_dir)},
        },
    )
    overrides = {k: v for k, v in overrides.items() if k != "methods"}
    return SelectConfig.model_validate(_merge(data, overrides))


def _tasks(args) -> list[str]:
    names = list(args.tasks or [])
    for half in args.half or []:
        names += [t for t in halves()[half] if t not in names]
    if not names:
        raise SystemExit("name --tasks or --half")
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s): {', '.join(unknown)} (one of: {', '.join(TASKS)})")
    return names


def run_truth(args) -> None:
    from damoc.select.pipeline import run_select

    for name in _tasks(args):
        for model in args.models or load_yaml(HERE / "defaults.yaml")["candidates"]:
            run_dir = RUNS / name / f"truth-{model}"
            cfg = task_config(name, {"candidates": [model]}, run_dir, truth=True)
            board = run_select(cfg, resume=True, methods=["full"], retry_failed=True)
            for rec in board.records:
                if rec.method == "full":
                    extra = ", ".join(f"{k} {v.value:.4f}" for k, v in rec.extra.items())
                    print(
                        f"truth {name} {model}: {rec.status} {rec.metric} {rec.score} ({extra}); "
                        f"{rec.wall_s:.0f} s{' (cached)' if rec.cached else ''}",
                        flush=True,
                    )


FROZEN = HERE / "frozen.yaml"


def check_held_out(experiment_name: str, names: list[str]) -> None:
    """The held-out half runs only what ``frozen.yaml`` (committed before any method ran there) names: the
    setting chosen on the development half and the peers it is compared with."""
    held = [t for t in names if t in halves()["held_out"]]
    if not held:
        return
    frozen = load_yaml(FROZEN) if FROZEN.is_file() else {}
    allowed = [frozen.get("chosen"), *frozen.get("peers", [])]
    if experiment_name not in allowed:
        raise SystemExit(
            f"'{experiment_name}' may not run on held-out task(s) {', '.join(held)}: the held-out half runs only "
            f"the setting frozen in {FROZEN.name} and its peers"
            + (f" ({', '.join(a for a in allowed if a)})" if frozen else " (no setting is frozen yet)")
        )


def run_method(args) -> None:
    from damoc.select.pipeline import run_select

    over = experiment(args.experiment)
    methods = over.get("methods", ["proxy"])
    out = RECORDS / "methods" / args.experiment
    names = _tasks(args)
    check_held_out(args.experiment, names)
    for name in names:
        run_dir = RUNS / name / args.experiment
        cfg = task_config(name, over, run_dir, truth=False)
        board = run_select(cfg, resume=True, methods=methods, retry_failed=True)
        out.mkdir(parents=True, exist_ok=True)
        summary = {
            "experiment": args.experiment,
            "task": name,
            "settings": cfg.dump(),
            "data": board.data.model_dump(mode="json"),
            "records": [r.model_dump(mode="json") for r in board.records if r.method in methods],
        }
        (out / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        print(
            f"{args.experiment} {name}: "
            + ", ".join(f"{r.candidate}/{r.method} {r.score}" for r in board.records)
        )


def status(args) -> None:
    from damoc.select.records import UnitRecord

    done: dict[tuple[str, str], UnitRecord] = {}
    for p in TRUTH_CACHE.glob("*.json"):
        rec = UnitRecord.model_validate_json(p.read_text())
        done[(p.stem, rec.candidate)] = rec
    print(f"{len(done)} ground-truth records in {TRUTH_CACHE}")
    for half, names in halves().items():
        for name in names:
            rows = []
            for model in load_yaml(HERE / "defaults.yaml")["candidates"]:
                run = RUNS / name / f"truth-{model}"
                recs = sorted(run.glob("candidates/*/full*.json"))
                state = "-"
                if recs:
                    r = UnitRecord.model_validate_json(recs[0].read_text())
                    state = f"{r.score:.3f}" if r.status == "ok" else "failed"
                rows.append(f"{model}={state}")
            print(f"{half:12s} {name:11s} " + " ".join(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("truth", "method"):
        p = sub.add_parser(cmd)
        if cmd == "method":
            p.add_argument("experiment", help="an experiment file name in experiments/ (without .yaml)")
        p.add_argument("--tasks", nargs="+")
        p.add_argument("--half", nargs="+", choices=["development", "held_out"])
        if cmd == "truth":
            p.add_argument("--models", nargs="+")
    sub.add_parser("status")
    args = ap.parse_args()
    from damoc.logging_utils import setup_logging

    setup_logging()
    logging.getLogger("damoc").info("suite: %s", args.cmd)
    {"truth": run_truth, "method": run_method, "status": status}[args.cmd](args)


if __name__ == "__main__":
    main()
