"""What every backend does: run each candidate's job as ``python -m damoc.select.worker JOB.json``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

from damoc.registry import Registry
from damoc.select.records import UnitRecord
from damoc.select.worker import CandidateJob, UnitSpec, failed_record

OnDone = Callable[[UnitSpec, UnitRecord], None]


class Backend(Protocol):
    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None: ...


BACKENDS: Registry[Callable[..., Backend]] = Registry("backend")


def worker_env(threads: int | None, gpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def start_worker(job: CandidateJob, gpu: str | None = None) -> tuple[subprocess.Popen, IO[bytes]]:
    """Write the job file and start its worker (on ``gpu`` when given), output to the candidate's log."""
    job.save()
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(job.log_path, "ab")  # noqa: SIM115 - closed by the backend
    threads = job.units[0].threads if job.units else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "damoc.select.worker", job.job_path],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=worker_env(threads, gpu),
        start_new_session=True,  # Ctrl-C reaches the parent only; it stops the workers it started
    )
    return proc, log


def finish_job(job: CandidateJob, returncode: int | None, wall_s: float, note: str = "") -> list[UnitRecord]:
    """The job's records: those the worker wrote, and failed ones (saying why) for units it did not finish."""
    out = []
    for spec in job.units:
        path = Path(spec.record_path)
        rec = None
        if path.is_file():
            try:  # the pipeline removed stale records before the job started
                rec = UnitRecord.load(path)
            except ValueError:
                rec = None
        if rec is None:
            why = note or f"worker exited with code {returncode} before this unit finished"
            rec = failed_record(spec, f"{why} (see {job.log_path})", wall_s)
            rec.save(path)
        out.append(rec)
    return out


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop one worker we started (its own process group), politely then firmly."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def report(job: CandidateJob, records: list[UnitRecord], on_done: OnDone) -> None:
    for spec, rec in zip(job.units, records, strict=True):
        on_done(spec, rec)
