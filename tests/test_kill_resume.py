"""Killing `damoc select` and resuming it: nothing lost, nothing run twice, no orphan left behind.

One run directory is interrupted four times: Ctrl-C in the data stage (exit 130 and how to resume), then
SIGKILL of the select parent in the data stage, in the middle of a candidate (its second unit) and while a
worker scores; each time the next `--resume` picks up. The final leaderboard must equal that of an
uninterrupted run of the same job, every unit must have finished exactly once, and after each kill no
process of the run may survive. The two candidates run side by side (``run.jobs: 2``), so a kill finds two
workers. The points are reached through tests/pausepoints/sitecustomize.py: the process that gets there
writes a marker and sleeps, and the test kills the parent.

Also: a resume refuses while a worker of the previous run is alive, and a run directory reached through a
symlink finds the lock of the original.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from damoc.select.records import Leaderboard, UnitRecord

PAUSE_DIR = Path(__file__).parent / "pausepoints"


def _task(path: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        lab = ["yes", "no"][i % 2]
        rows.append(
            {
                "id": f"k{i}",
                "question": f"Is marker {i} raised in cohort {i % 3}?",
                "context": f"Cohort {i % 3} of {40 + i} people showed marker {i} at week {i % 5}.",
                "answer": f"{lab}, marker {i} was.",
                "label": lab,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_job(tmp: Path, cands: list[str], run_dir: Path) -> Path:
    """A small select job: two candidates, proxy + zero-shot units each, no compression."""
    job = {
        "job": "select",
        "task": {"path": str(_task(tmp / "task.jsonl")), "dev_size": 6},
        "candidates": cands,
        "data": {"filter": "random", "budget": 8, "compress_rate": None},
        "model": {"layer_fraction": 0.0},
        "proxy": {"method": "lora", "max_steps": 2, "batch_size": 4, "max_length": 64},
        "eval": {"dev_rows": 4, "max_length": 64, "few_shot_k": 0},
        "run": {"run_dir": str(run_dir), "threads": 1, "progress_s": 0, "jobs": 2},
    }
    path = tmp / f"job_{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run_processes(marker: str) -> list[int]:
    """Pids of the live processes whose command line mentions ``marker`` (a run directory's path)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            out.append(int(d.name))
    return out


def wait_gone(marker: str, lock: dict | None = None, timeout_s: float = 15.0) -> list[int]:
    """The processes of the run still alive after ``timeout_s``: those whose command line names it, and the
    workers ``lock`` records (a dying process may have lost its command line before it is gone)."""
    from damoc.select.lock import live_workers

    def alive() -> list[int]:
        return sorted(set(run_processes(marker)) | set(live_workers(lock or {})))

    t0 = time.monotonic()
    while (left := alive()) and time.monotonic() - t0 < timeout_s:
        time.sleep(0.05)
    return left


def _default_sigint() -> None:
    """In the child before it starts: Ctrl-C back to its default. A shell without job control starts a
    background command with SIGINT ignored, and an ignored signal stays ignored across ``exec``: Python
    then installs no KeyboardInterrupt handler, and the SIGINT this test sends would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(
    job: Path,
    *extra: str,
    pause: str | None = None,
    marker: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """``damoc select JOB EXTRA...`` as its own process (environment ``env``, default this one's), with
    the pause points of tests/pausepoints on its PYTHONPATH (armed only when ``pause`` is given)."""
    import damoc

    base = dict(os.environ if env is None else env)
    paths = [str(PAUSE_DIR), str(Path(damoc.__file__).parents[1]), base.get("PYTHONPATH", "")]
    base["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    base.pop("DAMOC_PAUSE_AT", None)
    if pause:
        base.update(DAMOC_PAUSE_AT=pause, DAMOC_PAUSE_MARKER=str(marker))
    return subprocess.Popen(
        [sys.executable, "-m", "damoc", "select", str(job), *extra],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def wait_marker(proc: subprocess.Popen, marker: Path, timeout_s: float = 240.0) -> str:
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"select ended (exit {proc.returncode}) before the pause point:\n{err[-3000:]}"
            )
        assert time.monotonic() - t0 < timeout_s, "the pause point was never reached"
        time.sleep(0.05)
    text = marker.read_text()
    marker.unlink()
    return text


def workers_per_candidate(run: Path) -> dict[str, int]:
    """Live worker processes of each candidate of the run (a worker's command line names its job file)."""
    return {
        d.name: len(run_processes(str(d / "job.json")))
        for d in sorted((run / "candidates").glob("*"))
        if d.is_dir()
    }


def kill_parent_at(
    job: Path,
    run: Path,
    pause: str,
    marker: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    while_paused=None,
) -> dict:
    """Start (or resume) the job, SIGKILL its parent at ``pause``; what was seen just before the kill.

    ``while_paused`` (no arguments) runs at the pause point, before the kill; what it returns is kept
    under ``"while_paused"``."""
    proc = start(job, *extra, pause=pause, marker=marker, env=env)
    where = wait_marker(proc, marker)
    seen = {"where": where, "processes": run_processes(str(run)), "per_candidate": workers_per_candidate(run)}
    lock = run.parent / f".{run.name}.lock"
    seen["lock"] = json.loads(lock.read_text()) if lock.exists() else None
    if while_paused is not None:
        seen["while_paused"] = while_paused()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    seen["orphans"] = wait_gone(str(run), seen["lock"])
    return seen


def finished_lines(run: Path) -> list[tuple[str, str]]:
    """(candidate, method) of every unit a worker finished, from all worker logs (appended across runs)."""
    out = []
    for log in run.glob("candidates/*/worker.log"):
        for m in re.finditer(
            r"INFO damoc\.select\.worker: (.+) / (\w+): (ok|failed) score=", log.read_text()
        ):
            out.append((m.group(1), m.group(2)))
    return out


def board(run: Path) -> Leaderboard:
    return Leaderboard.model_validate_json((run / "leaderboard.json").read_text())


def scores(b: Leaderboard) -> dict[tuple[str, str], float | None]:
    return {(r.candidate, r.method): r.score for r in b.records}


def test_kills_at_three_points_then_resume_equal_an_uninterrupted_run(
    tmp_path, tiny_dirs, run_cli, monkeypatch
):
    import damoc.select.pipeline as pipeline

    cands = [str(tiny_dirs["llama"]), str(tiny_dirs["qwen2"])]
    llama, qwen = cands
    ref_run, run = tmp_path / "reference", tmp_path / "killed"
    marker = tmp_path / "paused"
    code, _, err = run_cli("select", write_job(tmp_path, cands, ref_run))
    assert code == 0, err[-3000:]
    job = write_job(tmp_path, cands, run)

    # Ctrl-C (a real SIGINT to this process) in the data stage: exit 130, the last line says how to go on
    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)

    monkeypatch.setattr(pipeline, "prepare_data", interrupted)
    old = signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # even where the suite runs with it ignored
    try:
        code, _, err = run_cli("select", job)
    finally:
        signal.signal(signal.SIGINT, old)
    monkeypatch.undo()
    assert code == 130 and "--resume" in err.strip().splitlines()[-1], err[-2000:]
    assert not (run.parent / f".{run.name}.lock").exists()

    # 1. SIGKILL in the data stage (no worker yet): the lock is left behind, with a dead owner
    seen = kill_parent_at(job, run, "data", marker, "--resume")
    assert seen["where"].split()[1] == "data" and seen["orphans"] == []
    assert (run.parent / f".{run.name}.lock").exists()

    # 2. SIGKILL in the middle of the first candidate (as its second unit starts); both workers die with it
    seen = kill_parent_at(job, run, "unit:llama:2", marker, "--resume")
    paused_pid = int(seen["where"].split()[0])
    assert paused_pid in [w["pid"] for w in seen["lock"]["workers"]]  # the lock names the live workers
    assert paused_pid in seen["processes"] and seen["orphans"] == []
    assert list(seen["per_candidate"].values()) == [1, 1]  # one worker per candidate, not two
    first = {p: UnitRecord.load(p) for p in run.glob("candidates/*/*.json") if p.name != "job.json"}
    assert any(r.candidate == llama and r.method == "proxy" and r.status == "ok" for r in first.values())

    # 3. SIGKILL while the first candidate's worker scores (the unit it was killed in before)
    seen = kill_parent_at(job, run, "score:llama:1", marker, "--resume")
    assert "score" in seen["where"] and seen["orphans"] == []
    assert max(seen["per_candidate"].values()) == 1  # the resumed run started no second worker of one

    # the last resume (in this process) finishes the run
    code, _, err = run_cli("select", job, "--resume")
    assert code == 0, err[-3000:]
    assert not wait_gone(str(run))

    final, reference = board(run), board(ref_run)
    assert scores(final) == scores(reference)  # the same numbers, bit for bit
    assert [(r.candidate, r.rank) for r in final.rows] == [(r.candidate, r.rank) for r in reference.rows]
    done = finished_lines(run)
    units = [(c, m) for c in (llama, qwen) for m in ("proxy", "zero_shot")]
    assert sorted(done) == sorted(units), done  # every unit finished exactly once over the five runs
    for path, rec in first.items():  # units finished before the second kill were not redone
        assert UnitRecord.load(path).finished_at == rec.finished_at


def test_resume_refuses_while_a_worker_of_the_previous_run_is_alive(tmp_path, monkeypatch):
    import socket

    import damoc.select.lock as lock_module
    from damoc.errors import DamocError
    from damoc.select.lock import lock_path, process_id, run_lock

    monkeypatch.setattr(lock_module, "WORKER_EXIT_GRACE_S", 1.0)

    run = tmp_path / "run"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = lock_path(run)
        lock.write_text(
            json.dumps(
                {"host": socket.gethostname(), "pid": int(dead.stdout), "workers": [process_id(worker.pid)]}
            )
        )
        t0 = time.monotonic()
        with pytest.raises(DamocError, match=f"worker pid {worker.pid} .* still running"), run_lock(run):
            pass
        assert time.monotonic() - t0 >= 1.0  # it gave the worker time to end first
    finally:
        worker.kill()
        worker.wait()
    with run_lock(run) as path:  # the worker is gone: the stale lock is taken over
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_a_reused_worker_pid_does_not_block(tmp_path):
    """A recorded worker pid now held by another process (another start time) is not the worker."""
    import socket

    from damoc.select.lock import lock_path, run_lock

    run = tmp_path / "run"
    lock_path(run).write_text(
        json.dumps(
            {
                "host": socket.gethostname(),
                "pid": 2**22 + 1,
                "workers": [{"pid": os.getpid(), "started": "1"}],
            }
        )
    )
    with run_lock(run):
        pass


def test_a_symlinked_run_dir_finds_the_lock_of_the_original(tmp_path, run_cli, tiny_dirs):
    from damoc.select.lock import lock_path, run_lock

    orig = tmp_path / "runs" / "orig"
    orig.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(orig, target_is_directory=True)
    assert lock_path(link) == lock_path(orig)
    job = write_job(tmp_path, [str(tiny_dirs["llama"])], orig)
    with run_lock(orig):
        code, _, err = run_cli("select", job, "-o", link, "--resume")
    assert code == 2 and "in use by another damoc select" in err
    assert not any(orig.iterdir())


def test_the_lock_is_never_empty(tmp_path):
    """Created with its content in one step: another process never reads an empty or partial lock."""
    from damoc.select.lock import lock_path, run_lock

    run = tmp_path / "run"
    with run_lock(run) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it
    path.write_text("")
    from damoc.errors import DamocError

    with pytest.raises(DamocError, match="cannot be read"), run_lock(run):
        pass
    assert lock_path(run).exists()


def test_a_dead_but_unreaped_worker_does_not_block(tmp_path):
    """A killed worker whose parent is gone may stay a zombie until something reaps it: it is not alive."""
    import socket

    from damoc.select.lock import lock_path, process_id, run_lock

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while (Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]) != "Z":
        time.sleep(0.02)
    try:
        record = {"host": socket.gethostname(), "pid": 2**22 + 1, "workers": [process_id(zombie.pid)]}
        lock_path(tmp_path / "run").write_text(json.dumps(record))
        with run_lock(tmp_path / "run"):
            pass
    finally:
        zombie.wait()


_CHILD = """
import os, sys, time
import damoc.select.orphans as o
if sys.argv[1] == "watchdog":
    o._set_pdeathsig = lambda sig: False  # as where prctl is not available
how = o.die_with_parent(every_s=0.1)
with open(sys.argv[2], "w") as fh:
    fh.write(how)
time.sleep(60)
"""

_PARENT = """
import os, subprocess, sys, time
env = {**os.environ, "DAMOC_PARENT_PID": str(os.getpid())}
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], env=env)
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_a_worker_ends_when_its_parent_is_killed(tmp_path, how):
    """Both ways a worker follows its parent: the kernel's parent-death signal, and the watchdog thread
    used where that signal cannot be asked for."""
    import damoc
    from damoc.select.lock import _alive

    said = tmp_path / "how"
    env = {**os.environ, "PYTHONPATH": str(Path(damoc.__file__).parents[1])}
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD, how, str(said)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        t0 = time.monotonic()
        while not said.exists() or not said.read_text():
            assert time.monotonic() - t0 < 60, "the child never started"
            time.sleep(0.05)
        assert said.read_text() == how and _alive(child)
    finally:
        parent.kill()
        parent.wait()
    t0 = time.monotonic()
    while _alive(child) and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert not _alive(child), f"the child ({how}) outlived its killed parent"
