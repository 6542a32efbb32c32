"""Every command through every bad-input class: exit 2, one line on stderr, no traceback, nothing written.

The cases are in tests/bad_inputs_cases.py (benchmarks/robustness.py runs the same ones as separate
processes). Read-only output: the tests run as root here, for whom a mode-555 directory is writable, so the
in-process cases deny write access through ``os.access`` for that directory (what the output checks ask,
and what the kernel answers a non-root user); ``test_read_only_output_as_a_real_non_root_user`` runs one
command as the user ``nobody`` (``setpriv``) against a real mode-555 directory. Outputs under a regular file
fail for root too, and are a class of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs_cases import CASES, CLASSES, build_workspace, expand, snapshot

# (command, class) pairs with no case, and why
NOT_APPLICABLE = {
    **{("validate", c): "validate writes nothing" for c in ("read-only output", "output under a file")},
    ("validate", "directory-as-file"): "validate writes nothing",
    ("validate", "broken model"): "validate checks that models exist; loading them is the run's work",
    (
        "select",
        "broken model",
    ): "a candidate that does not load fails in its worker and is recorded (exit 3): "
    "test_broken_candidate_is_recorded_with_the_load_report",
    **{
        (cmd, "unknown field"): "no field mapping"
        for cmd in (
            "layers score",
            "prune layers",
            "prune calibrated",
            "quantize",
            "eval",
            "curate",
            "prune structured",
            "distill",
            "finescope",
        )
    },
    **{
        ("zoo fetch", c): "takes a zoo name only"
        for c in (
            "empty",
            "malformed",
            "directory-as-file",
            "broken model",
            "out-of-range number",
            "unknown field",
        )
    },
    (
        "zoo fetch",
        "read-only output",
    ): "its cache directory comes from DAMOC_CACHE: test_zoo_cache_not_writable",
    (
        "zoo fetch",
        "output under a file",
    ): "its cache directory comes from DAMOC_CACHE: test_zoo_cache_not_writable",
    **{("zoo path", c): "takes a zoo name only, writes nothing" for c in CLASSES if c != "missing"},
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_dirs):
    return build_workspace(tmp_path_factory.mktemp("bad") / "ws", tiny_dirs["llama"])


@pytest.fixture
def as_user(monkeypatch, ws, tmp_path):
    """The user's view of the workspace: its ``ro`` directory is not writable (see the module docstring)."""
    real = os.access
    ro = os.path.realpath(ws["ro"])

    def access(path, mode, *args, **kwargs):
        p = os.path.realpath(path)
        if mode & os.W_OK and (p == ro or p.startswith(ro + os.sep)):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setenv("DAMOC_CACHE", str(tmp_path / "cache"))
    os.chmod(ws["ro"], 0o555)


def _check_rejected(code: int, out: str, err: str, phrase: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"exit {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err + out, err[-2000:]
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {err[-2000:]}"
    assert lines[0].startswith("error: ") and phrase.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c[0].replace(' ', '-')}-{c[1].replace(' ', '-')}-{i}" for i, c in enumerate(CASES)]
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, ws, as_user, run_cli):
    _command, _cls, args, phrase = case
    before = snapshot(ws["root"])
    code, out, err = run_cli(*expand(args, ws))
    _check_rejected(code, out, err, phrase)
    assert snapshot(ws["root"]) == before, "the command left something on disk"


def test_every_command_meets_every_class():
    covered = {(c[0], c[1]) for c in CASES}
    commands = sorted({c[0] for c in CASES})
    assert len(commands) == 16
    for cmd in commands:
        for cls in CLASSES:
            assert (cmd, cls) in covered or (cmd, cls) in NOT_APPLICABLE, f"no case for {cmd} / {cls}"
    assert not covered & set(NOT_APPLICABLE), "a pair is both covered and called not applicable"


def test_zoo_cache_not_writable(run_cli, ws, as_user, monkeypatch, tmp_path):
    monkeypatch.setenv("DAMOC_CACHE", os.path.join(ws["ro"], "cache"))
    _check_rejected(*run_cli("zoo", "fetch", "smollm2-135m"), "not writable")
    monkeypatch.setenv("DAMOC_CACHE", os.path.join(ws["afile"], "cache"))
    _check_rejected(*run_cli("zoo", "fetch", "smollm2-135m"), "is a file")
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root without setpriv: no non-root user"
)
def test_read_only_output_as_a_real_non_root_user(tiny_dirs):
    """A real mode-555 directory, and a real user for whom it is read-only (nobody, when the tests run as root)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="damoc-nonroot-"))  # under /tmp: every parent is searchable
    root = base / "nr"
    names = build_workspace(root, tiny_dirs["llama"])
    os.chmod(base, 0o755)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.chmod(names["ro"], 0o555)
    before = snapshot(root)
    cmd = [
        sys.executable,
        "-m",
        "damoc",
        "filter",
        names["good"],
        "-m",
        "random",
        "-o",
        f"{names['ro']}/f.jsonl",
    ]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
    import damoc

    src = str(Path(damoc.__file__).parents[1])
    env = {
        **os.environ,
        "HOME": str(root),
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        _check_rejected(proc.returncode, proc.stdout, proc.stderr, "not writable")
        assert snapshot(root) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_numeric_settings_are_bounded_at_parse_time():
    """Every int/float setting of every job kind has a range (or is listed here with the reason it has none),
    so `damoc validate` and the commands reject the same values before any work."""
    import types
    import typing

    import annotated_types as at
    from pydantic import BaseModel

    from damoc.config import JOBS, job_kinds

    unbounded_ok = {
        "layer": "a layer index, negative counts from the end; checked against the model",
        "fidelity_layer": "a layer index of the fidelity encoder, checked when it loads",
    }
    seen: set[type] = set()
    missing: list[str] = []

    def args_of(ann):
        if typing.get_origin(ann) in (typing.Union, types.UnionType):
            return typing.get_args(ann)
        return (ann,)

    def walk(cls):
        if cls in seen:
            return
        seen.add(cls)
        validators = cls.__pydantic_decorators__.field_validators.values()
        for name, f in cls.model_fields.items():
            kinds = args_of(f.annotation)
            if any(k in (int, float) for k in kinds):
                bounded = any(isinstance(m, at.Gt | at.Ge | at.Lt | at.Le | at.Interval) for m in f.metadata)
                checked = any(name in v.info.fields for v in validators)
                if not (bounded or checked or name in unbounded_ok):
                    missing.append(f"{cls.__name__}.{name}")
            for k in kinds:
                for sub in (k, *typing.get_args(k)):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        walk(sub)

    for kind in job_kinds():
        walk(JOBS.get(kind))
    from damoc.evaluate.report_eval import EvalConfig
    from damoc.train.distill import DistillConfig

    walk(EvalConfig)
    walk(DistillConfig)
    assert not missing, f"numeric settings without a range: {missing}"


@pytest.mark.parametrize(
    ("flag", "key", "value"),
    [
        ("--max-steps", "max_steps", 0),
        ("--max-steps", "max_steps", -1),
        ("--epochs", "epochs", -1),
        ("--token-budget", "token_budget", 0),
    ],
)
def test_validate_and_the_cli_agree_on_numbers(run_cli, ws, tmp_path, flag, key, value):
    import yaml

    job = yaml.safe_load(Path(ws["select_unknown_key"]).read_text())
    job.pop("modle")
    job["proxy"] = {key: value}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    code, out, err = run_cli("validate", path)
    line = _check_rejected(code, out, err, f"proxy.{key}")
    job["proxy"] = {}
    path.write_text(yaml.safe_dump(job))
    assert run_cli("validate", path)[0] == 0
    code, out, err = run_cli("select", path, flag, str(value), "-o", tmp_path / "run")
    assert _check_rejected(code, out, err, f"proxy.{key}").split(": ", 2)[-1] == line.split(": ", 2)[-1]
    assert not (tmp_path / "run").exists()


def test_broken_candidate_is_recorded_with_the_load_report(run_cli, ws, tmp_path):
    """In select a candidate that does not load fails in its worker: one line in the record and the table,
    the library's whole load report in the record and in worker.log, exit 3 and a last line that says so."""
    import yaml

    from damoc.select.records import Leaderboard

    job = yaml.safe_load(Path(ws["select_unknown_key"]).read_text())
    job.pop("modle")
    job.update(candidates=[ws["hidden"]], baselines=False)
    job["run"] = {"run_dir": str(tmp_path / "run"), "threads": 1, "progress_s": 0}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    code, out, err = run_cli("select", path)
    assert code == 3, err[-3000:]
    assert out.strip().splitlines()[-1].startswith("1 of 1 units failed")
    rec = Leaderboard.model_validate_json((tmp_path / "run" / "leaderboard.json").read_text()).records[0]
    assert rec.status == "failed" and "\n" not in rec.error
    assert "config.json implies" in rec.error and "model.safetensors" in rec.error
    assert "LOAD REPORT" in rec.error_detail and "MISMATCH" in rec.error_detail
    log = next((tmp_path / "run" / "candidates").glob("*/worker.log")).read_text()
    assert "LOAD REPORT" in log and "MISMATCH" in log


def test_eval_says_when_it_scores_fewer_rows_than_asked(run_cli, ws, tmp_path):
    code, out, err = run_cli(
        "eval", ws["model"], "--general", "none", "--domain", ws["good"], "--samples", "2", "--length", "16",
        "--task-samples", "100", "-o", tmp_path / "e.json",
    )  # fmt: skip
    assert code == 0, err
    n = json.loads((tmp_path / "e.json").read_text())["n_task"]
    assert 0 < n < 100 and f"scored {n} dev rows" in err and "fewer than --task-samples 100" in err
