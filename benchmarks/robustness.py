"""Robustness: every command through the bad-input classes, and `damoc select` killed and resumed.

    python benchmarks/robustness.py            # run what the record lacks, then write the results page
    python benchmarks/robustness.py --page     # only rewrite benchmarks/results/robustness.md from the record

Bad inputs: each case of tests/bad_inputs_cases.py runs as its own `python -m damoc` process, started as a
user starts it (no test harness: progress bars and log lines reach stderr as they would). The read-only
output cases run as a user who cannot write the directory: this process's user when it is not root, else
`nobody` (through `setpriv`), against a real mode-555 directory. A case is a clean rejection when the exit
code is 2, stderr is one line that starts with "error: " and names the cause the case tests, there is no
traceback, and nothing under the workspace changed (paths, sizes, modification times).

Kills: the sequence of tests/test_kill_resume.py on two tiny random models run side by side: Ctrl-C
(SIGINT) in the data stage, then SIGKILL of the select parent in the data stage, as the first candidate
starts its second unit, and while that candidate's worker scores, each followed by `--resume`; then a last
`--resume` to the end. A kill is survived when no process of the run is alive 15 s after it and the run
resumes. Nothing is lost when the final leaderboard equals that of an uninterrupted run of the same job,
every unit finished exactly once and units finished before a kill kept their records.

Record: benchmarks/records/robustness/robustness.json (cases already in it are not run again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from bad_inputs_cases import CASES, CLASSES, build_workspace, expand, snapshot  # noqa: E402

RECORD = HERE / "records" / "robustness" / "robustness.json"
PAGE = HERE / "results" / "robustness.md"


def _env(home: Path) -> dict[str, str]:
    import damoc

    src = str(Path(damoc.__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if k not in ("DAMOC_NO_PROGRESS", "DAMOC_PAUSE_AT")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p))
    env.update(HOME=str(home), DAMOC_CACHE=str(home / "cache"))
    return env


def _open_up(root: Path) -> None:
    """Let another user read the workspace (the read-only cases run as nobody when this runs as root)."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)


def run_case(case, names: dict[str, str], env: dict[str, str], ro: Path) -> dict:
    command, cls, args, phrase = case
    argv = [sys.executable, "-m", "damoc", *expand(args, names)]
    user = "self"
    if cls == "read-only output":
        os.chmod(ro, 0o555)
        if os.geteuid() == 0:
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
            user = "nobody"
    before = snapshot(names["root"])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    wrote = snapshot(names["root"]) != before
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    traceback = "Traceback" in proc.stderr + proc.stdout
    named = len(lines) == 1 and first.startswith("error: ") and phrase.lower() in first.lower()
    clean = proc.returncode == 2 and named and not traceback and not wrote
    root = names["root"]
    return {
        "command": command,
        "class": cls,
        "args": [a.replace(root, "WS") for a in expand(args, names)],
        "user": user,
        "exit": proc.returncode,
        "stderr_lines": len(lines),
        "first_line": first.replace(root, "WS"),
        "phrase": phrase,
        "traceback": traceback,
        "wrote": wrote,
        "clean": clean,
        "wall_s": round(wall, 2),
    }


def run_kills(work: Path, model_dirs: dict[str, Path], env: dict[str, str]) -> dict:
    import test_kill_resume as k

    cands = [str(model_dirs["llama"]), str(model_dirs["qwen2"])]
    ref_run, run = work / "reference", work / "killed"
    marker = work / "paused"
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"kills": []}
    t0 = time.perf_counter()
    ref = k.start(k.write_job(work, cands, ref_run))
    _, err = ref.communicate(timeout=1800)
    assert ref.returncode == 0, err[-3000:]
    job = k.write_job(work, cands, run)

    proc = k.start(job, pause="data", marker=marker)
    k.wait_marker(proc, marker)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    out["sigint"] = {"exit": proc.returncode, "last_line": last.replace(str(work), "WORK")}
    out["sigint"]["ok"] = proc.returncode == 130 and "--resume" in last and not k.wait_gone(str(run))

    first = {}
    for name, point in (
        ("data stage", "data"),
        ("mid-candidate", "unit:llama:2"),
        ("scoring", "score:llama:1"),
    ):
        seen = k.kill_parent_at(job, run, point, marker, "--resume")
        workers = [w["pid"] for w in (seen["lock"] or {}).get("workers", []) or []]
        out["kills"].append(
            {
                "point": name,
                "paused_in": seen["where"].split(maxsplit=1)[1].strip().replace(str(work), "WORK"),
                "workers_alive_at_kill": len([p for p in seen["processes"] if p in workers]),
                "workers_in_lock": len(workers),
                "orphans_after_15s": len(seen["orphans"]),
                "survived": not seen["orphans"],
            }
        )
        if name == "mid-candidate":
            first = {
                str(p): k.UnitRecord.load(p).finished_at
                for p in run.glob("candidates/*/*.json")
                if p.name != "job.json"
            }
    proc = k.start(job, "--resume")
    _, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-3000:]
    final, reference = k.board(run), k.board(ref_run)
    done = k.finished_lines(run)
    units = [(c, m) for c in cands for m in ("proxy", "zero_shot")]
    out["final"] = {
        "resumed_exit": proc.returncode,
        "leaderboard_equal": k.scores(final) == k.scores(reference)
        and [(r.candidate, r.rank) for r in final.rows] == [(r.candidate, r.rank) for r in reference.rows],
        "units": len(units),
        "units_finished_once": sorted(done) == sorted(units),
        "records_kept": all(k.UnitRecord.load(p).finished_at == t for p, t in first.items()),
        "orphans_at_end": len(k.wait_gone(str(run))),
    }
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def machine() -> dict:
    import torch
    import transformers

    return {
        "date": dt.date.today().isoformat(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "uid": os.geteuid(),
        "load_average_at_start": os.getloadavg()[0],
    }


def save(record: dict) -> None:
    from damoc.io.files import write_json_atomic

    write_json_atomic(RECORD, record)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", action="store_true", help="only rewrite the results page from the record")
    ap.add_argument("--no-kills", action="store_true", help="skip the kill sequence")
    args = ap.parse_args()
    if args.page:
        write_page(json.loads(RECORD.read_text()))
        return
    from damoc.testing import save_tiny_model

    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"machine": machine(), "cases": []}
    done = {(c["command"], c["class"], tuple(c["args"])) for c in record["cases"]}
    work = Path(tempfile.mkdtemp(prefix="damoc-robustness-"))
    try:
        os.chmod(work, 0o755)
        models = {a: save_tiny_model(work / "tiny" / a, a, n_layers=4, seed=1) for a in ("llama", "qwen2")}
        names = build_workspace(work / "ws", models["llama"])
        (work / "home").mkdir()
        _open_up(work)
        env = _env(work / "home")
        for i, case in enumerate(CASES, 1):
            key = (case[0], case[1], tuple(a.replace(names["root"], "WS") for a in expand(case[2], names)))
            if key in done:
                continue
            res = run_case(case, names, env, Path(names["ro"]))
            record["cases"].append(res)
            save(record)
            print(
                f"[{i}/{len(CASES)}] {'clean' if res['clean'] else 'NOT CLEAN'} {case[0]} / {case[1]}: "
                f"exit {res['exit']}, {res['first_line'][:120]}",
                flush=True,
            )
        if not args.no_kills and "kills" not in record:
            record["kills"] = run_kills(work / "kills", models, env)
            save(record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_page(record)


def write_page(record: dict) -> None:
    cases = record["cases"]
    lines = [
        "# Robustness: bad inputs and killed runs",
        "",
        "What a hostile-but-honest user finds in ten minutes: every command given missing, empty and malformed",
        "inputs, outputs it cannot or must not write, broken models, out-of-range numbers, field mappings that",
        "name no column and unknown keys; and `damoc select` killed while it works.",
        "",
        "```",
        "python benchmarks/robustness.py",
        "```",
        "",
        f"Machine: {record['machine']['platform']}, {record['machine']['cpus']} CPUs, torch "
        f"{record['machine']['torch']}, transformers {record['machine']['transformers']}, "
        f"{record['machine']['date']}; uid {record['machine']['uid']} (the read-only cases ran as `nobody`"
        " through `setpriv`). Record: `benchmarks/records/robustness/robustness.json`.",
        "",
        "| bad-input class | cases | clean rejections |",
        "|---|---:|---:|",
    ]
    for cls in CLASSES:
        mine = [c for c in cases if c["class"] == cls]
        lines.append(f"| {cls} | {len(mine)} | {sum(c['clean'] for c in mine)} |")
    clean = sum(c["clean"] for c in cases)
    commands = sorted({c["command"] for c in cases})
    lines.append(f"| **all ({len(commands)} commands)** | **{len(cases)}** | **{clean}** |")
    kills = record.get("kills")
    if kills:
        lines += [
            "",
            "| interruption of `damoc select` | workers alive at the kill | orphans 15 s later | resumed |",
            "|---|---:|---:|---|",
            f"| Ctrl-C in the data stage | 0 | 0 | exit {kills['sigint']['exit']}, last line: "
            f'"{kills["sigint"]["last_line"][:90]}..." |',
        ]
        for kill in kills["kills"]:
            lines.append(
                f"| SIGKILL, {kill['point']} | {kill['workers_alive_at_kill']} | {kill['orphans_after_15s']} | "
                f"{'yes' if kill['survived'] else 'NO'} |"
            )
        f = kills["final"]
        survived = sum(k["survived"] for k in kills["kills"])
        lines += [
            "",
            f"Kills survived: **{survived} of {len(kills['kills'])}** (and the Ctrl-C). After the last `--resume`: "
            f"leaderboard equal to an uninterrupted run's: **{'yes' if f['leaderboard_equal'] else 'NO'}**; "
            f"each of the {f['units']} units finished exactly once: **{'yes' if f['units_finished_once'] else 'NO'}**; "
            f"units finished before a kill kept their records: **{'yes' if f['records_kept'] else 'NO'}**.",
        ]
    lines += [
        "",
        "Reading: a clean rejection is exit code 2, one line on stderr that starts with `error: ` and names the",
        "cause the case tests, no traceback, and nothing under the workspace created or changed. The same cases",
        "run in the default test suite in-process (tests/test_bad_inputs.py); here each is a separate process",
        "as a user starts it, with progress bars and logging as a user sees them. A worker of a killed parent",
        "ends through the kernel's parent-death signal (`prctl(PR_SET_PDEATHSIG)`); the run lock lists worker",
        "pids, and a resume refuses while one is alive.",
        "",
        "Limits: tiny random models (the failure paths do not depend on size); one machine and file system; the",
        "kill points are reached by pausing the process there (tests/pausepoints/sitecustomize.py), so kills",
        "inside other stages (compression, rewriting, layer removal) rely on the same mechanism untested here.",
    ]
    bad = [c for c in cases if not c["clean"]]
    if bad:
        lines += ["", "Cases not rejected cleanly:", ""]
        lines += [
            f"- {c['command']} / {c['class']}: exit {c['exit']}, {c['stderr_lines']} stderr lines: "
            f"`{c['first_line'][:160]}`"
            for c in bad
        ]
    PAGE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
