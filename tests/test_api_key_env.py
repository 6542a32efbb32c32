"""A job file read through the Python API may name only the key variables the command line accepts."""

from __future__ import annotations

import pytest
import yaml

from damoc.errors import DamocError


def _job(tmp_path, model, key_env: str):
    task = tmp_path / "task.jsonl"
    task.write_text("".join(f'{{"question": "q{i}?", "answer": "a{i}"}}\n' for i in range(12)))
    job = {
        "job": "select",
        "task": {"path": str(task)},
        "candidates": [str(model)],
        "data": {
            "filter": None,
            "compress_rate": None,
            "rewrite": True,
            "rewrite_options": {"endpoint": "http://127.0.0.1:9/v1", "api_key_env": key_env},
        },
        "run": {"run_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path, job


def test_api_select_refuses_a_job_file_naming_another_variable(tmp_path, tiny_dirs, monkeypatch):
    import damoc

    monkeypatch.setenv("DATABASE_PASSWORD", "db-secret-value-2")
    monkeypatch.delenv("DAMOC_API_KEY_ENVS", raising=False)
    path, job = _job(tmp_path, tiny_dirs["llama"], "DATABASE_PASSWORD")
    with pytest.raises(DamocError, match="api_key_env 'DATABASE_PASSWORD' is not a variable"):
        damoc.select(path)
    assert not (tmp_path / "run").exists()
    # a dict built in the caller's own code is their choice: past the check, to the endpoint
    with pytest.raises(DamocError) as exc:
        damoc.select(job)
    assert "api_key_env" not in str(exc.value) and "db-secret-value-2" not in str(exc.value)
