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
`--resume` to the end. While the data-stage kill's run is paused (holding the run lock), the same job is
started into a symlink to its run directory: it must be refused (exit 2, one line) and change nothing. A
kill is survived when no process of the run is alive 15 s after it, no candidate had two live workers,
and the next run goes on. Nothing is lost when the final leaderboard equals that of an uninterrupted run
of the same job, every unit finished exactly once and units finished before a kill kept their records.
The pause points are tests/pausepoints/sitecustomize.py, put on the PYTHONPATH of the `damoc select`
processes this script starts (and of their workers, which inherit it), never on its own; each child starts
with Ctrl-C at its default even when this script runs in the background with SIGINT ignored.

Record: benchmarks/records/robustness/robustness.json. Cases already in it are not run again (keyed by
command, class and arguments); the kill sequence runs when the record has none, or one that stopped early,
or with --redo-kills (about 3 minutes).
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
# Seconds one step of the kill sequence may take to reach its pause point or to end (tiny models: ~20 s).
KILL_STEP_TIMEOUT_S = 240.0


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


class StepFailed(Exception):
    """A step of the kill sequence did not go as a user's run would: the sequence stops there."""


def _last_line(text: str, work: Path) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].replace(str(work), "WORK") if lines else ""


def _finish(proc: subprocess.Popen, timeout_s: float, what: str) -> tuple[int, str]:
    """Wait for ``proc`` (killed after ``timeout_s``); its exit code and stderr."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise StepFailed(f"{what}: still running after {timeout_s:.0f} s") from exc
    return proc.returncode, err


def _paused(k, proc, marker: Path, what: str) -> str:
    try:
        return k.wait_marker(proc, marker, timeout_s=KILL_STEP_TIMEOUT_S)
    except AssertionError as exc:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        raise StepFailed(f"{what}: {str(exc).splitlines()[0]}") from exc


def _kill(k, job, run, point, marker, env, while_paused=None) -> dict:
    try:
        return k.kill_parent_at(job, run, point, marker, "--resume", env=env, while_paused=while_paused)
    except AssertionError as exc:
        raise StepFailed(f"SIGKILL at {point}: {str(exc).splitlines()[0]}") from exc


def _symlink_refused(k, job: Path, run: Path, work: Path, env: dict[str, str]) -> dict:
    """While the select of ``run`` is paused (holding its lock): the same job into a symlink to ``run``."""
    link = work / "link-to-killed"
    link.unlink(missing_ok=True)
    link.symlink_to(run, target_is_directory=True)
    before = snapshot(str(run))
    proc = k.start(job, "-o", str(link), "--resume", env=env)
    code, err = _finish(proc, KILL_STEP_TIMEOUT_S, "select into a symlink of a locked run")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    out = {
        "exit": code,
        "stderr_lines": len(lines),
        "first_line": (lines[0] if lines else "").replace(str(work), "WORK"),
        "run_dir_changed": snapshot(str(run)) != before,
    }
    out["refused"] = (
        code == 2
        and len(lines) == 1
        and "in use by another damoc select" in lines[0]
        and not out["run_dir_changed"]
    )
    link.unlink()
    return out


def run_kills(work: Path, model_dirs: dict[str, Path], env: dict[str, str]) -> dict:
    """The kill sequence (module docstring); a step that fails stops it and is recorded as ``stopped``."""
    import test_kill_resume as k

    cands = [str(model_dirs["llama"]), str(model_dirs["qwen2"])]
    ref_run, run = work / "reference", work / "killed"
    marker = work / "paused"
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"kills": [], "stopped": None}
    t0 = time.perf_counter()
    try:
        code, err = _finish(k.start(k.write_job(work, cands, ref_run), env=env), 1800, "uninterrupted run")
        if code != 0:
            raise StepFailed(f"uninterrupted run: exit {code}: {_last_line(err, work)}")
        job = k.write_job(work, cands, run)

        proc = k.start(job, pause="data", marker=marker, env=env)
        _paused(k, proc, marker, "Ctrl-C in the data stage")
        proc.send_signal(signal.SIGINT)
        code, err = _finish(proc, KILL_STEP_TIMEOUT_S, "Ctrl-C in the data stage")
        last = _last_line(err, work)
        lock = run.parent / f".{run.name}.lock"
        out["sigint"] = {
            "exit": code,
            "last_line": last,
            "lock_left": lock.exists(),
            "orphans_after": len(k.wait_gone(str(run))),
        }
        out["sigint"]["ok"] = (
            code == 130
            and "--resume" in last
            and not out["sigint"]["lock_left"]
            and not out["sigint"]["orphans_after"]
        )

        first: dict[str, str] = {}
        for name, point in (
            ("data stage", "data"),
            ("mid-candidate", "unit:llama:2"),
            ("scoring", "score:llama:1"),
        ):
            during = (lambda: _symlink_refused(k, job, run, work, env)) if point == "data" else None
            seen = _kill(k, job, run, point, marker, env, during)
            workers = [w["pid"] for w in (seen["lock"] or {}).get("workers", []) or []]
            kill = {
                "point": name,
                "paused_in": seen["where"]
                .split(maxsplit=1)[1]
                .strip()
                .replace(str(work), "WORK")
                .replace(str(work.parent), "TMP"),
                "workers_alive_at_kill": len([p for p in seen["processes"] if p in workers]),
                "workers_in_lock": len(workers),
                "most_workers_of_one_candidate": max(seen["per_candidate"].values(), default=0),
                "orphans_after_15s": len(seen["orphans"]),
            }
            kill["survived"] = not seen["orphans"] and kill["most_workers_of_one_candidate"] <= 1
            if "while_paused" in seen:
                out["symlink"] = seen["while_paused"]
            out["kills"].append(kill)
            if name == "mid-candidate":
                first = {
                    str(p): k.UnitRecord.load(p).finished_at
                    for p in run.glob("candidates/*/*.json")
                    if p.name != "job.json"
                }
        code, err = _finish(k.start(job, "--resume", env=env), 1800, "the last --resume")
        if code != 0:
            raise StepFailed(f"the last --resume: exit {code}: {_last_line(err, work)}")
        final, reference = k.board(run), k.board(ref_run)
        done = k.finished_lines(run)
        units = [(c, m) for c in cands for m in ("proxy", "zero_shot")]
        out["final"] = {
            "resumed_exit": code,
            "leaderboard_equal": k.scores(final) == k.scores(reference)
            and [(r.candidate, r.rank) for r in final.rows]
            == [(r.candidate, r.rank) for r in reference.rows],
            "units": len(units),
            "unit_finishes": len(done),
            "units_finished_once": sorted(done) == sorted(units),
            "records_kept": bool(first)
            and all(k.UnitRecord.load(p).finished_at == t for p, t in first.items()),
            "records_kept_checked": len(first),
            "orphans_at_end": len(k.wait_gone(str(run))),
        }
    except StepFailed as exc:
        out["stopped"] = str(exc).replace(str(work), "WORK")
        print(f"kill sequence stopped: {out['stopped']}", file=sys.stderr, flush=True)
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
    ap.add_argument(
        "--redo-kills",
        action="store_true",
        help="run the kill sequence again although the record has a complete one (it is rerun anyway when "
        "the recorded one stopped early)",
    )
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
        previous = record.get("kills")
        if not args.no_kills and (args.redo_kills or not previous or previous.get("stopped", "n/a")):
            kills = run_kills(work / "kills", models, env)
            earlier = (previous or {}).pop("earlier_attempts", []) + ([previous] if previous else [])
            kills["earlier_attempts"] = [attempt_summary(e) for e in earlier]
            kills["date"] = dt.date.today().isoformat()
            kills["load_average_at_start"] = os.getloadavg()[0]
            record["kills"] = kills
            save(record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_page(record)


def attempt_summary(kills: dict) -> dict:
    """What an earlier run of the kill sequence showed (kept in the record when it is run again)."""
    if "survived" in kills or "final" not in kills:  # already a summary, or one that stopped early
        return {k: kills.get(k) for k in ("date", "stopped", "survived", "tried", "nothing_lost")}
    f, sigint = kills["final"], kills.get("sigint") or {}
    return {
        "date": kills.get("date"),
        "stopped": kills.get("stopped"),
        "tried": len(kills["kills"]) + (1 if sigint else 0),
        "survived": sum(k["survived"] for k in kills["kills"]) + (1 if sigint.get("ok") else 0),
        "nothing_lost": bool(
            f["leaderboard_equal"]
            and f["units_finished_once"]
            and f["records_kept"]
            and kills.get("symlink", {}).get("refused")
        ),
    }


def _yes(flag: bool) -> int:
    return 1 if flag else 0


def summary_rows(record: dict) -> list[tuple[str, int, int]]:
    """(check, tried, passed) for the page's one table."""
    cases = record["cases"]
    rows = [
        (
            "bad input rejected cleanly (exit 2, one line naming the cause, no traceback, nothing written)",
            len(cases),
            sum(c["clean"] for c in cases),
        )
    ]
    kills = record.get("kills")
    if not kills:
        return rows
    sigint = kills.get("sigint")
    done = kills["kills"]
    tried = (1 if sigint else 0) + len(done)
    survived = (_yes(sigint["ok"]) if sigint else 0) + sum(k["survived"] for k in done)
    rows.append(
        (
            "`damoc select` interrupted (Ctrl-C, SIGKILL of the parent) and survived: no process of the run "
            "left, never two workers of one candidate, the next `--resume` goes on",
            tried,
            survived,
        )
    )
    if sigint:
        rows.append(
            ("Ctrl-C: exit 130, the last line says how to resume, the lock released", 1, _yes(sigint["ok"]))
        )
    if "symlink" in kills:
        rows.append(
            (
                "a run directory reached through a symlink refused while the original is locked",
                1,
                _yes(kills["symlink"]["refused"]),
            )
        )
    f = kills.get("final")
    if f:
        rows += [
            (
                "nothing lost: final leaderboard equal to an uninterrupted run's (scores, ranks)",
                1,
                _yes(f["leaderboard_equal"]),
            ),
            (
                "nothing run twice: units finished exactly once over all the runs",
                f["units"],
                f["units"] if f["units_finished_once"] else 0,
            ),
            (
                "records of units finished before a kill kept as they were",
                f["records_kept_checked"],
                f["records_kept_checked"] if f["records_kept"] else 0,
            ),
        ]
    return rows


def write_page(record: dict) -> None:
    PAGE.write_text(render_page(record), encoding="utf-8")
    print(f"wrote {PAGE}")


def render_page(record: dict | None = None) -> str:
    """The results page from the record alone (by default the committed one; no command runs)."""
    record = record if record is not None else json.loads(RECORD.read_text())
    cases = record["cases"]
    commands = sorted({c["command"] for c in cases})
    clean = sum(c["clean"] for c in cases)
    kills = record.get("kills")
    m = record["machine"]
    answer = (
        f"{len(cases)} bad inputs across {len(commands)} commands, each run as its own process as a user "
        f"starts it: {clean} clean rejections (exit 2, one line, no traceback, nothing written)."
    )
    if kills and not kills.get("stopped") and kills.get("final"):
        rows = summary_rows(record)
        lost = [r for r in rows[2:] if r[1] != r[2]]
        answer += (
            f" `damoc select` on two tiny models, interrupted {rows[1][1]} times (Ctrl-C in the data stage; SIGKILL"
            " of the parent in the data stage, mid-candidate and while a worker scores) and resumed each time:"
            f" {rows[1][2]} of {rows[1][1]} survived with no orphan process and no second worker of a candidate;"
            + (
                " a symlinked run directory was refused while the original was locked; the final leaderboard"
                " equals an uninterrupted run's and every unit finished exactly once."
                if not lost
                else f" NOT everything held: {'; '.join(r[0] for r in lost)}."
            )
        )
    elif kills and kills.get("stopped"):
        answer += f" The kill sequence stopped early: {kills['stopped']}."
    else:
        answer += " The kill sequence has not run."
    lines = [
        "# Robustness: bad inputs rejected cleanly, killed runs resumed with nothing lost",
        "",
        answer,
        "",
        "```",
        "nice -n 5 python benchmarks/robustness.py          # runs what the record lacks (cases are kept), then this page",
        "python benchmarks/robustness.py --redo-kills       # the kill sequence again (about 3 minutes)",
        "python benchmarks/robustness.py --page             # this page from the record alone",
        "```",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, transformers {m['transformers']}; "
        f"bad inputs run {m['date']} as uid {m['uid']} (the read-only cases as `nobody` through `setpriv`)"
        + (
            f", kill sequence run {kills['date']} ({kills['wall_s']:.0f} s, load average {kills['load_average_at_start']:.1f} at its start)"
            if kills and "date" in kills
            else ""
        )
        + ". Record: `benchmarks/records/robustness/robustness.json`.",
        "",
        "| check | tried | passed |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {tried} | {passed} |" for name, tried, passed in summary_rows(record)]
    lines += [
        "",
        "Reading: a clean rejection is exit code 2, one line on stderr that starts with `error: ` and names the",
        "cause the case tests, no traceback, and nothing under the workspace created or changed (paths, sizes,",
        "modification times). The same cases run in the default test suite in-process",
        "(tests/test_bad_inputs.py); here each is a separate `python -m damoc` process, with progress bars and",
        "logging as a user sees them. The kill sequence runs one job (two tiny random models side by side,",
        "`run.jobs: 2`, a LoRA proxy and a zero-shot unit each) into one run directory: Ctrl-C in the data",
        "stage, then SIGKILL of the `damoc select` parent in the data stage (while it is paused there, the same",
        "job is started into a symlink to its run directory), as the first candidate's worker loads the model",
        "for its second unit, and as that worker scores after the next `--resume`; each kill is followed by",
        "`--resume`, and a last `--resume` runs to the end. A kill is survived when no process of the run (its",
        "command line names the run directory, or the run lock lists it as a worker) is alive 15 s after it,",
        "no candidate had two live workers at the kill, and the next `--resume` reaches its own pause point or",
        "the end. Workers of a killed parent end through the kernel's parent-death signal",
        "(`prctl(PR_SET_PDEATHSIG)`); the run lock lists worker pids and a resume waits for them, then refuses",
        "while one is alive. Units finished exactly once is counted from the workers' logs (a unit logs",
        "`ok`/`failed` once when it ends; the logs are appended across runs); the leaderboard is compared score",
        "for score and rank for rank with a run of the same job that nobody interrupted.",
        "",
        "Limits: tiny random models (the failure paths do not depend on size); one Linux machine and file",
        "system (elsewhere the worker watches its parent from a thread instead of the kernel's signal). The",
        "kill points are reached by pausing the process there: the script puts tests/pausepoints/ (a",
        "`sitecustomize` that wraps `prepare_data`, `load_model` and `score_examples` when `DAMOC_PAUSE_AT` is",
        "set) on the PYTHONPATH of the processes it starts, nothing in damoc itself. So each kill lands at a",
        "function boundary while the process sleeps, not in the middle of a write (records are written to a",
        "temporary file and renamed, which this does not exercise), and kills inside the compression, rewriting",
        "and layer-removal stages are not tried here. The local backend only (the Ray backend ties a worker to",
        "its task instead).",
    ]
    lines += ["", "## Details", "", "| bad-input class | cases | clean rejections |", "|---|---:|---:|"]
    for cls in CLASSES:
        mine = [c for c in cases if c["class"] == cls]
        lines.append(f"| {cls} | {len(mine)} | {sum(c['clean'] for c in mine)} |")
    lines.append(f"| **all ({len(commands)} commands)** | **{len(cases)}** | **{clean}** |")
    bad = [c for c in cases if not c["clean"]]
    if bad:
        lines += ["", "Cases not rejected cleanly:", ""]
        lines += [
            f"- {c['command']} / {c['class']}: exit {c['exit']}, {c['stderr_lines']} stderr lines: "
            f"`{c['first_line'][:160]}`"
            for c in bad
        ]
    if kills:
        lines += [
            "",
            "| interruption of `damoc select` | paused in | workers alive at the kill | most workers of one candidate | processes left 15 s later | survived |",
            "|---|---|---:|---:|---:|---|",
        ]
        if s := kills.get("sigint"):
            lines.append(
                f"| Ctrl-C, data stage | data | 0 | 0 | {s['orphans_after']} | {'yes' if s['ok'] else 'NO'}: "
                f'exit {s["exit"]}, last line "{s["last_line"]}" |'
            )
        for kill in kills["kills"]:
            lines.append(
                f"| SIGKILL, {kill['point']} | {kill['paused_in']} | {kill['workers_alive_at_kill']} | "
                f"{kill['most_workers_of_one_candidate']} | {kill['orphans_after_15s']} | "
                f"{'yes' if kill['survived'] else 'NO'} |"
            )
        if sym := kills.get("symlink"):
            lines += [
                "",
                f"Symlinked run directory, while the original's select was paused in the data stage: exit "
                f"{sym['exit']}, {sym['stderr_lines']} stderr line(s): `{sym['first_line']}`; the original run "
                f"directory {'changed' if sym['run_dir_changed'] else 'unchanged'}.",
            ]
        if kills.get("stopped"):
            lines += ["", f"The sequence stopped early: {kills['stopped']}"]
        for e in kills.get("earlier_attempts", []):
            if e.get("stopped") or e.get("survived") is None:
                lines += ["", f"An earlier run of the sequence ({e['date']}) stopped early: {e['stopped']}"]
            else:
                lines += [
                    "",
                    f"An earlier run of the sequence ({e['date']}): {e['survived']} of {e['tried']} "
                    f"interruptions survived; symlink refused, leaderboard equal, units once, records kept: "
                    f"{'yes' if e['nothing_lost'] else 'NO'}.",
                ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
