"""What every backend does: run each candidate's job as ``python -m damoc.select.worker JOB.json``."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from damoc.registry import Entry, Registry
from damoc.select.lock import note_worker
from damoc.select.orphans import PARENT_ENV
from damoc.select.records import UnitRecord
from damoc.select.worker import CandidateJob, UnitSpec, failed_record, read_progress

if TYPE_CHECKING:
    from damoc.select.config import RunSettings

LOG = logging.getLogger(__name__)

OnDone = Callable[[UnitSpec, UnitRecord], None]


class Backend(Protocol):
    """A backend is built from the job's ``run:`` settings and runs every candidate's job."""

    @classmethod
    def from_run(cls, run: RunSettings) -> Backend: ...

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None: ...


# Every backend ``run.backend`` can name (docs/selection.md, "Where candidates run").
BACKENDS: Registry[type[Backend]] = Registry(
    "backend",
    [
        Entry("local", "damoc.select.backends.local:LocalBackend"),
        Entry("ray", "damoc.select.backends.ray_backend:RayBackend"),
    ],
)


def worker_env(threads: int | None, gpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())  # the worker ends when this process does (damoc.select.orphans)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def start_worker(
    job: CandidateJob, gpu: str | None = None, preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen, IO[bytes]]:
    """Write the job file and start its worker (on ``gpu`` when given), output to the candidate's log;
    ``preexec_fn`` runs in the child before the worker starts (the Ray backend ties its life to the task).

    The worker's pid goes into the run lock (a resumed run refuses to start while it runs), and the worker
    ends if this process is killed (:mod:`damoc.select.orphans`)."""
    job.save()
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    job.progress_path.unlink(missing_ok=True)  # a line from an earlier run is not this run's progress
    log = open(job.log_path, "ab")  # noqa: SIM115 - closed by the backend
    threads = job.units[0].threads if job.units else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "damoc.select.worker", job.job_path],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=worker_env(threads, gpu),
        start_new_session=True,  # Ctrl-C reaches the parent only; it stops the workers it started
        preexec_fn=preexec_fn,
    )
    note_worker(proc.pid)
    return proc, log


def worker_ended(proc: subprocess.Popen) -> None:
    """Drop a finished worker from the run lock."""
    note_worker(proc.pid, running=False)


def exit_reason(returncode: int | None) -> str:
    """Why a worker stopped, in words: a negative code is the signal that killed it."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = (
            " (often the out-of-memory killer: run fewer candidates at once or give the run more memory)"
            if -returncode == signal.SIGKILL
            else ""
        )
        return f"worker killed by {name}{hint}"
    return f"worker exited with code {returncode}"


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
            why = note or f"{exit_reason(returncode)} before this unit finished"
            rec = failed_record(spec, f"{why} (see {job.log_path})", wall_s)
            rec.save(path)
        out.append(rec)
    return out


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Stop one worker we started (its own process group), politely then firmly."""
    if proc.poll() is not None:
        worker_ended(proc)
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
    worker_ended(proc)


class ProgressReporter:
    """Logs each running candidate's latest progress line (from its worker) every ``every_s`` seconds."""

    def __init__(self, every_s: float | None):
        self.every_s = every_s or 0.0
        self.t_last = time.perf_counter()
        self.last: dict[str, str] = {}

    def poll(self, running: Iterable[CandidateJob]) -> None:
        if self.every_s <= 0 or time.perf_counter() - self.t_last < self.every_s:
            return
        self.t_last = time.perf_counter()
        for job in running:
            line = read_progress(job)
            if line and line != self.last.get(job.candidate):
                self.last[job.candidate] = line
                LOG.info("%s / %s", job.candidate, line)


def report(job: CandidateJob, records: list[UnitRecord], on_done: OnDone) -> None:
    for spec, rec in zip(job.units, records, strict=True):
        on_done(spec, rec)
