"""Hub ids and hub datasets through the Hugging Face client's own cache, with the network off; `datasets`
directories keep their splits.

The caches are built as the hub client lays them out (``models--org--name/refs/main`` naming a revision,
``snapshots/<revision>/`` holding the files) in a temporary directory that ``HF_HUB_CACHE`` points to.
"""

import json
import shutil

import pytest

from damoc.errors import DamocError

REV = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_entry(cache, repo_id: str, files_from=None, repo_type: str = "model", files=None):
    """Put a repository into a hub cache directory as the hub client does; returns its snapshot dir."""
    org, name = repo_id.split("/")
    root = cache / f"{repo_type}s--{org}--{name}"
    snap = root / "snapshots" / REV
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REV)
    if files_from is not None:
        for f in files_from.iterdir():
            shutil.copy(f, snap / f.name)
    for rel, text in (files or {}).items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).write_text(text)
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_dirs):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    snap = hub_cache_entry(cache, "tiny-org/tiny-llama", tiny_dirs["llama"])
    return {"cache": cache, "snap": snap}


def _rows(prefix: str, n: int) -> list[dict]:
    return [
        {
            "id": f"{prefix}{i}",
            "question": f"Is compound {i} effective against condition {i % 5}?",
            "context": f"A trial of compound {i} on {20 + i} patients with condition {i % 5}.",
            "answer": ["yes", "no"][i % 2],
        }
        for i in range(n)
    ]


@pytest.fixture
def dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    path = tmp_path / "dd"
    DatasetDict(
        {
            "train": Dataset.from_list(_rows("t", 24)),
            "validation": Dataset.from_list(_rows("v", 6)),
            "test": Dataset.from_list(_rows("x", 5)),
        }
    ).save_to_disk(str(path))
    return path


def test_hub_id_loads_from_the_hub_cache_offline(hub):
    from damoc.model.arch import load_model, resolve_model

    assert resolve_model("tiny-org/tiny-llama") == hub["snap"]
    model, tok = load_model("tiny-org/tiny-llama")
    assert model.config.num_hidden_layers == 4 and tok("hi")["input_ids"]
    with pytest.raises(DamocError, match="not in the local Hugging Face cache, and the hub is off"):
        resolve_model("tiny-org/missing")


def test_unknown_hub_id_offline_is_one_line_and_writes_nothing(hub, run_cli, qa_file, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(
        "prune", "layers", "tiny-org/missing", "--data", qa_file, "--remove", "1", "--out", out
    )
    assert code == 2 and err.strip().count("\n") == 0
    assert "unknown model 'tiny-org/missing'" in err and not out.exists()
    run = tmp_path / "run"
    code, _, err = run_cli("select", "--task", qa_file, "-c", "tiny-org/missing", "--run-dir", run)
    assert code == 2 and err.strip().count("\n") == 0 and "tiny-org/missing" in err and not run.exists()


def test_offline_flag_turns_the_hub_off(monkeypatch, tmp_path, run_cli, qa_file):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    code, _, err = run_cli("layers", "score", "tiny-org/missing", "--data", qa_file, "--offline")
    assert code == 2 and "the hub is off" in err


def test_layers_score_by_hub_id(hub, run_cli, qa_file):
    code, out, err = run_cli("layers", "score", "tiny-org/tiny-llama", "--data", qa_file, "--samples", "4")
    assert code == 0, err
    assert "tokens from 4 texts" in out


def test_a_datasets_directory_keeps_its_own_splits(dataset_dict):
    from damoc.io.tasks import load_task, read_rows

    task = load_task(dataset_dict, max_rows=10)
    assert [e.id for e in task.dev] == [f"v{i}" for i in range(6)]  # its validation split, whole
    assert len(task.train) == 10 and all(e.id.startswith("t") for e in task.train)
    test = load_task(dataset_dict, splits={"dev": "test"})
    assert [e.id for e in test.dev] == [f"x{i}" for i in range(5)] and len(test.train) == 24
    with pytest.raises(DamocError, match="unknown split 'nope'.*its splits: train, validation, test"):
        load_task(dataset_dict, splits={"dev": "nope"})
    assert len(read_rows(dataset_dict)) == 35  # pooled reads keep every row, split named per row


def test_hub_dataset_from_the_hub_cache_offline(hub):
    from damoc.io.tasks import load_task

    files = {
        f"data/{split}.jsonl": "".join(json.dumps(r) + "\n" for r in _rows(split[0], n))
        for split, n in (("train", 12), ("validation", 4))
    }
    hub_cache_entry(hub["cache"], "tiny-org/qa", repo_type="dataset", files=files)
    task = load_task("tiny-org/qa")
    assert task.name == "qa" and [e.id for e in task.dev] == ["v0", "v1", "v2", "v3"]
    assert sorted(e.id for e in task.train) == sorted(f"t{i}" for i in range(12))
    with pytest.raises(DamocError, match="unknown dataset 'tiny-org/other'"):
        load_task("tiny-org/other")


def test_select_runs_a_hub_candidate_on_a_datasets_directory(hub, dataset_dict, run_cli, tmp_path):
    """End to end, network off: the candidate by hub id from the hub cache; dev = the data's own validation."""
    run = tmp_path / "run"
    code, out, err = run_cli(
        "select", "--task", dataset_dict, "-c", "tiny-org/tiny-llama", "--run-dir", run,
        "--filter", "none", "--no-compress", "--layer-fraction", "0", "--max-steps", "1",
        "--no-baselines", "--dev-rows", "6",
    )  # fmt: skip
    assert code == 0, err
    dev = [json.loads(line)["id"] for line in (run / "data" / "dev.jsonl").read_text().splitlines()]
    assert dev == [f"v{i}" for i in range(6)]
    board = json.loads((run / "leaderboard.json").read_text())
    rec = next(r for r in board["records"] if r["method"] == "proxy")
    assert rec["candidate"] == "tiny-org/tiny-llama" and rec["status"] == "ok", rec.get("error")
    bad = tmp_path / "bad"
    code, _, err = run_cli(
        "select", "--task", dataset_dict, "-c", "tiny-org/tiny-llama", "--run-dir", bad, "--split", "dev=nope"
    )
    assert code == 2 and err.strip().count("\n") == 0 and "unknown split 'nope'" in err and not bad.exists()


def test_eval_split_and_bad_split(hub, dataset_dict, run_cli, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli(
        "eval", "tiny-org/tiny-llama", "--general", "none", "--domain", dataset_dict, "--split", "test",
        "--samples", "2", "--length", "16", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.read_text())["n_task"] == 5
    bad = tmp_path / "bad.json"
    code, _, err = run_cli(
        "eval",
        "tiny-org/tiny-llama",
        "--general",
        "none",
        "--task",
        dataset_dict,
        "--split",
        "nope",
        "--out",
        bad,
    )
    assert code == 2 and "unknown split 'nope'" in err and not bad.exists()
