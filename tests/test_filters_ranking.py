"""`damoc filter --compare --candidates`: filters judged by the proxy ranking they keep (tiny models)."""

import json

import pytest
import yaml
from scipy.stats import kendalltau

from damoc.errors import DamocError
from damoc.select.filter_compare import WHOLE, load_truth
from damoc.select.ranking import agreement
from damoc.select.records import UnitRecord


def test_agreement_against_known_rankings():
    true = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert agreement("proxy", {"a": 0.9, "b": 0.5, "c": 0.1}, true, True).kendall == pytest.approx(1.0)
    rev = agreement("proxy", {"a": 0.1, "b": 0.5, "c": 0.9}, true, True)
    assert rev.kendall == pytest.approx(-1.0) and not rev.top1_hit and rev.top1_regret == pytest.approx(2.0)
    one_swap = agreement("proxy", {"a": 0.9, "b": 0.1, "c": 0.5}, true, True)
    assert one_swap.kendall == pytest.approx(1 / 3) and one_swap.top1_hit


def _record(cand: str, score: float | None, lr: float, status: str = "ok", n_train: int = 10) -> UnitRecord:
    return UnitRecord(
        candidate=cand, slug=cand, method="full", status=status, metric="answer_bpb", higher_is_better=False,
        score=score, lr=lr, n_train=n_train, n_dev=5,
    )  # fmt: skip


def test_load_truth_formats_and_bad_input(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"scores": {"a": 1.0, "b": 2.0}, "higher_is_better": False}))
    assert load_truth(f) == ({"a": 1.0, "b": 2.0}, False)
    d = tmp_path / "records"
    d.mkdir()
    for i, rec in enumerate(
        [
            _record("a", 0.9, 1e-5),
            _record("a", 0.7, 5e-5),
            _record("b", 0.8, 1e-5),
            _record("b", None, 5e-5, "failed"),
        ]
    ):
        rec.save(d / f"{i}.json")
    assert load_truth(d) == ({"a": 0.7, "b": 0.8}, False)  # each candidate's best rate (lower is better)
    _record("a", 0.5, 1e-5, n_train=99).save(d / "other_task.json")
    with pytest.raises(DamocError, match="different sizes"):
        load_truth(d)
    with pytest.raises(DamocError, match="does not exist"):
        load_truth(tmp_path / "nothing.json")
    f.write_text(json.dumps({"a": 1}))
    with pytest.raises(DamocError, match="a truth is"):
        load_truth(f)


@pytest.fixture(scope="module")
def compared(tmp_path_factory, tiny_dirs):
    """One comparison on three tiny candidates: the whole split and one filter (6 proxy fine-tunes)."""
    from damoc.cli import main

    tmp = tmp_path_factory.mktemp("rank")
    rows = []
    for i in range(40):
        lab = ["yes", "no", "maybe"][i % 3]
        rows.append({"id": f"q{i}", "question": f"Is compound {i} effective?", "context": f"Trial {i}.",
                     "answer": f"The answer is {lab}.", "label": lab})  # fmt: skip
    task = tmp / "task.jsonl"
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {
        "job": "select",
        "task": {"path": str(task)},
        "candidates": ["x"],
        "data": {"compress_rate": None},
        "model": {"layer_fraction": 0.0},
        "proxy": {"method": "lora", "max_steps": 2, "batch_size": 4, "max_length": 64, "lr": 1e-3},
        "eval": {"dev_rows": 8, "max_length": 64, "batch_size": 8},
        "run": {"threads": 1, "progress_s": 0},
    }
    (tmp / "select.yaml").write_text(yaml.safe_dump(job))
    cands = ",".join(str(tiny_dirs[a]) for a in ("llama", "qwen2", "gemma3_text"))
    base = ["filter", str(task), "--compare", "random", "--candidates", cands, "--budget", "8",
            "--dev-size", "8", "--select-job", str(tmp / "select.yaml"), "--out", str(tmp / "cmp")]  # fmt: skip
    assert main(base) == 0
    first = json.loads((tmp / "cmp" / "ranking.json").read_text())
    return {"tmp": tmp, "base": base, "first": first, "main": main}


def test_compare_ranks_candidates_on_each_subset(compared):
    rep = compared["first"]
    tmp = compared["tmp"]
    assert [r["method"] for r in rep["rows"]] == [WHOLE, "random"]
    whole = rep["rows"][0]
    assert whole["rows"] == 32 and rep["n_dev"] == 8
    for r in rep["rows"][1:]:
        assert r["rows"] == 8 and len(r["ranking"]) == 3 and r["proxy_s"] > 0
        # tau against the whole-split ranking, recomputed from the sweeps' own records
        recs = [
            UnitRecord.load(p)
            for p in (tmp / "cmp" / "runs" / r["method"] / "candidates").glob("*/proxy.json")
        ]
        ref = [UnitRecord.load(p) for p in (tmp / "cmp" / "runs" / WHOLE / "candidates").glob("*/proxy.json")]
        by_c = {x.candidate: x.score for x in recs}
        ref_c = {x.candidate: x.score for x in ref}
        names = sorted(by_c)
        tau = kendalltau([by_c[c] for c in names], [ref_c[c] for c in names]).statistic
        assert r["vs_whole"]["kendall"] == pytest.approx(tau)
        assert r["scores"] == pytest.approx(by_c)
    md = (tmp / "cmp" / "ranking.md").read_text()
    assert "| random | distribution | 8 |" in md and (tmp / "cmp" / "ranking.png").stat().st_size > 0


def test_compare_against_a_known_truth_reuses_the_sweeps(compared, monkeypatch):
    import damoc.select.pipeline as pipeline

    tmp, base, main, first = compared["tmp"], compared["base"], compared["main"], compared["first"]
    whole = first["rows"][0]["scores"]
    truth = tmp / "truth.json"
    truth.write_text(json.dumps({"scores": whole, "higher_is_better": False}))

    def no_backend(*a, **k):
        raise AssertionError("every sweep should be reused")

    monkeypatch.setattr(pipeline, "make_backend", no_backend)
    assert main([*base, "--truth", str(truth), "--resume"]) == 0
    rep = json.loads((tmp / "cmp" / "ranking.json").read_text())
    assert rep["rows"][0]["vs_truth"]["kendall"] == pytest.approx(1.0)  # the truth is the whole-split order
    for r in rep["rows"][1:]:
        assert r["vs_truth"]["kendall"] == pytest.approx(r["vs_whole"]["kendall"])
    truth.write_text(json.dumps({"scores": {c: -s for c, s in whole.items()}, "higher_is_better": False}))
    assert main([*base, "--truth", str(truth), "--resume"]) == 0
    rep = json.loads((tmp / "cmp" / "ranking.json").read_text())
    assert rep["rows"][0]["vs_truth"]["kendall"] == pytest.approx(-1.0)  # the reversed order
    assert rep["rows"][0]["vs_truth"]["top1_hit"] is False
    assert "τ vs truth" in (tmp / "cmp" / "ranking.md").read_text()


def test_compare_bad_input(compared, run_cli, tmp_path):
    base = compared["base"]
    code, _, err = run_cli(*base)
    assert code == 2 and "not empty (pass --resume" in err
    code, _, err = run_cli("filter", "pubmedqa", "--candidates", "smollm2-135m", "--out", tmp_path / "o")
    assert code == 2 and "go with --compare and --candidates" in err
    truth = tmp_path / "t.json"
    truth.write_text(json.dumps({"scores": {"someone": 1.0}, "higher_is_better": False}))
    code, _, err = run_cli(*base[:-1], tmp_path / "new", "--truth", truth)
    assert code == 2 and "the truth has no score for" in err and not (tmp_path / "new").exists()


def test_select_job_credentials_reach_the_comparison_unmasked(tmp_path, monkeypatch):
    """A --select-job's endpoint URL is used as written (masking is for what is written to disk)."""
    import damoc.select.filter_compare as fc
    from damoc.cli.filter import _ranking_compare

    url = "http://user:s3cret@127.0.0.1:9/v1"
    job = {
        "job": "select",
        "task": {"path": "pubmedqa"},
        "candidates": ["x"],
        "data": {"rewrite_options": {"endpoint": url}},
    }
    (tmp_path / "select.yaml").write_text(yaml.safe_dump(job))
    seen = {}

    class Stop(Exception):
        pass

    def capture(cfg, resume=False):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(fc, "run_filter_ranking", capture)
    with pytest.raises(Stop):
        _ranking_compare(
            "pubmedqa", "random", "a,b", 8, tmp_path / "cmp", 0, {}, 0.2, None, None, None, {}, None,
            tmp_path / "select.yaml", False,
        )  # fmt: skip
    assert seen["cfg"].select.data.rewrite_options["endpoint"] == url


def test_ctrl_c_in_a_ranking_comparison_says_how_to_resume(monkeypatch, capsys):
    import damoc.cli.filter as cli_filter
    from damoc.cli import main

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_filter, "_ranking_compare", ctrl_c)
    argv = ["filter", "pubmedqa", "--compare", "random", "--candidates", "a,b", "--out", "cmp"]
    assert main(argv) == 130
    assert "run the same command with --resume" in capsys.readouterr().err
