"""Ray backend (``damoc[ray]``): each candidate is a Ray task with its CPU/GPU request.

The task runs the same worker command as the local backend (a fresh process, so memory is
released), on a node that sees the run directory (shared storage on a cluster). Same seed, same
results as the local backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from damoc.errors import require
from damoc.select.backends.base import BACKENDS, OnDone, ProgressReporter, exit_reason, finish_job, report
from damoc.select.worker import CandidateJob

LOG = logging.getLogger(__name__)


def _run_remote(job_json: str) -> int:
    """Body of the Ray task: start the candidate's worker and wait for it (on a Ray worker node)."""
    import subprocess

    from damoc.select.backends.base import start_worker, stop_process
    from damoc.select.worker import CandidateJob

    job = CandidateJob.model_validate_json(job_json)
    proc, log = start_worker(job)
    try:
        return proc.wait(job.timeout_s)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        return -1
    finally:
        stop_process(proc)
        log.close()


@BACKENDS.register(
    "ray", help="one Ray task per candidate on a cluster (--address), with its CPU/GPU request"
)
@dataclass
class RayBackend:
    address: str | None = None
    jobs: int = 1
    cpus_per_candidate: float = 1.0
    gpus_per_candidate: float = 0.0
    timeout_s: float | None = None
    # log each running candidate's progress this often (0 = never; the run directory must be shared storage)
    progress_s: float = 0.0

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None:
        ray = require("ray", "ray")
        started = not ray.is_initialized()
        if started:
            local = (
                {} if self.address else {"num_cpus": max(1, int(self.jobs * self.cpus_per_candidate + 0.999))}
            )
            ray.init(
                address=self.address,
                ignore_reinit_error=True,
                include_dashboard=False,
                log_to_driver=False,
                **local,
            )
        task = ray.remote(_run_remote)
        queue = list(jobs)
        running: dict = {}
        progress = ProgressReporter(self.progress_s)
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop(0)
                    if self.timeout_s and not job.timeout_s:
                        job = job.model_copy(update={"timeout_s": self.timeout_s})
                    LOG.info("submit %s to ray", job.candidate)
                    ref = task.options(
                        num_cpus=self.cpus_per_candidate, num_gpus=self.gpus_per_candidate, max_retries=0
                    ).remote(job.model_dump_json())
                    running[ref] = (job, time.perf_counter())
                done, _ = ray.wait(list(running), num_returns=1, timeout=self.progress_s or None)
                progress.poll(job for job, _t0 in running.values())
                for ref in done:
                    job, t0 = running.pop(ref)
                    try:
                        code = ray.get(ref)
                        note = "" if code == 0 else ("timed out" if code == -1 else exit_reason(code))
                    except Exception as exc:  # the Ray task itself failed
                        code, note = None, f"ray task failed: {str(exc).strip().splitlines()[0]}"
                    report(job, finish_job(job, code, time.perf_counter() - t0, note), on_done)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()
