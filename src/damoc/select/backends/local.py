"""Local backend: one subprocess per candidate, at most ``jobs`` candidates at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from damoc.select.backends.base import (
    OnDone,
    ProgressReporter,
    finish_job,
    report,
    start_worker,
    stop_process,
    worker_ended,
)
from damoc.select.worker import CandidateJob

if TYPE_CHECKING:
    from damoc.select.config import RunSettings

LOG = logging.getLogger(__name__)


@dataclass
class LocalBackend:
    """One subprocess per candidate on this machine, at most ``jobs`` at a time."""

    jobs: int = 1
    timeout_s: float | None = None  # per candidate process
    gpu_ids: list[str] | None = None  # one per running candidate; caps the parallelism
    poll_s: float = 0.2
    progress_s: float = 0.0  # log each running candidate's progress this often (0 = never)

    @classmethod
    def from_run(cls, run: RunSettings) -> LocalBackend:
        return cls(jobs=run.jobs, timeout_s=run.timeout_s, gpu_ids=run.gpu_ids, progress_s=run.progress_s)

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None:
        queue = list(jobs)
        running: list = []
        free = list(self.gpu_ids) if self.gpu_ids else None
        width = min(self.jobs, len(free)) if free else self.jobs
        progress = ProgressReporter(self.progress_s)
        try:
            while queue or running:
                while queue and len(running) < width:
                    job = queue.pop(0)
                    gpu = free.pop(0) if free else None
                    LOG.info("start %s (%s)", job.candidate, ", ".join(u.method for u in job.units))
                    proc, log = start_worker(job, gpu)
                    running.append((job, proc, log, time.perf_counter(), gpu))
                time.sleep(self.poll_s)
                progress.poll(item[0] for item in running)
                for item in list(running):
                    job, proc, log, t0, gpu = item
                    elapsed = time.perf_counter() - t0
                    limit = job.timeout_s or self.timeout_s
                    note = ""
                    if proc.poll() is None:
                        if not limit or elapsed < limit:
                            continue
                        stop_process(proc)
                        note = f"timed out after {limit:.0f} s"
                    worker_ended(proc)
                    log.close()
                    running.remove(item)
                    if gpu is not None and free is not None:
                        free.append(gpu)
                    report(job, finish_job(job, proc.returncode, elapsed, note), on_done)
        finally:  # Ctrl-C or an error: stop the workers still running; finished records stay
            for _job, proc, log, _t0, _gpu in running:
                stop_process(proc)
                log.close()
