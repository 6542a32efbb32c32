"""The adaptive proxy: its schedule and decisions (known answers), and end to end on tiny models."""

import json

import pytest
import torch
import yaml

from damoc.select.adaptive import (
    Resources,
    estimate_train_tokens,
    estimate_wall_s,
    final_order,
    over_budget,
    schedule,
    survivors,
)
from damoc.select.config import AdaptiveSettings
from damoc.select.records import Leaderboard


def test_schedule_grows_to_the_full_proxy_and_stops_there():
    full = Resources(rows=12, epochs=3.0, dev_rows=20)
    s = AdaptiveSettings()  # 4 rows, 1 epoch, 10 dev rows, × 2 per round, 3 rounds at most
    assert schedule(s, full) == [Resources(4, 1.0, 10), Resources(8, 2.0, 20), full]
    assert schedule(s.model_copy(update={"rounds": 2}), full) == [Resources(4, 1.0, 10), full]
    assert schedule(s.model_copy(update={"rounds": 1}), full) == [full]
    # a full proxy no larger than the start: one round
    assert schedule(s, Resources(rows=3, epochs=1.0, dev_rows=8)) == [Resources(3, 1.0, 8)]
    # growth 3, a larger proxy: the rounds reach it before the cap
    big = Resources(rows=100, epochs=1.0, dev_rows=60)
    got = schedule(s.model_copy(update={"growth": 3.0, "rounds": 6}), big)
    assert got == [Resources(4, 1.0, 10), Resources(12, 1.0, 30), Resources(36, 1.0, 60), big]


def test_survivors_keep_the_leader_and_every_candidate_within_noise():
    order = ["a", "b", "c", "d"]  # best score first
    kept, dropped = survivors(order, {"b": False, "c": True, "d": False})
    assert kept == ["a", "b", "d"] and dropped == ["c"]
    # plain halving on top: at most half of them
    kept, dropped = survivors(order, {"b": False, "c": True, "d": False}, keep_fraction=0.5)
    assert kept == ["a", "b"] and dropped == ["c", "d"]
    assert survivors(["a"], {}) == (["a"], [])


def test_final_order_puts_later_rounds_first():
    rounds = [
        [
            ("a", 1.0, "leader"),
            ("b", 1.1, "kept"),
            ("c", 3.0, "dropped"),
            ("e", 2.0, "dropped"),
            ("f", None, "failed"),
        ],
        [("b", 0.9, "leader"), ("a", 0.95, "kept"), ("g", 1.5, "behind"), ("d", None, "failed")],
    ]
    assert final_order(rounds, higher_is_better=False) == ["b", "a", "g", "e", "c"]
    assert final_order(rounds, higher_is_better=True)[:3] == ["g", "a", "b"]


def test_cost_estimates_scale_the_parts_that_grow():
    prev, nxt = Resources(4, 1.0, 10), Resources(8, 2.0, 20)
    # 10 s load (stays) + 4 s fine-tune (× 4: rows × epochs) + 2 s scoring (× 2: dev rows)
    assert estimate_wall_s(prev, nxt, 16.0, {"load": 10.0, "finetune": 4.0, "eval": 2.0}) == pytest.approx(
        30.0
    )
    assert estimate_train_tokens(prev, nxt, 1000) == pytest.approx(4000)
    assert over_budget(50.0, 30.0, 60.0) and not over_budget(50.0, 30.0, None) and not over_budget(10, 30, 60)


def test_adaptive_is_off_by_default_and_auto_from_four_candidates():
    assert not AdaptiveSettings().active(8)
    s = AdaptiveSettings(enabled=None)
    assert not s.active(3) and s.active(4) and s.active(8)
    assert AdaptiveSettings(enabled=True).active(2) and not AdaptiveSettings(enabled=True).active(1)
    assert not AdaptiveSettings(enabled=False).active(8)


# --- end to end on tiny models ------------------------------------------------------------------------


def _task(path, n=40):
    rows = []
    for i in range(n):
        verdict = ["yes", "no"][i % 2]
        rows.append(
            {
                "id": f"u{i}",
                "question": f"Does drug {i} lower blood pressure in group {i % 4}?",
                "context": f"A study of {30 + i} adults found drug {i} changed pressure in group {i % 4}.",
                "answer": f"{verdict}, it did for drug {i}.",
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def cands(tmp_path_factory, tiny_dirs):
    """Three tiny models and one that is clearly worse (its output head scaled: confident and wrong)."""
    from transformers import AutoModelForCausalLM

    from damoc.testing import save_tiny_model

    root = tmp_path_factory.mktemp("adaptive")
    bad = save_tiny_model(root / "bad", "llama", n_layers=4, seed=3)
    model = AutoModelForCausalLM.from_pretrained(bad)
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(bad)
    other = save_tiny_model(root / "llama_s2", "llama", n_layers=4, seed=2)
    return {"root": root, "list": [str(tiny_dirs["llama"]), str(tiny_dirs["qwen2"]), str(other), str(bad)]}


def _job(cands, run_dir, **adaptive):
    data = {
        "job": "select",
        "task": {"path": str(_task(cands["root"] / "task.jsonl")), "dev_size": 12},
        "candidates": cands["list"],
        "data": {"filter": "random", "budget": 8, "compress_rate": None},
        "model": {"layer_fraction": 0.0},
        "proxy": {"method": "lora", "epochs": 2.0, "batch_size": 4, "max_length": 96},
        "eval": {"dev_rows": 12, "max_length": 96},
        "baselines": False,
        "adaptive": {"enabled": True, "start_rows": 4, "start_dev_rows": 6, **adaptive},
        "run": {"run_dir": str(run_dir), "threads": 1},
    }
    path = cands["root"] / f"job_{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _units_run(cand_dir):
    """The record files a candidate's worker wrote."""
    return sorted(p.name for p in cand_dir.glob("proxy*.json"))


@pytest.fixture(scope="module")
def adaptive_run(cands, tmp_path_factory):
    from damoc.cli import main

    run = tmp_path_factory.mktemp("runs") / "adaptive"
    job = _job(cands, run, start_epochs=1.0)
    code = main(["select", str(job)])
    return {"run": run, "job": job, "code": code}


def _board(run) -> Leaderboard:
    return Leaderboard.model_validate_json((run / "leaderboard.json").read_text())


def test_a_clearly_worse_candidate_is_dropped_in_round_one_and_never_trained_again(adaptive_run, cands):
    assert adaptive_run["code"] == 0
    run = adaptive_run["run"]
    board = _board(run)
    trail = board.adaptive
    assert trail is not None and trail.planned == [(4, 1.0, 6), (8, 2.0, 12)]
    bad = cands["list"][3]
    first = {e.candidate: e for e in trail.rounds[0].entries}
    assert set(first) == set(cands["list"])  # every candidate starts
    assert first[bad].status == "dropped" and first[bad].ci_low > 0  # clearly behind the leader
    assert all(bad not in {e.candidate for e in r.entries} for r in trail.rounds[1:])
    slug = next(r.slug for r in board.rows if r.candidate == bad)
    assert _units_run(run / "candidates" / slug) == ["proxy@r0.json"]  # no later round, no full proxy
    job = json.loads((run / "candidates" / slug / "job.json").read_text())
    assert [u["record_path"].rsplit("/", 1)[1] for u in job["units"]] == ["proxy@r0.json"]
    # round 0 is the small proxy: 4 rows, 1 epoch, 6 dev rows
    rec = json.loads((run / "candidates" / slug / "proxy@r0.json").read_text())
    assert rec["n_train"] == 4 and rec["n_dev"] == 6 and rec["train_steps"] == 1
    # the leaderboard ranks it last, as dropped; the rounds' costs add up in the proxy sweep
    row = next(r for r in board.rows if r.candidate == bad)
    assert row.rank == len(cands["list"]) and row.dropped and row.round == 0
    assert trail.wall_s == pytest.approx(sum(r.proxy_wall_s or 0 for r in board.rows))
    # report.md shows the trail; the terminal table the round and the drop
    md = (run / "report.md").read_text()
    assert "## Adaptive proxy: the rounds" in md and "| dropped |" in md
    assert (run / "leaderboard.png").read_bytes()[:4] == b"\x89PNG"
    assert (run / "adaptive.json").is_file()


def test_survivors_of_the_last_round_ran_the_full_proxy(adaptive_run):
    board = _board(adaptive_run["run"])
    trail = board.adaptive
    last = trail.rounds[-1]
    if trail.stop == "last_round":  # tiny random models may also separate early; then no full proxy ran
        assert (last.rows, last.epochs, last.dev_rows) == (8, 2.0, 12)
        for e in last.entries:
            slug = next(r.slug for r in board.rows if r.candidate == e.candidate)
            assert (adaptive_run["run"] / "candidates" / slug / "proxy.json").is_file()
    assert board.rows[0].rank == 1 and board.rows[0].candidate == trail.ranking[0]


def test_resume_after_a_kill_reruns_only_the_missing_round_unit(adaptive_run, run_cli):
    run = adaptive_run["run"]
    board = _board(run)
    trail = board.adaptive
    # a unit of the last round that ran is lost, as a kill mid-round leaves it
    victim = trail.rounds[-1].entries[0]
    before = {p: p.stat().st_mtime_ns for p in run.glob("candidates/*/proxy*.json")}
    (run / victim.record).unlink()
    code, out, err = run_cli("select", str(adaptive_run["job"]), "--resume")
    assert code == 0, err
    after = {p: p.stat().st_mtime_ns for p in run.glob("candidates/*/proxy*.json")}
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before[p]] == [run / victim.record]
    again = _board(run).adaptive
    assert again.ranking == trail.ranking and again.stop == trail.stop
    assert [[e.status for e in r.entries] for r in again.rounds] == [
        [e.status for e in r.entries] for r in trail.rounds
    ]


def test_a_budget_stops_before_a_round_that_would_not_fit(cands, tmp_path):
    from damoc.config import load_job
    from damoc.select.pipeline import run_select

    cfg = load_job(_job(cands, tmp_path / "budget", budget_s=1.0))
    # two tiny models with the same weights (same seed): tied in round 0, so a round 1 would follow
    cfg.candidates = cands["list"][:2]
    cfg.adaptive.enabled = True
    board = run_select(cfg)
    trail = board.adaptive
    assert [e.status for e in trail.rounds[0].entries] == ["leader", "kept"]
    assert trail.stop == "budget" and len(trail.rounds) == 1 and "would pass the budget" in trail.note
    assert not list((tmp_path / "budget").glob("candidates/*/proxy.json"))


def test_ray_backend_reaches_the_same_decisions(adaptive_run, cands, tmp_path):
    pytest.importorskip("ray")
    from damoc.config import load_job
    from damoc.select.pipeline import run_select

    cfg = load_job(adaptive_run["job"])
    cfg.candidates = [cands["list"][0], cands["list"][3]]  # a tiny model and the clearly worse one
    cfg.adaptive.enabled = True
    cfg.run.run_dir = str(tmp_path / "ray")
    cfg.run.backend = "ray"
    board = run_select(cfg)
    local = _board(adaptive_run["run"]).adaptive.rounds[0]
    r0 = {e.candidate: e for e in board.adaptive.rounds[0].entries}
    assert r0[cands["list"][3]].status == "dropped" and board.adaptive.stop == "separated"
    ref = {e.candidate: e.score for e in local.entries}
    for c, e in r0.items():  # same seed, same round-0 units: the same scores as the local backend's
        assert e.score == pytest.approx(ref[c], rel=1e-5)


@pytest.mark.parametrize(
    ("flag", "match"),
    [
        (["--level", "1.5"], "confidence.level"),
        (["--budget-s", "-3"], "adaptive.budget_s"),
        (["--max-train-tokens", "0"], "adaptive.max_train_tokens"),
    ],
)
def test_bad_adaptive_and_confidence_flags_are_one_line(run_cli, tmp_path, qa_file, tiny_dirs, flag, match):
    run = tmp_path / "bad_run"
    code, out, err = run_cli(
        "select", "-t", qa_file, "-c", tiny_dirs["llama"], "-o", run, "--adaptive", *flag
    )
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not run.exists()
