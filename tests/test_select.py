"""End-to-end `damoc select` on tiny random models saved as HF directories (one worker per candidate).

One run (module fixture) covers: a user task with its own field names, data filtering, layer removal,
proxy LoRA, zero-/few-shot baselines, validation against full fine-tuning, a broken candidate that is
recorded while the others finish, and the reports. Later tests resume it and reuse its ground truth.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from damoc.select.records import Leaderboard, UnitRecord

DATA = Path(__file__).parent / "data"


def _user_task(path, n=36):
    rows = []
    for i in range(n):
        verdict = ["yes", "no"][i % 2]
        rows.append(
            {
                "qid": f"u{i}",
                "ask": f"Does drug {i} lower blood pressure in group {i % 4}?",
                "passage": f"A study of {30 + i} adults found drug {i} changed pressure in group {i % 4}.",
                "reply": f"{verdict}, it did for drug {i}.",
                "verdict": verdict,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _job(tmp, cands, run_dir, cache_dir, scorer, **extra):
    data = {
        "job": "select",
        "task": {
            "path": str(tmp / "user_task.jsonl"),
            "fields": {
                "id": "qid",
                "question": "ask",
                "context": "passage",
                "answer": "reply",
                "label": "verdict",
            },
            "dev_size": 8,
        },
        "candidates": [str(c) for c in cands],
        "data": {
            "filter": "random",
            "budget": 0.5,
            "compress_rate": 0.5,
            "compress_options": {"scorer": str(scorer), "fidelity_floor": None, "max_length": 128},
        },
        "model": {"layer_fraction": 0.25, "calibration_rows": 4, "calibration_max_length": 64},
        "proxy": {"method": "lora", "max_steps": 2, "batch_size": 4, "max_length": 96},
        "eval": {"dev_rows": 6, "max_length": 96, "few_shot_k": 1, "few_shot_max_length": 192},
        "validate": {
            "enabled": True,
            "finetune": {"method": "full", "max_steps": 2, "batch_size": 4, "max_length": 96, "lr": 1e-4},
            "cache_dir": str(cache_dir),
        },
        "run": {"run_dir": str(run_dir), "threads": 1},
    }
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp / f"job_{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, tiny_dirs):
    from damoc.cli import main

    tmp = tmp_path_factory.mktemp("select")
    _user_task(tmp / "user_task.jsonl")
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "not-a-model"}')
    cands = [tiny_dirs["llama"], tiny_dirs["qwen2"], broken]
    run_dir = tmp / "run"
    job = _job(tmp, cands, run_dir, tmp / "gt", scorer=tiny_dirs["llama"])
    code = main(["select", str(job)])
    return {"tmp": tmp, "job": job, "run": run_dir, "code": code, "cands": [str(c) for c in cands]}


def _board(run_dir) -> Leaderboard:
    return Leaderboard.model_validate_json((run_dir / "leaderboard.json").read_text())


def test_run_produces_leaderboard_report_and_plot(main_run):
    assert main_run["code"] == 3  # the run finished, but the broken candidate's units failed
    run = main_run["run"]
    board = _board(run)
    llama, qwen, broken = main_run["cands"]
    assert board.metric == "answer_bpb" and board.higher_is_better is False
    assert len(board.records) == 12  # 3 candidates × (proxy, zero-shot, few-shot, full)
    ranked = [r for r in board.rows if r.rank is not None]
    assert sorted(r.rank for r in ranked) == [1, 2]
    assert {r.candidate for r in ranked} == {llama, qwen}
    for row in ranked:
        assert set(row.scores) == {"proxy", "zero_shot", "few_shot", "full"}
        assert all(isinstance(v, float) and v > 0 for v in row.scores.values())
        assert len(row.layers_removed) == 1  # 25% of 4 layers
    # the proxy ranking is by score, lower is better
    first, second = sorted(ranked, key=lambda r: r.rank)
    assert first.scores["proxy"] <= second.scores["proxy"]
    # the broken candidate is recorded with its error, for every method
    bad = next(r for r in board.rows if r.candidate == broken)
    assert bad.rank is None and set(bad.errors) == {"proxy", "zero_shot", "few_shot", "full"}
    assert "cannot load" in bad.errors["proxy"] or "not-a-model" in bad.errors["proxy"]
    from damoc.select.report import failure_hint

    hint = failure_hint(board)  # the CLI prints it: only the broken candidate, and how to retry it
    assert hint.startswith(f"failed: {broken} (") and "--resume --retry-failed" in hint
    assert (
        failure_hint(board.model_copy(update={"records": [r for r in board.records if r.status == "ok"]}))
        is None
    )
    # data stages: the user's field names were mapped, the filter kept half of the 28 training rows
    assert board.data.n_train == 28 and board.data.n_dev == 6 and board.data.n_proxy_train == 14
    proxy_rows = [json.loads(x) for x in (run / "data" / "proxy_train.jsonl").read_text().splitlines()]
    assert len(proxy_rows) == 14 and proxy_rows[0]["question"]
    calib_rows = [json.loads(x) for x in (run / "data" / "calibration.jsonl").read_text().splitlines()]
    assert calib_rows[0]["question"].startswith("Does drug")  # the user's 'ask' column
    assert board.data.achieved_rate is not None and board.data.achieved_rate < 0.9  # compressed
    assert board.data.tokens_after < board.data.tokens_before
    # validation: agreement for the proxy and both baselines, and a cost ratio
    assert {a.method for a in board.agreement} == {"proxy", "zero_shot", "few_shot"}
    assert all(a.n == 2 and a.top1_regret >= 0 for a in board.agreement)
    assert board.cost is not None and board.cost.full_tokens > 0 and board.cost.proxy_tokens > 0
    # where the time went: the stage totals add up to each sweep's wall time
    c = board.cost
    assert sum(c.full_stage_s.values()) == pytest.approx(c.full_wall_s, abs=0.05 * len(ranked))
    assert sum(c.proxy_stage_s.values()) == pytest.approx(c.proxy_wall_s, abs=0.05 * len(ranked))
    assert {"finetune", "eval"} <= set(c.full_stage_s) and {"data stages", "prune"} <= set(c.proxy_stage_s)
    assert c.projected_wall_ratio(1.0) == pytest.approx(c.wall_ratio)
    proxy_rec = next(r for r in board.records if r.candidate == llama and r.method == "proxy")
    assert proxy_rec.train_steps == 2 and proxy_rec.n_layers == 3 and proxy_rec.prep_tokens > 0
    # each unit's own memory peak (a worker holds torch and a model: well over 50 MB)
    assert all(r.peak_rss_mb > 50 for r in board.records if r.status == "ok" and not r.cached)
    if c.full_peak_rss_mb is not None:  # None when some ground truth came from an older cache record
        assert c.full_peak_rss_mb == max(
            r.peak_rss_mb for r in board.records if r.method == "full" and r.status == "ok"
        )
    report = (run / "report.md").read_text()
    assert "## Leaderboard" in report and "Kendall" in report and llama in report
    assert "Where the time went" in report and f"tends to **{c.wall_ratio_limit:.1f}x**" in report
    assert "| peak memory of one unit, GB (resident) |" in report
    from damoc.select.report import render_table

    assert f"tends to {c.wall_ratio_limit:.1f}x with more training rows" in render_table(board)
    assert (run / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert yaml.safe_load((run / "config.yaml").read_text())["candidates"] == main_run["cands"]
    for cand in board.rows:
        assert (run / "candidates" / cand.slug / "worker.log").is_file()


def test_resume_reruns_only_the_missing_record(main_run, run_cli):
    run = main_run["run"]
    board = _board(run)
    llama = main_run["cands"][0]
    slug = next(r.slug for r in board.rows if r.candidate == llama)
    before = {
        p: UnitRecord.load(p).finished_at for p in run.glob("candidates/*/*.json") if p.name != "job.json"
    }
    target = run / "candidates" / slug / "proxy.json"
    target.unlink()
    code, out, err = run_cli("select", str(main_run["job"]), "--resume")
    assert code == 3, err  # the broken candidate's failed units are kept (no --retry-failed)
    assert "rank" in out and llama in out
    assert out.strip().splitlines()[-1].startswith("4 of 12 units failed")
    after = {
        p: UnitRecord.load(p).finished_at for p in run.glob("candidates/*/*.json") if p.name != "job.json"
    }
    assert set(after) == set(before)
    changed = [p for p in after if after[p] != before[p]]
    assert changed == [target]
    # same seed, same score
    new = next(r for r in _board(run).records if r.candidate == llama and r.method == "proxy")
    old = next(r for r in board.records if r.candidate == llama and r.method == "proxy")
    assert new.score == pytest.approx(old.score, rel=1e-5)


def test_not_empty_run_dir_needs_resume(main_run, run_cli):
    code, _, err = run_cli("select", str(main_run["job"]))
    assert code == 2 and "is not empty (pass --resume" in err


def test_ground_truth_comes_from_the_cache(main_run):
    from damoc.config import load_job
    from damoc.select.pipeline import run_select

    cfg = load_job(main_run["job"])
    cfg.run.run_dir = str(main_run["tmp"] / "run_cached")
    board = run_select(cfg, methods=["full"])  # no worker starts: every full record is a cache hit
    full = [r for r in board.records if r.method == "full" and r.status == "ok"]
    assert len(full) == 2 and all(r.cached for r in full)
    orig = {r.candidate: r.score for r in _board(main_run["run"]).records if r.method == "full"}
    assert all(r.score == orig[r.candidate] for r in full)


def test_fixed_row_budget_end_to_end(main_run):
    """A proxy budget given as a row count: the report projects the ratio as growing, not to a limit."""
    from damoc.config import load_job
    from damoc.select.pipeline import run_select
    from damoc.select.report import render_table

    cfg = load_job(main_run["job"])
    cfg.candidates = cfg.candidates[:2]
    cfg.baselines = False
    cfg.data.budget = 5
    run = main_run["tmp"] / "run_rows"
    cfg.run.run_dir = str(run)
    board = run_select(cfg)  # the full fine-tunes are cache hits of the main run
    assert board.data.n_proxy_train == 5 and board.settings.budget == 5
    c = board.cost
    assert c.fixed_budget and c.growing_wall_s[1] == pytest.approx(board.data.stage_s["filter"])
    assert c.projected_wall_ratio(1.0) == pytest.approx(c.wall_ratio)
    assert c.projected_wall_ratio(4.0) > c.projected_wall_ratio(2.0) > c.wall_ratio
    report = (run / "report.md").read_text()
    assert "fixed number of rows" in report and f"**{c.projected_wall_ratio(2.0):.1f}x** with twice" in report
    assert "tends to" not in report
    assert f"about {c.projected_wall_ratio(2.0):.1f}x with twice the training rows" in render_table(board)


# --- bad input: one line, exit code 2, nothing written ------------------------------------------


@pytest.fixture
def bad(tmp_path, tiny_dirs, qa_file):
    return {"task": qa_file, "run": tmp_path / "bad_run", "llama": tiny_dirs["llama"]}


def _check_bad(run_cli, bad, *args, match):
    code, out, err = run_cli("select", "-o", bad["run"], *args)
    assert code == 2, (out, err)
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not bad["run"].exists()


def test_no_candidates(run_cli, bad):
    _check_bad(run_cli, bad, "-t", bad["task"], match="at least one candidate")


def test_unknown_candidate(run_cli, bad):
    _check_bad(
        run_cli,
        bad,
        "-t",
        bad["task"],
        "-c",
        "no-such-model-xyz",
        match="unknown candidate 'no-such-model-xyz'",
    )
    _check_bad(run_cli, bad, "-t", bad["task"], "-c", "./missing/dir", match="unknown candidate")


def test_duplicate_candidate(run_cli, bad):
    _check_bad(
        run_cli, bad, "-t", bad["task"], "-c", bad["llama"], "-c", f"{bad['llama']}/", match="listed twice"
    )


def test_too_few_dev_rows(run_cli, bad):
    _check_bad(
        run_cli, bad, "-t", bad["task"], "-c", bad["llama"], "--dev-size", "5", "--dev-rows", "10",
        match="the task has 5 dev rows but eval.dev_rows is 10",
    )  # fmt: skip


def test_metric_that_does_not_fit(run_cli, bad, tmp_path):
    rows = [json.loads(x) for x in bad["task"].read_text().splitlines()]
    nolabel = tmp_path / "nolabel.jsonl"
    nolabel.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "label"}) + "\n" for r in rows))
    _check_bad(
        run_cli, bad, "-t", nolabel, "-c", bad["llama"], "--metric", "label_acc", "--dev-rows", "8",
        match="metric 'label_acc' needs a label on every example",
    )  # fmt: skip
    _check_bad(run_cli, bad, "-t", bad["task"], "-c", bad["llama"], "-m", "acc", match="unknown metric 'acc'")


def test_missing_task_and_bad_job(run_cli, bad, tmp_path):
    _check_bad(run_cli, bad, "-c", bad["llama"], match="no task")
    job = tmp_path / "j.yaml"
    job.write_text(
        yaml.safe_dump({"job": "select", "task": {"path": str(bad["task"])}, "candidates": ["a"], "oops": 1})
    )
    _check_bad(run_cli, bad, job, match="oops: unknown key")


def test_list_metrics_and_help(run_cli):
    code, out, _ = run_cli("select", "--list-metrics")
    assert code == 0 and "answer_bpb" in out and "label_acc" in out
    code, out, _ = run_cli("select", "--help")
    assert code == 0 and all(f in out for f in ("--resume", "--validate", "--truth-lr", "--epochs"))


@pytest.mark.parametrize("job", ["examples/select_demo.yaml", "examples/select_small_models.yaml"])
def test_validate_command_accepts_example_jobs(run_cli, job):
    code, out, err = run_cli("validate", job)
    assert code == 0, err
    assert "valid 'select' job" in out


@pytest.mark.parametrize("example", ["select_small_models", "select_demo"])
def test_examples_proxy_matches_the_benchmarks_rows12_lf0_ep3_bf16_setting(example, monkeypatch):
    """Both examples run the proxy that met the selection targets; the demo scores fewer dev rows. Their
    precision is auto: on a CPU with native bf16 (as the benchmark's) it resolves to the benchmark's."""
    from damoc.config import load_job
    from damoc.select.config import resolve_auto

    monkeypatch.setenv("DAMOC_CPU_FLAGS", "avx512f avx512_bf16")

    job = load_job(f"examples/{example}.yaml")
    assert job.eval.precision == job.proxy.precision == "auto"
    job = resolve_auto(job.model_copy(update={"run": job.run.model_copy(update={"device": "cpu"})}))
    measured = load_job(DATA / "select_measured_rows12_lf0_ep3_bf16.yaml")  # the benchmark's setting, frozen
    from damoc.select.cache import SPEED_ONLY_FIELDS

    speed = set(SPEED_ONLY_FIELDS)  # the example takes the product's faster path: the same computation
    proxy_skip = speed
    assert job.model.layer_fraction == measured.model.layer_fraction == 0.0
    assert job.proxy.model_dump(exclude=proxy_skip) == measured.proxy.model_dump(exclude=proxy_skip)
    assert job.data == measured.data
    assert job.eval.precision == measured.eval.precision == "bf16"
    if example == "select_demo":
        return
    assert job.validate_.lr_grid == measured.validate_.lr_grid
    assert job.validate_.eval_precision == measured.validate_.eval_precision == "fp32"
    assert job.validate_.finetune.model_dump(
        exclude={"lr", *speed}
    ) == measured.validate_.finetune.model_dump(exclude={"lr", *speed})


# --- ray backend ----------------------------------------------------------------------------------


def test_ray_backend_matches_local(main_run, tiny_dirs):
    pytest.importorskip("ray")
    from damoc.config import load_job
    from damoc.select.pipeline import run_select

    cfg = load_job(main_run["job"])
    cfg.candidates = [str(tiny_dirs["llama"])]
    cfg.baselines = False
    cfg.validate_.enabled = False
    cfg.run.run_dir = str(main_run["tmp"] / "run_ray")
    cfg.run.backend = "ray"
    board = run_select(cfg)
    ray_score = board.rows[0].scores["proxy"]
    local = next(r for r in _board(main_run["run"]).rows if r.candidate == str(tiny_dirs["llama"]))
    assert ray_score == pytest.approx(local.scores["proxy"], rel=1e-5)
    shutil.rmtree(cfg.run.run_dir)


def test_bad_stage_options(run_cli, bad):
    _check_bad(
        run_cli,
        bad,
        "-t",
        bad["task"],
        "-c",
        bad["llama"],
        "--filter",
        "randm",
        match="did you mean 'random'",
    )
    _check_bad(
        run_cli,
        bad,
        "-t",
        bad["task"],
        "-c",
        bad["llama"],
        "--merge",
        "xx",
        match="unknown merge method 'xx'",
    )


def test_rewrite_stage_plumbing(monkeypatch, qa_file):
    """The rewrite stage hands compressed + original examples to the rewriter and keeps its output."""
    import damoc.data.compress.rewrite as rw
    from damoc.io.tasks import load_examples
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_rewrite_stage
    from damoc.select.records import DataRecord

    seen = {}

    def fake_rewrite(compressed, original, cfg, rewriter):
        seen.update(cfg=cfg, n=len(compressed), same=[c.id for c in compressed] == [o.id for o in original])
        out = [type(c)(**{**c.__dict__, "context": "fluent " + c.context}) for c in compressed]
        return rw.RewriteResult(out, [], rw.RewriteSummary.from_records([]))

    monkeypatch.setattr(rw, "rewrite_examples", fake_rewrite)
    monkeypatch.setattr(rw, "build_rewriter", lambda cfg: None)
    cfg = SelectConfig.model_validate(
        {
            "task": {"path": str(qa_file)},
            "candidates": ["x"],
            "data": {"rewrite": True, "rewrite_options": {"max_rounds": 2}},
        }
    )
    ex = load_examples(qa_file)[:3]
    rec = DataRecord(task="t", fingerprint="f", n_train=3, n_dev=0, n_proxy_train=0)
    out = run_rewrite_stage(cfg, ex, ex, rec)
    assert (
        seen["n"] == 3
        and seen["same"]
        and seen["cfg"].max_rounds == 2
        and seen["cfg"].rewriter == "smollm2-135m"
    )
    assert all(e.context.startswith("fluent ") for e in out) and "rewrite" in rec.stage_s


def test_changed_settings_rerun_only_the_units_they_affect(qa_file, tmp_path):
    from damoc.io.tasks import load_task
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import DataStage, attach_spec_hashes, plan_units
    from damoc.select.records import DataRecord

    def hashes(**proxy):
        cfg = SelectConfig.model_validate(
            {
                "task": {"path": str(qa_file)},
                "candidates": ["a"],
                "proxy": proxy,
                "validate": {"enabled": True},
            }
        )
        task = load_task(qa_file)
        rec = DataRecord(task="t", fingerprint="f", n_train=1, n_dev=1, n_proxy_train=1, config_hash="d")
        stage = DataStage(rec, *(tmp_path / n for n in ("a", "b", "c", "d", "e")))
        units = plan_units(cfg, task, stage, tmp_path)
        attach_spec_hashes(units, stage)
        return {u.method: u.spec_hash for u in units}

    a, b = hashes(lr=1e-4), hashes(lr=2e-4)
    assert a["proxy"] != b["proxy"]
    assert all(a[m] == b[m] for m in ("zero_shot", "few_shot", "full"))
    assert (
        hashes() == b
    )  # 2e-4 is the default: spelling it out (or a release adding defaulted fields) reruns nothing


def test_run_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from damoc.errors import DamocError
    from damoc.select.lock import lock_path, run_lock

    run = tmp_path / "runs" / "r1"
    with run_lock(run) as path:
        assert path == lock_path(run) and path.is_file() and not run.exists()
        with pytest.raises(DamocError, match="in use by another damoc select"), run_lock(run):
            pass
    assert not path.exists()  # released
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with run_lock(run):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_select_on_a_run_dir_in_use_fails_clearly(main_run, run_cli):
    import os
    import socket

    from damoc.select.lock import lock_path

    path = lock_path(main_run["run"])
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    try:
        code, _, err = run_cli("select", str(main_run["job"]), "--resume")
    finally:
        path.unlink()
    assert code == 2 and "is in use by another damoc select" in err


# --- ground truth over a learning-rate grid ---------------------------------------------------------


def _full(cand, lr, score, wall=1.0, status="ok"):
    return UnitRecord(
        candidate=cand,
        slug=cand,
        method="full",
        status=status,
        metric="answer_nll",
        higher_is_better=False,
        score=score if status == "ok" else None,
        lr=lr,
        wall_s=wall,
    )


@pytest.mark.parametrize("hib", [False, True])
def test_best_full_keeps_each_candidates_best_rate(hib):
    from damoc.select.report import best_full

    recs = [
        _full("a", 1e-5, 2.0),
        _full("a", 5e-5, 1.0),
        _full("b", 1e-5, 0.5),
        _full("b", 5e-5, 3.0),
        _full("c", 1e-5, None, status="failed"),
        _full("c", 5e-5, 4.0),
        _full("d", 1e-5, None, status="failed"),
    ]
    proxy = recs[0].model_copy(update={"method": "proxy", "lr": 2e-4})
    out = best_full([proxy, *recs], hib)
    full = {r.candidate: r for r in out if r.method == "full"}
    assert out[0] is proxy and len(out) == 5
    if hib:
        assert full["a"].lr == 1e-5 and full["b"].lr == 5e-5
    else:
        assert full["a"].lr == 5e-5 and full["b"].lr == 1e-5
    assert full["c"].lr == 5e-5 and full["c"].status == "ok"  # a failed rate does not hide a good one
    assert full["d"].status == "failed"  # no rate worked: the failure stays visible


def test_lr_grid_is_validated():
    from pydantic import ValidationError

    from damoc.select.config import ValidateSettings

    assert [f.lr for f in ValidateSettings(lr_grid=[1e-5, 5e-5]).finetunes()] == [1e-5, 5e-5]
    assert [f.lr for f in ValidateSettings().finetunes()] == [2e-5]
    for bad in ([], [0.0], [1e-5, 1e-5]):
        with pytest.raises(ValidationError):
            ValidateSettings(lr_grid=bad)


def test_bad_truth_lr_is_one_line(run_cli, bad):
    args = ("-t", bad["task"], "-c", bad["llama"], "--validate", "--truth-lr", "1e-5", "--truth-lr", "0")
    _check_bad(run_cli, bad, *args, match="lr_grid must list at least one positive learning rate")


def test_lr_grid_ground_truth_end_to_end(main_run):
    from damoc.config import load_job
    from damoc.select.pipeline import run_select

    cfg = load_job(main_run["job"])
    cfg.candidates = cfg.candidates[:2]
    cfg.baselines = False
    run = main_run["tmp"] / "run_grid"
    cfg.run.run_dir = str(run)
    cfg.validate_.lr_grid = [1e-4, 3e-2]
    board = run_select(cfg)
    full = [r for r in board.records if r.method == "full"]
    assert len(full) == 4 and all(r.status == "ok" for r in full)
    # the 1e-4 rate is the single-rate run of the main fixture: same cache key, so a cache hit
    assert {r.lr for r in full if r.cached} == {1e-4} and {r.lr for r in full if not r.cached} == {3e-2}
    best = {}
    for cand in cfg.candidates:
        mine = [r for r in full if r.candidate == cand]
        best[cand] = min(mine, key=lambda r: r.score)
        row = next(r for r in board.rows if r.candidate == cand)
        assert row.scores["full"] == best[cand].score
        assert board.settings.truth_lr[cand] == best[cand].lr
        slug = best[cand].slug
        assert (run / "candidates" / slug / "full@lr0.0001.json").is_file()
        assert (run / "candidates" / slug / "full@lr0.03.json").is_file()
    assert board.cost.full_wall_s == pytest.approx(sum(r.wall_s for r in best.values()))
    assert [a.method for a in board.agreement] == ["proxy"]
    report = (run / "report.md").read_text()
    assert "over the grid 0.0001, 0.03" in report and "lr from the grid below" in report


def test_failed_full_unit_keeps_its_rate():
    from damoc.select.config import SelectEval
    from damoc.select.worker import UnitSpec, failed_record
    from damoc.train.finetune import FinetuneConfig

    spec = UnitSpec(
        candidate="c",
        slug="c",
        method="full",
        record_path="r.json",
        dev_path="d.jsonl",
        eval=SelectEval(),
        finetune=FinetuneConfig(method="full", lr=3e-5),
    )
    rec = failed_record(spec, "killed")
    assert rec.status == "failed" and rec.lr == 3e-5


def _board_of(scores: dict[str, dict[str, float]], hib=False) -> Leaderboard:
    from damoc.select.records import DataRecord, Row

    rows = [Row(rank=None, candidate=c, slug=c, scores=s) for c, s in scores.items()]
    data = DataRecord(task="t", fingerprint="f", n_train=1, n_dev=1, n_proxy_train=1)
    return Leaderboard(
        task="t", metric="m", higher_is_better=hib, candidates=list(scores), rows=rows, data=data, records=[]
    )


def test_report_flags_a_proxy_winner_the_baselines_disagree_with():
    from damoc.select.report import disagreement, render_table

    agree = _board_of(
        {
            "a": {"proxy": 1.0, "zero_shot": 2.0, "few_shot": 1.5},
            "b": {"proxy": 2.0, "zero_shot": 3.0, "few_shot": 2.5},
        }
    )
    assert disagreement(agree) is None
    split = _board_of(
        {
            "a": {"proxy": 1.0, "zero_shot": 2.0, "few_shot": 1.5},
            "b": {"proxy": 2.0, "zero_shot": 1.0, "few_shot": 0.5},
        }
    )
    note = disagreement(split)
    assert note and "proxy picks a" in note and "zero-shot and few-shot baseline picks b" in note
    assert note in render_table(split)
    # higher is better flips every pick: the proxy then picks b, both baselines a
    flipped = disagreement(_board_of({r.candidate: r.scores for r in split.rows}, hib=True))
    assert flipped and "proxy picks b" in flipped and "baseline picks a" in flipped
    # baselines that disagree among themselves say nothing
    mixed = _board_of(
        {
            "a": {"proxy": 1.0, "zero_shot": 2.0, "few_shot": 0.5},
            "b": {"proxy": 2.0, "zero_shot": 1.0, "few_shot": 2.5},
        }
    )
    assert disagreement(mixed) is None


def test_data_stages_use_the_runs_thread_count(qa_file, tmp_path, monkeypatch, tiny_dirs):
    import torch

    import damoc.select.pipeline as pl
    from damoc.select.config import SelectConfig

    seen = []

    def fake_filter(cfg, examples, rec):
        seen.append(torch.get_num_threads())
        return list(examples)

    monkeypatch.setattr(pl, "run_filter_stage", fake_filter)
    cfg = SelectConfig.model_validate(
        {
            "task": {"path": str(qa_file)},
            "candidates": [str(tiny_dirs["llama"])],  # never loaded: the backend is stubbed
            "data": {"compress_rate": None},
            "eval": {"dev_rows": 4},
            "baselines": False,
            "run": {"run_dir": str(tmp_path / "run"), "threads": 1},
        }
    )
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(
            pl, "make_backend", lambda cfg: type("B", (), {"run": lambda self, jobs, cb: None})()
        )
        pl.run_select(cfg)
        assert seen == [1] and torch.get_num_threads() == 2  # restored after the data stages
    finally:
        torch.set_num_threads(old)


def test_worker_reads_rows_with_unicode_line_separators(tmp_path):
    """JSON keeps U+2028/U+2029/U+0085 raw inside strings; the worker's reader must not split on them."""
    from damoc.select.worker import read_examples

    text = "first paragraph\u2029second\u2028line\x85next\x1cend"
    path = tmp_path / "train.jsonl"
    rows = [{"id": "a", "question": text, "answer": "yes"}, {"id": "b", "question": "q2", "answer": "no"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    got = read_examples(path)
    assert [e.id for e in got] == ["a", "b"] and got[0].question == text


def test_extra_metrics_are_scored_by_every_unit(qa_file, tmp_path, tiny_dirs):
    """One fine-tune, several scores: each unit's record keeps the extra metric's value and per-row scores,
    and a truth asked for with an extra metric does not reuse a cached truth made without it."""
    from damoc.select.config import SelectConfig
    from damoc.select.pipeline import run_select

    def cfg(extra):
        return SelectConfig.model_validate(
            {
                "task": {"path": str(qa_file), "dev_size": 6},
                "candidates": [str(tiny_dirs["llama"])],
                "data": {"budget": 4, "compress_rate": None},
                "model": {"layer_fraction": 0.0},
                "proxy": {"max_steps": 1, "max_length": 64},
                "eval": {"metric": "label_acc", "dev_rows": 6, "max_length": 64, "extra_metrics": extra},
                "validate": {
                    "enabled": True,
                    "finetune": {"max_steps": 1, "max_length": 64},
                    "cache_dir": str(tmp_path / "gt"),
                },
                "baselines": False,
                "run": {"run_dir": str(tmp_path / f"run{len(extra)}"), "threads": 1},
            }
        )

    plain = run_select(cfg([]))
    board = run_select(cfg(["answer_bpb"]))
    for rec in board.records:
        assert rec.status == "ok" and set(rec.extra) == {"answer_bpb"}
        bpb = rec.extra["answer_bpb"]
        assert len(bpb.per_example) == 6 and bpb.higher_is_better is False and bpb.value > 0
        assert len(rec.per_example) == 6 and rec.metric == "label_acc"
    full = [r for r in board.records if r.method == "full"]
    assert full and not full[0].cached  # the plain run's truth had no answer_bpb: not reused
    assert all(not r.extra for r in plain.records)
    with pytest.raises(ValueError, match="repeats the main metric"):
        SelectConfig.model_validate({**cfg([]).dump(), "eval": {"metric": "f1", "extra_metrics": ["f1"]}})
