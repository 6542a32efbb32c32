"""Local backend scheduling without models: parallel slots, GPU assignment, timeouts, missing records."""

import subprocess
import sys
import time

from damoc.select.backends import local
from damoc.select.config import SelectEval
from damoc.select.records import UnitRecord
from damoc.select.worker import CandidateJob, UnitSpec


def _job(tmp_path, name):
    unit = UnitSpec(
        candidate=name, slug=name, method="zero_shot", record_path=str(tmp_path / name / "zero_shot.json"),
        dev_path=str(tmp_path / "dev.jsonl"), eval=SelectEval(),
    )  # fmt: skip
    return CandidateJob(
        candidate=name, slug=name, job_path=str(tmp_path / name / "job.json"),
        log_path=str(tmp_path / name / "worker.log"), units=[unit],
    )  # fmt: skip


def test_parallel_slots_gpus_and_missing_records(tmp_path, monkeypatch):
    started, live, peak, procs = [], [0], [0], []

    def fake_start(job, gpu=None):
        started.append((job.candidate, gpu))
        live[0] = sum(1 for p in procs if p.poll() is None) + 1
        peak[0] = max(peak[0], live[0])
        sleep = "30" if job.candidate == "slow" else "0.3"
        proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({sleep})"])
        procs.append(proc)
        (tmp_path / job.slug).mkdir(exist_ok=True)
        log = open(job.log_path, "ab")  # noqa: SIM115
        if job.candidate == "ok":  # this worker "writes" its record
            UnitRecord(
                candidate="ok", slug="ok", method="zero_shot", status="ok", metric="answer_bpb",
                higher_is_better=False, score=1.0, finished_at="now",
            ).save(job.units[0].record_path)  # fmt: skip
        return proc, log

    def fake_stop(proc, grace_s=5.0):
        proc.kill()
        proc.wait()

    monkeypatch.setattr(local, "start_worker", fake_start)
    monkeypatch.setattr(local, "stop_process", fake_stop)
    done = {}
    orig_poll = local.LocalBackend.poll_s
    backend = local.LocalBackend(jobs=3, gpu_ids=["0", "1"], timeout_s=2.0, poll_s=0.05)
    t0 = time.perf_counter()
    jobs = [_job(tmp_path, n) for n in ("ok", "crash", "slow")]
    backend.run(jobs, lambda spec, rec: done.__setitem__(spec.candidate, rec))
    assert time.perf_counter() - t0 < 20 and orig_poll == 0.2
    assert peak[0] <= 2  # two GPUs: two candidates at a time
    assert {g for _, g in started} == {"0", "1"}
    assert done["ok"].status == "ok" and done["ok"].score == 1.0
    assert done["crash"].status == "failed" and "before this unit finished" in done["crash"].error
    assert done["slow"].status == "failed" and "timed out after 2 s" in done["slow"].error
