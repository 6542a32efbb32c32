"""`damoc select --backend ray` on a real two-node Ray cluster started on this machine.

`ray start --head` and a second node joined on the loopback address, each with its own Ray temp dir and
its own TMPDIR (where the tasks' worker directories go): the run directory exists only on the driver's
side, the records come back through Ray. The leaderboard equals the local backend's; Ctrl-C on the driver,
and a forced cancel of a task, leave no worker process behind.

Slow (two Ray nodes and several candidate runs: minutes on a 2-core machine).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

import damoc

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).parent / "ray"
SRC = str(Path(damoc.__file__).resolve().parents[1])
CLI = [sys.executable, "-c", "from damoc.cli import run; run()"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _pids_with(marker: str, where: str = "environ") -> set[int]:
    """Processes whose environment (or command line) holds ``marker``."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and marker.encode() in _read(f"/proc/{d}/{where}"):
            out.add(int(d))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie, killed but not yet reaped, is not)."""
    stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        stat = _read(f"/proc/{d}/stat").decode(errors="replace")
        if d.isdigit() and stat:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = set(), list(roots)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _workers(root: Path) -> set[int]:
    """damoc worker processes whose job lives under ``root`` (the nodes' TMPDIRs)."""
    return {
        p for p in _pids_with(str(root), "cmdline") if b"damoc.select.worker" in _read(f"/proc/{p}/cmdline")
    }


def _wait_for(cond, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if value := cond():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ray = pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("raycluster")
    tag = f"{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",  # loopback only; a real cluster keeps Ray's token auth
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAMOC_TEST_RAY_CLUSTER": tag,
        "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
    }
    port = _port()
    nodes, logs = [], []
    try:
        for i, name in enumerate(("head", "node2")):
            (root / name / "tmp").mkdir(parents=True)
            args = [
                str(RAY), "start", "--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
                f"--temp-dir={root / name / 'ray'}", f"--resources={json.dumps({name: 1})}",
                f"--node-manager-port={_port()}", f"--object-manager-port={_port()}",
                f"--dashboard-agent-listen-port={_port()}", f"--dashboard-agent-grpc-port={_port()}",
                f"--metrics-export-port={_port()}", f"--runtime-env-agent-port={_port()}",
                f"--min-worker-port={20000 + 1000 * i}", f"--max-worker-port={20999 + 1000 * i}",
            ]  # fmt: skip
            args += (
                ["--head", f"--port={port}", "--include-dashboard=false"]
                if name == "head"
                else [f"--address=127.0.0.1:{port}"]
            )
            log = open(root / f"{name}.log", "wb")  # noqa: SIM115
            logs.append(log)
            nodes.append(
                subprocess.Popen(
                    args, env={**env, "TMPDIR": str(root / name / "tmp")}, stdout=log, stderr=log
                )
            )
            if name == "head":
                _wait_for(lambda: (root / "head" / "ray" / "ray_current_cluster").is_file(), 240, "the head")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False)
        _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 240, "the second node")
        yield {"address": f"127.0.0.1:{port}", "root": root, "env": env, "ray": ray}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        ours = _pids_with(tag) | {p.pid for p in nodes}
        ours |= _descendants(ours)  # Ray's agents start with a fresh environment
        for proc in reversed(nodes):  # `ray start --block` stops its node's processes on SIGTERM
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in ours:  # whatever did not stop with its node
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for log in logs:
            log.close()
        os.environ.pop("RAY_AUTH_MODE", None)


def _task(tmp: Path) -> Path:
    rows = [
        {"question": f"Is {i} odd?", "answer": ["no", "yes"][i % 2] + f", {i} is {['even', 'odd'][i % 2]}."}
        for i in range(24)
    ]
    path = tmp / "task.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _job(tmp: Path, cands, name: str, proxy: dict) -> Path:
    data = {
        "job": "select",
        "task": {"path": str(_task(tmp)), "dev_size": 6},
        "candidates": [str(c) for c in cands],
        "data": {"filter": "random", "budget": 0.5, "compress_rate": None},
        "model": {"layer_fraction": 0.0},
        "proxy": {"method": "lora", "batch_size": 4, "max_length": 64, **proxy},
        "eval": {"dev_rows": 4, "max_length": 64},
        "baselines": False,
        "validate": {"enabled": False},
        "run": {"threads": 1, "progress_s": 0},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rows(run: Path) -> dict:
    board = json.loads((run / "leaderboard.json").read_text())
    return {r["candidate"]: (r["rank"], r["scores"]) for r in board["rows"]}


def test_leaderboard_equals_the_local_backend_without_a_shared_run_directory(cluster, tiny_dirs, tmp_path):
    from damoc.cli import main

    job = _job(tmp_path, [tiny_dirs["llama"], tiny_dirs["qwen2"]], "job", {"max_steps": 2})
    assert main(["select", str(job), "--run-dir", str(tmp_path / "local")]) == 0
    ray_run = tmp_path / "ray"
    args = [
        "select",
        str(job),
        "--run-dir",
        str(ray_run),
        "--backend",
        "ray",
        "--address",
        cluster["address"],
    ]
    done = subprocess.run([*CLI, *args], env=cluster["env"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(ray_run) == _rows(tmp_path / "local")  # same ranks, same scores, same seed
    # each candidate ran in a node-local directory under its node's TMPDIR, both nodes were used
    where = [ln for ln in done.stderr.splitlines() if " ran on " in ln]
    assert len(where) == 2
    nodes = {name for name in ("head", "node2") for ln in where if str(cluster["root"] / name / "tmp") in ln}
    assert nodes == {"head", "node2"}
    assert not any(str(ray_run) in ln.split(" in ")[-1] for ln in where)
    for name in ("head", "node2"):  # the worker directories were cleaned up
        assert not list((cluster["root"] / name / "tmp").glob("damoc-*"))
    for r in json.loads((ray_run / "leaderboard.json").read_text())["records"]:
        assert r["status"] == "ok" and r["candidate"] in {str(tiny_dirs["llama"]), str(tiny_dirs["qwen2"])}
        assert (ray_run / "candidates").is_dir()


def _long_job(tmp_path, tiny_dirs) -> Path:
    return _job(tmp_path, [tiny_dirs["llama"]], "long", {"max_steps": 100000, "epochs": 100000.0})


def test_ctrl_c_on_the_driver_leaves_no_worker(cluster, tiny_dirs, tmp_path):
    job = _long_job(tmp_path, tiny_dirs)
    args = ["select", str(job), "--run-dir", str(tmp_path / "run"), "--backend", "ray"]
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115
    driver = subprocess.Popen([*CLI, *args, "--address", cluster["address"]], env=cluster["env"], stderr=log)
    try:
        workers = _wait_for(lambda: _workers(cluster["root"]), 300, "a worker process")
        driver.send_signal(signal.SIGINT)  # Ctrl-C
        assert driver.wait(120) == 130
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    _wait_for(lambda: not (_workers(cluster["root"]) | {p for p in workers if _alive(p)}), 60,
              "the worker to stop")  # fmt: skip


def test_a_force_cancelled_task_takes_its_worker_with_it(cluster, tiny_dirs, tmp_path):
    """ray.cancel(force=True) kills the task's Ray worker outright: its child dies with it (parent-death
    signal), although it runs in its own session."""
    from damoc.config import load_job
    from damoc.select.backends.ray_backend import _input_paths, run_candidate
    from damoc.select.worker import CandidateJob

    ray = cluster["ray"]
    cfg = load_job(_long_job(tmp_path, tiny_dirs))
    cfg.run.run_dir = str(tmp_path / "run")
    job = _plan_one_job(cfg)
    assert isinstance(job, CandidateJob)
    files = {p: Path(p).read_bytes() for p in _input_paths(job)}
    ref = ray.remote(run_candidate).options(num_cpus=1, max_retries=0).remote(job.model_dump_json(), files)
    workers = _wait_for(lambda: _workers(cluster["root"]), 300, "a worker process")
    ray.cancel(ref, force=True)
    with pytest.raises(Exception):  # noqa: B017 - Ray reports a crashed worker or a cancelled task
        ray.get(ref, timeout=120)
    _wait_for(lambda: not any(_alive(p) for p in workers), 60, "the worker to die")


def _plan_one_job(cfg):
    """The candidate job `damoc select` would submit, with its data files (no backend run)."""
    from damoc.select.pipeline import (
        attach_spec_hashes,
        group_jobs,
        load_checked_task,
        open_run_dir,
        plan_units,
        prepare_data,
    )

    task, dev = load_checked_task(cfg)
    run = open_run_dir(cfg, False, False)
    stage = prepare_data(cfg, task, dev, run, False, True)
    units = plan_units(cfg, task, stage, run)
    attach_spec_hashes(units, stage)
    (job,) = group_jobs(cfg, units, run)
    return job
