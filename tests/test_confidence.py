"""How sure a leaderboard is: intervals on synthetic leaderboards with known per-row scores."""

import json
import random

import pytest

from damoc.evaluate.paired import paired_difference
from damoc.select.config import SelectConfig
from damoc.select.records import DataRecord, UnitRecord
from damoc.select.report import build_leaderboard, render_markdown, render_table

N = 30


def _dev(run, n=N):
    (run / "data").mkdir(parents=True)
    rows = [{"id": f"d{i}", "question": f"q{i}", "answer": "x" * (3 + (7 * i) % 23)} for i in range(n)]
    (run / "data" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [len(r["answer"].encode()) for r in rows]


def _rec(cand, per, method="proxy", metric="answer_bpb", score=None):
    hib = metric != "answer_bpb"
    return UnitRecord(
        candidate=cand,
        slug=cand,
        method=method,
        status="ok",
        metric=metric,
        higher_is_better=hib,
        score=score if score is not None else sum(per) / len(per),
        n_dev=len(per),
        per_example=per,
    )


def _cfg(cands, metric="answer_bpb", n_boot=20000):
    return SelectConfig.model_validate(
        {
            "job": "select",
            "task": {"path": "unused.jsonl"},
            "candidates": cands,
            "eval": {"metric": metric},
            "confidence": {"n_boot": n_boot},
        }
    )


def _direct(a, b, w, n_boot=20000, level=0.95, seed=11):
    """A plain-Python paired bootstrap of sum(a)/sum(w) - sum(b)/sum(w)."""
    rng = random.Random(seed)
    n = len(a)
    out = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        den = sum(w[i] for i in idx)
        out.append((sum(a[i] for i in idx) - sum(b[i] for i in idx)) / den)
    out.sort()
    return out[int((1 - level) / 2 * n_boot)], out[int((1 + level) / 2 * n_boot) - 1]


def test_bpb_intervals_match_a_direct_bootstrap_and_a_tie_is_reported_as_a_tie(tmp_path):
    nbytes = _dev(tmp_path)
    rng = random.Random(0)
    base = [1.0 + rng.random() for _ in range(N)]  # bits per byte of the best candidate per row
    per = {
        "a": base,
        "b": [x + rng.gauss(0.01, 0.15) for x in base],  # about as good: a tie
        "c": [x + 0.4 + rng.gauss(0, 0.05) for x in base],  # clearly worse
    }
    bits = {c: [p * b for p, b in zip(v, nbytes, strict=True)] for c, v in per.items()}
    score = {c: sum(bits[c]) / sum(nbytes) for c in per}
    records = [_rec(c, per[c], score=score[c]) for c in per]
    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=N, n_proxy_train=5)
    board = build_leaderboard(_cfg(list(per)), data, records, tmp_path)
    assert [r.candidate for r in board.rows] == ["a", "b", "c"]
    ab, bc = board.pairs_of("proxy")
    assert (ab.ahead, ab.behind, bc.ahead, bc.behind) == ("a", "b", "b", "c")
    # the gap is score(b) - score(a) (bits/byte, lower is better) and its interval a direct bootstrap's
    assert ab.gap == pytest.approx(score["b"] - score["a"])
    lo, hi = _direct(bits["b"], bits["a"], nbytes)
    assert abs(ab.ci_low - lo) < 0.05 * (hi - lo) and abs(ab.ci_high - hi) < 0.05 * (hi - lo)
    assert ab.ci_low < 0 < ab.ci_high and not ab.separated and 0.5 < ab.p_order < 0.975
    assert ab.rows_needed is not None and ab.rows_needed > N
    lo, hi = _direct(bits["c"], bits["b"], nbytes)
    assert abs(bc.ci_low - lo) < 0.05 * (hi - lo) and abs(bc.ci_high - hi) < 0.05 * (hi - lo)
    assert bc.separated and bc.p_order == 1.0 and bc.rows_needed is None
    # the same numbers as the library's paired bootstrap on the bits and bytes directly
    d = paired_difference(bits["b"], bits["a"], nbytes, higher_is_better=False, n_boot=20000)
    assert (ab.ci_low, ab.ci_high) == pytest.approx((d.ci_low, d.ci_high))
    # the pick against every other candidate (what the plot draws)
    assert {(p.ahead, p.behind) for p in board.versus_pick} == {("a", "b"), ("a", "c")}
    # reports: the tie is a tie
    table = render_table(board)
    assert "a ahead of b by" in table and "tied within noise" in table and "P(> next)" in table
    assert "b ahead of c by" in table and ": separated" in table
    md = render_markdown(board)
    assert "## How sure" in md and "| proxy | a > b |" in md and "tied within noise" in md
    assert "a and b are tied within noise" in md
    # leaderboard.json carries the intervals
    again = type(board).model_validate_json(board.model_dump_json())
    assert again.pairs == board.pairs


def test_plain_mean_metrics_and_every_ranking_get_intervals(tmp_path):
    _dev(tmp_path, 40)
    rng = random.Random(2)
    right = {c: [float(rng.random() < p) for _ in range(40)] for c, p in (("x", 0.9), ("y", 0.3))}
    records = [_rec(c, v, metric="label_acc") for c, v in right.items()]
    records += [_rec(c, v[::-1], method="zero_shot", metric="label_acc") for c, v in right.items()]
    records += [_rec(c, v, method="full", metric="label_acc") for c, v in right.items()]
    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=40, n_proxy_train=5)
    board = build_leaderboard(_cfg(["y", "x"], "label_acc", 2000), data, records, tmp_path)
    assert board.best() == "x"
    for method in ("proxy", "zero_shot", "full"):
        (p,) = board.pairs_of(method)
        d = paired_difference(right["x"], right["y"], higher_is_better=True, n_boot=2000)
        assert (p.ahead, p.behind) == ("x", "y") and p.gap == pytest.approx(d.diff)
        assert (p.ci_low, p.ci_high) == pytest.approx((d.ci_low, d.ci_high)) and p.separated
    assert not any(p.approximate for p in board.pairs)


def test_records_without_per_row_scores_give_no_interval(tmp_path):
    _dev(tmp_path)
    records = [_rec("a", [1.0] * N), _rec("b", [2.0] * N).model_copy(update={"per_example": []})]
    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=N, n_proxy_train=5)
    board = build_leaderboard(_cfg(["a", "b"]), data, records, tmp_path)
    assert board.pairs == [] and board.rows[0].candidate == "a"
    assert "How sure" not in render_markdown(board)
