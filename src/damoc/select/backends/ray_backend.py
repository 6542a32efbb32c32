"""Ray backend (``damoc[ray]``): each candidate is a Ray task with its CPU/GPU request.

Nothing needs to be shared between the driver and the nodes but the models: the task carries the
candidate's job and the data files it reads (through Ray's object store), runs the same worker command as
the local backend (a fresh process, so memory is released) in a temporary directory on its node, and
returns the worker's records and log, which the driver writes into the run directory. Candidates are zoo
names (each node fetches them into its own cache) or model directories every node can read at the same
absolute path. Ray schedules the tasks by their resources: a GPU per candidate when the cluster has GPUs,
a CPU per candidate otherwise. Same seed, same results as the local backend.

Stopping: Ctrl-C (or SIGTERM) cancels the tasks; a cancelled task stops its worker's process group, and a
worker whose Ray process is killed outright dies with it (the parent-death signal, on Linux).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.errors import require
from damoc.select.backends.base import (
    OnDone,
    exit_reason,
    finish_job,
    report,
    start_worker,
    stop_process,
)
from damoc.select.records import UnitRecord
from damoc.select.worker import CandidateJob, UnitSpec, read_progress

if TYPE_CHECKING:
    from damoc.select.config import RunSettings

LOG = logging.getLogger(__name__)


# the files a unit reads (dev rows, training subset, shots, calibration texts): every *_path but its record
INPUT_FIELDS = tuple(f for f in UnitSpec.model_fields if f.endswith("_path") and f != "record_path")


def _input_paths(job: CandidateJob) -> list[str]:
    """The data files the candidate's worker reads (the driver ships their bytes with the task)."""
    paths: list[str] = []
    for u in job.units:
        for p in (getattr(u, f) for f in INPUT_FIELDS):
            if p and p not in paths:
                paths.append(p)
    return paths


def _portable_candidate(name: str) -> str:
    """A model directory as an absolute path (a relative one means nothing on another node)."""
    p = Path(name)
    return str(p.resolve()) if p.exists() else name


def localize(job: CandidateJob, files: dict[str, bytes], root: Path) -> CandidateJob:
    """The job with every path inside ``root`` (a node-local directory) and its input files written there."""
    inputs = {}
    for i, (orig, data) in enumerate(files.items()):
        local = root / "inputs" / f"{i}{Path(orig).suffix}"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        inputs[orig] = str(local)
    units = []
    for i, u in enumerate(job.units):
        moved = {k: inputs[v] for k in INPUT_FIELDS if (v := getattr(u, k))}
        moved["record_path"] = str(root / "records" / f"{i}_{u.method}.json")
        moved["candidate"] = _portable_candidate(u.candidate)
        units.append(u.model_copy(update=moved))
    return job.model_copy(
        update={"units": units, "job_path": str(root / "job.json"), "log_path": str(root / "worker.log")}
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to kill this process when the process that started it dies (a force-cancelled task)."""
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def run_candidate(job_json: str, files: dict[str, bytes], board: Any = None) -> dict[str, Any]:
    """Body of the Ray task: run the candidate's worker in a node-local directory and return its records.

    Returns ``{"returncode", "records", "log", "host", "node", "workdir"}``: the worker's exit code (None
    when it was stopped at the job's timeout), each unit's record as JSON text (None where there is none),
    the worker's log, and where it ran.
    """
    import shutil
    import socket
    import tempfile

    original = CandidateJob.model_validate_json(job_json)
    root = Path(tempfile.mkdtemp(prefix=f"damoc-{original.slug}-"))
    proc = log = None
    try:
        job = localize(original, files, root)
        proc, log = start_worker(job, preexec_fn=_die_with_parent)

        def post(line: str) -> None:
            board.put.remote(original.candidate, line)

        code = _wait_worker(proc, job, post if board is not None else None)
        records = []
        for u in job.units:
            p = Path(u.record_path)
            records.append(p.read_text(encoding="utf-8") if p.is_file() else None)
        log.close()
        text = Path(job.log_path).read_text(encoding="utf-8", errors="replace")
        return {
            "returncode": code,
            "records": records,
            "log": text,
            "host": socket.gethostname(),
            "node": _node(),
            "workdir": str(root),
        }
    finally:  # also on cancel (KeyboardInterrupt): the worker's process group goes with the task
        if proc is not None:
            stop_process(proc)
        if log is not None:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_worker(proc, job: CandidateJob, post=None, read=read_progress) -> int | None:
    """The worker's exit code, or None when it was stopped at ``job.timeout_s``; meanwhile its progress
    lines go to ``post`` every ``job.progress_s``."""
    import subprocess

    t0, last = time.perf_counter(), None
    poll = job.progress_s if post is not None and job.progress_s else None
    while True:
        left = job.timeout_s - (time.perf_counter() - t0) if job.timeout_s else None
        waits = [x for x in (poll, left) if x is not None]
        try:
            return proc.wait(max(0.0, min(waits)) if waits else None)
        except subprocess.TimeoutExpired:
            if job.timeout_s and time.perf_counter() - t0 >= job.timeout_s:
                stop_process(proc)
                return None
            line = read(job)
            if post is not None and line and line != last:
                last = line
                post(line)


def _node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (tests call the body directly)
        return None


class ProgressBoard:
    """A tiny Ray actor: running tasks post their candidate's latest progress line, the driver reads them."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}

    def put(self, candidate: str, line: str) -> None:
        self.lines[candidate] = line

    def read(self) -> dict[str, str]:
        return dict(self.lines)


def write_back(job: CandidateJob, result: dict[str, Any]) -> None:
    """Write the records and the log a task returned into the driver's run directory."""
    for spec, text in zip(job.units, result["records"], strict=True):
        if text is None:
            continue
        try:
            rec = UnitRecord.model_validate_json(text)
        except ValueError:
            continue  # finish_job records the unit as failed
        rec.candidate = spec.candidate  # the worker may have seen the model's absolute path
        rec.save(spec.record_path)
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "a", encoding="utf-8") as fh:
        fh.write(result["log"])


@dataclass
class RayBackend:
    """One Ray task per candidate on a cluster (or a local Ray instance), scheduled by its CPU/GPU request."""

    address: str | None = None
    jobs: int | None = None  # candidates in flight at most; None: as many as the cluster's resources allow
    cpus_per_candidate: float = 1.0
    gpus_per_candidate: float | None = None  # None: 1 when the cluster has GPUs, 0 otherwise
    timeout_s: float | None = None
    progress_s: float = 0.0  # log each running candidate's progress this often (0 = never)
    max_retries: int = 1  # re-runs of a candidate whose node or Ray worker died (not of one that failed)
    runtime_env: dict[str, Any] | None = None  # e.g. {"pip": ["damoc[ray]"]} where damoc is not installed
    cancel_grace_s: float = 10.0  # on Ctrl-C: time for cancelled tasks to stop their workers

    @classmethod
    def from_run(cls, run: RunSettings) -> RayBackend:
        names = (
            "address",
            "cpus_per_candidate",
            "gpus_per_candidate",
            "timeout_s",
            "progress_s",
            "max_retries",
        )
        return cls(
            jobs=run.jobs if "jobs" in run.model_fields_set else None,  # else Ray schedules by resources
            runtime_env=run.runtime_env,
            **{name: getattr(run, name) for name in names},
        )

    def run(self, jobs: Sequence[CandidateJob], on_done: OnDone) -> None:
        ray = require("ray", "ray")
        started = not ray.is_initialized()
        if started:
            local = (
                {}
                if self.address or not self.jobs
                else {"num_cpus": max(1, int(self.jobs * self.cpus_per_candidate + 0.999))}
            )
            ray.init(
                address=self.address,
                ignore_reinit_error=True,
                include_dashboard=False,
                log_to_driver=False,
                runtime_env=self.runtime_env,
                **local,
            )
        gpus = self.gpus_per_candidate
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        task = ray.remote(run_candidate).options(
            num_cpus=self.cpus_per_candidate, num_gpus=gpus, max_retries=self.max_retries
        )
        board = ray.remote(ProgressBoard).options(num_cpus=0).remote() if self.progress_s else None
        LOG.info("ray: %s CPU and %s GPU per candidate", self.cpus_per_candidate, gpus)
        queue = list(jobs)
        running: dict = {}
        shown: dict[str, str] = {}
        try:
            while queue or running:
                while queue and (not self.jobs or len(running) < self.jobs):
                    job = queue.pop(0)
                    if self.timeout_s and not job.timeout_s:
                        job = job.model_copy(update={"timeout_s": self.timeout_s})
                    job.save()  # the driver's copy, for the record
                    files = {p: Path(p).read_bytes() for p in _input_paths(job)}
                    LOG.info("submit %s to ray", job.candidate)
                    running[task.remote(job.model_dump_json(), files, board)] = (job, time.perf_counter())
                done, _ = ray.wait(list(running), num_returns=1, timeout=self.progress_s or None)
                if board is not None:
                    self._show_progress(ray, board, shown)
                for ref in done:
                    job, t0 = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the Ray task itself failed (node lost, worker killed)
                        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        code, note = None, f"ray task failed: {first}"
                    else:
                        write_back(job, result)
                        code = result["returncode"]
                        note = "" if code == 0 else exit_reason(code)
                        if code is None:
                            note = f"timed out after {job.timeout_s:.0f} s"
                        LOG.info(
                            "%s ran on %s (ray node %s) in %s",
                            job.candidate,
                            result["host"],
                            result["node"],
                            result["workdir"],
                        )
                    report(job, finish_job(job, code, time.perf_counter() - t0, note), on_done)
        finally:  # Ctrl-C or an error: cancel what still runs; finished records stay
            self._cancel(ray, list(running))
            if started:
                ray.shutdown()

    def _show_progress(self, ray, board, shown: dict[str, str]) -> None:
        try:
            lines = ray.get(board.read.remote(), timeout=10)
        except Exception:  # progress is never worth failing the run for
            return
        for candidate, line in lines.items():
            if shown.get(candidate) != line:
                shown[candidate] = line
                LOG.info("%s / %s", candidate, line)

    def _cancel(self, ray, refs: list) -> None:
        """Cancel politely (the task stops its worker), then force what has not stopped in the grace time."""
        if not refs:
            return
        for ref in refs:
            ray.cancel(ref, force=False)
        _, left = ray.wait(refs, num_returns=len(refs), timeout=self.cancel_grace_s)
        for ref in left:
            ray.cancel(ref, force=True)
