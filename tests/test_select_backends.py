"""Local backend scheduling without models: parallel slots, GPU assignment, timeouts, missing records."""

import subprocess
import sys
import time
from pathlib import Path

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


# --- ray backend: what a task carries and brings back (no Ray needed) -----------------------------


def test_ray_task_carries_its_inputs_and_runs_in_a_node_local_directory(tmp_path, monkeypatch):
    from damoc.select.backends.ray_backend import _input_paths, localize, write_back

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dev.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (tmp_path / "rel_model").mkdir()
    job = _job(tmp_path, "rel_model")
    job.units[0] = job.units[0].model_copy(update={"candidate": "rel_model"})  # a relative model directory
    files = {p: Path(p).read_bytes() for p in _input_paths(job)}
    assert list(files) == [str(tmp_path / "dev.jsonl")]
    node = tmp_path / "node"
    local = localize(job, files, node)
    unit = local.units[0]
    for path in (unit.record_path, unit.dev_path, local.job_path, local.log_path):
        assert Path(path).is_relative_to(node)  # nothing points into the driver's run directory
    assert Path(unit.dev_path).read_bytes() == files[str(tmp_path / "dev.jsonl")]
    assert unit.candidate == str(tmp_path / "rel_model")  # absolute: another node has another cwd
    rec = UnitRecord(
        candidate=unit.candidate, slug="rel_model", method="zero_shot", status="ok", metric="answer_bpb",
        higher_is_better=False, score=0.5,
    )  # fmt: skip
    write_back(job, {"records": [rec.model_dump_json()], "log": "worker says hi\n"})
    back = UnitRecord.load(job.units[0].record_path)
    assert back.candidate == "rel_model" and back.score == 0.5  # the driver's name for it
    assert Path(job.log_path).read_text() == "worker says hi\n"


def test_ray_task_stops_its_worker_at_the_timeout_and_posts_progress(tmp_path):
    from damoc.select.backends.ray_backend import _wait_worker

    job = _job(tmp_path, "w").model_copy(update={"timeout_s": 1.5, "progress_s": 0.2})
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    posted, lines = [], iter(["step 1/9", "step 1/9", "step 2/9"])
    t0 = time.perf_counter()
    code = _wait_worker(proc, job, posted.append, lambda j: next(lines, "step 2/9"))
    assert code is None and 1.4 < time.perf_counter() - t0 < 15 and proc.poll() is not None
    assert posted == ["step 1/9", "step 2/9"]  # each new line once
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert _wait_worker(quick, job.model_copy(update={"timeout_s": None})) == 3
