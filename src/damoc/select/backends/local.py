"""Local backend: one subprocess per candidate, at most ``jobs`` candidates at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from damoc.select.backends.base import BACKENDS, OnDone, finish_job, report, start_worker, stop_process
from damoc.select.worker import CandidateJob

LOG = logging.getLogger(__name__)


@BACKENDS.register("local", help="one subprocess per candidate on this machine (--jobs at a time)")
@dataclass
class LocalBackend:
    jobs: int = 1
    timeout_s: float | None = None  # per candidate process
    poll_s: float = 0.2

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None:
        queue = list(jobs)
        running: list = []
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop(0)
                    LOG.info("start %s (%s)", job.candidate, ", ".join(u.method for u in job.units))
                    proc, log = start_worker(job)
                    running.append((job, proc, log, time.perf_counter()))
                time.sleep(self.poll_s)
                for item in list(running):
                    job, proc, log, t0 = item
                    elapsed = time.perf_counter() - t0
                    limit = job.timeout_s or self.timeout_s
                    note = ""
                    if proc.poll() is None:
                        if not limit or elapsed < limit:
                            continue
                        stop_process(proc)
                        note = f"timed out after {limit:.0f} s"
                    log.close()
                    running.remove(item)
                    report(job, finish_job(job, proc.returncode, elapsed, note), on_done)
        finally:  # Ctrl-C or an error: stop the workers still running; finished records stay
            for _job, proc, log, _t0 in running:
                stop_process(proc)
                log.close()
