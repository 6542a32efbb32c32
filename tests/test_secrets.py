"""Credentials appear in no output, log or record: a password in an endpoint URL, a key in the environment.

A fake OpenAI-compatible endpoint records the authorization it receives (so the credentials are used) and,
when asked to fail, answers 401 with the header echoed back in its body, as a careless server might.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

PASSWORD = "pw-Zq81-hunter2"
KEY = "sk-test-4f1c9e77aa"
SECRETS = (PASSWORD, KEY)


@pytest.fixture
def endpoint(chat_endpoint):
    """The shared fake endpoint (tests/conftest.py): it records the authorization it receives and, when
    ``fail`` is set, echoes it back in a 401."""
    chat_endpoint.reply = "fluent text"
    return chat_endpoint


def _url(server) -> str:
    return f"http://alice:{PASSWORD}@127.0.0.1:{server.server_port}/v1"


def _leaks(root: Path, *texts: str) -> list[str]:
    """Where a secret appears: in the given texts, or in any file under ``root`` but the user's job file."""
    found = [f"text {i}" for i, t in enumerate(texts) for s in SECRETS if s in t]
    for p in root.rglob("*"):
        if p.is_file() and p.name != "job.yaml":
            data = p.read_bytes()
            found += [str(p) for s in SECRETS if s.encode() in data]
    return found


def _rows(path: Path, n: int = 3) -> Path:
    rows = [
        {
            "id": f"r{i}",
            "question": f"What moved in trial {i}?",
            "context": f"In trial {i} the dose moved.",
            "answer": "dose",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def fake_fidelity(monkeypatch):
    import damoc.data.fidelity as fidelity

    monkeypatch.setattr(fidelity.BertScoreFidelity, "__call__", lambda self, c, r: [0.95] * len(c))


def test_redact_masks_userinfo_authorization_and_registered_values():
    from damoc.io.redact import redact, register_secret, split_userinfo

    assert redact(f"see http://alice:{PASSWORD}@host:8000/v1 now") == "see http://***@host:8000/v1 now"
    assert redact("https://TOKEN123@github.com/x") == "https://***@github.com/x"
    assert redact("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"
    assert redact({"h": ["bearer xyz123"]}) == {"h": ["bearer ***"]}
    register_secret("value-of-a-key-9")
    assert redact("it said value-of-a-key-9.") == "it said ***."
    url, user, pw = split_userinfo(f"http://alice:{PASSWORD}@h/v1")
    assert (url, user, pw) == ("http://h/v1", "alice", PASSWORD)
    assert redact(f"x {PASSWORD} y") == "x *** y"  # registered when split


def test_rewrite_endpoint_credentials_are_used_but_never_shown(
    run_cli, endpoint, tmp_path, monkeypatch, fake_fidelity
):
    data = _rows(tmp_path / "task.jsonl")
    out = tmp_path / "rw.jsonl"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, stdout, stderr = run_cli(
        "rewrite", data, "--original", data, "--endpoint", _url(endpoint), "-o", out
    )
    assert code == 0, stderr
    import base64

    assert endpoint.auth[0] == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    report = json.loads((tmp_path / "rw.report.json").read_text())
    assert report["job"]["rewrite"]["endpoint"] == f"http://***@127.0.0.1:{endpoint.server_port}/v1"

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a key in the environment goes as a bearer token
    code, stdout2, stderr2 = run_cli(
        "rewrite", data, "--original", data, "--endpoint", _url(endpoint), "-o", out, "--overwrite"
    )
    assert code == 0 and endpoint.auth[-1] == f"Bearer {KEY}"
    assert _leaks(tmp_path, stdout, stderr, stdout2, stderr2) == []


def test_failing_endpoint_errors_show_no_credentials(run_cli, endpoint, tmp_path, monkeypatch, fake_fidelity):
    data = _rows(tmp_path / "task.jsonl")
    endpoint.fail = True
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, out, err = run_cli(
        "rewrite", data, "--original", data, "--endpoint", _url(endpoint), "-o", tmp_path / "o.jsonl"
    )
    assert code == 2 and "HTTP 401" in err and len(err.strip().splitlines()) == 1
    dead = f"http://alice:{PASSWORD}@127.0.0.1:9/v1"  # nothing listens: the connection error names the URL
    code, out2, err2 = run_cli(
        "rewrite", data, "--original", data, "--endpoint", dead, "-o", tmp_path / "o.jsonl"
    )
    assert code == 2 and "cannot reach the rewrite endpoint http://127.0.0.1:9/v1" in err2
    assert _leaks(tmp_path, out, err, out2, err2) == []


def _select_job(tmp_path: Path, model: Path, url: str, **rewrite) -> Path:
    job = {
        "job": "select",
        "task": {"path": str(_rows(tmp_path / "task.jsonl", 16)), "dev_size": 4},
        "candidates": [str(model)],
        "data": {
            "filter": "random",
            "budget": 4,
            "compress_rate": None,
            "rewrite": True,
            "rewrite_options": {"endpoint": url, "max_rounds": 1, **rewrite},
        },
        "model": {"layer_fraction": 0.0},
        "proxy": {"max_steps": 1, "max_length": 64},
        "eval": {"dev_rows": 4, "max_length": 64},
        "baselines": False,
        "run": {"run_dir": str(tmp_path / "run"), "threads": 1, "progress_s": 0},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_select_with_an_endpoint_keeps_credentials_out_of_every_record(
    run_cli, endpoint, tmp_path, monkeypatch, tiny_dirs, fake_fidelity
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    job = _select_job(tmp_path, tiny_dirs["llama"], _url(endpoint))
    code, out, err = run_cli("-v", "select", job)
    assert code == 0, err[-3000:]
    assert endpoint.auth and all(a == f"Bearer {KEY}" for a in endpoint.auth)
    run = tmp_path / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["rewrite_options"]["endpoint"].startswith("http://***@127.0.0.1")
    assert (run / "leaderboard.json").is_file() and list(run.glob("candidates/*/worker.log"))
    assert _leaks(tmp_path, out, err) == []


def test_select_failing_endpoint_error_and_config_show_no_credentials(
    run_cli, endpoint, tmp_path, monkeypatch, tiny_dirs, fake_fidelity
):
    endpoint.fail = True
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    job = _select_job(tmp_path, tiny_dirs["llama"], _url(endpoint))
    code, out, err = run_cli("select", job)
    assert code == 2 and "HTTP 401" in err.strip().splitlines()[-1]
    assert _leaks(tmp_path, out, err) == []


def test_a_job_file_may_not_name_any_variable_as_the_key(run_cli, tmp_path, monkeypatch, tiny_dirs):
    monkeypatch.setenv("DATABASE_PASSWORD", "db-secret-value-1")
    monkeypatch.delenv("DAMOC_API_KEY_ENVS", raising=False)
    job = _select_job(tmp_path, tiny_dirs["llama"], "http://127.0.0.1:9/v1", api_key_env="DATABASE_PASSWORD")
    for cmd in (["select", job], ["validate", job]):
        code, _, err = run_cli(*cmd)
        assert code == 2 and "api_key_env 'DATABASE_PASSWORD'" in err and "--api-key-env" in err
    assert not (tmp_path / "run").exists()
    # the user allows it: from their environment, or by naming it on the command line
    monkeypatch.setenv("DAMOC_API_KEY_ENVS", "DATABASE_PASSWORD")
    assert run_cli("validate", job)[0] == 0
    monkeypatch.delenv("DAMOC_API_KEY_ENVS")
    code, _, err = run_cli("select", job, "--api-key-env", "DATABASE_PASSWORD")
    assert code == 2 and "cannot reach the rewrite endpoint" in err  # past the check, to the endpoint
    assert "db-secret-value-1" not in err


def test_worker_failure_record_and_log_are_redacted():
    """A unit failing with credentials in its error: the record's error and detail (also what goes to
    worker.log) are masked like every other message."""
    from damoc.select.worker import failure_detail, one_line

    try:
        raise OSError(f"cannot open http://bob:{PASSWORD}@mirror/x (Authorization: Bearer {KEY})")
    except OSError as exc:
        line, detail = one_line(exc), failure_detail(exc)
    assert "http://***@mirror/x" in line and "Bearer ***" in detail
    assert not any(s in line + detail for s in SECRETS)
