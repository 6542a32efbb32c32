"""Resolved truth and a method's fidelity to it, on per-row scores with known answers."""

import random

import pytest

from damoc.select.fidelity import judge, resolve_truth


def _rows(p: float, n: int = 200, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < p) for _ in range(n)]


def test_clear_gaps_resolve_and_a_coin_flip_is_a_tie():
    per_row = {"a": _rows(0.9, seed=1), "b": _rows(0.5, seed=2), "c": list(_rows(0.5, seed=2))}
    truth = resolve_truth(per_row, higher_is_better=True)
    verdict = {frozenset((p.a, p.b)): p.better for p in truth.pairs}
    assert verdict[frozenset("ab")] == "a" and verdict[frozenset("ac")] == "a"
    assert verdict[frozenset("bc")] is None  # identical rows: a tie
    assert truth.best() == "a" and truth.scores["a"] == pytest.approx(sum(per_row["a"]) / 200)


def test_lower_is_better_with_byte_weights_pools_as_a_ratio_of_sums():
    per_row = {"a": [1.0, 1.0, 3.0, 3.0] * 50, "b": [2.0, 2.0, 2.0, 2.0] * 50}
    weights = [1.0, 1.0, 9.0, 9.0] * 50  # a is worse where the answers are long
    truth = resolve_truth(per_row, higher_is_better=False, weights=weights)
    assert truth.scores["a"] == pytest.approx((1 + 1 + 27 + 27) / 20)
    assert truth.best() == "b" and truth.pairs[0].better == "b"


def test_judge_top1_within_noise_regret_and_pair_accuracy():
    per_row = {"a": _rows(0.9, seed=1), "b": _rows(0.88, seed=3), "c": _rows(0.3, seed=4)}
    truth = resolve_truth(per_row, higher_is_better=True)
    assert truth.tied("a", "b") and not truth.tied("a", "c")
    # picks b (tied with the best): a hit within noise, not exact; regret is the truth's gap
    f = judge(truth, {"a": 0.5, "b": 0.6, "c": 0.1}, method_higher_is_better=True)
    assert f.pick == "b" and f.top1_within_noise and not f.top1_exact
    assert f.regret == pytest.approx(abs(truth.scores["a"] - truth.scores["b"]))
    assert f.resolved_pairs == 2 and f.resolved_pair_acc == 1.0
    # a loss-like method (lower is better) that puts c first: a miss, and both resolved pairs wrong
    g = judge(truth, {"a": 2.0, "b": 2.0, "c": 1.0}, method_higher_is_better=False)
    assert g.pick == "c" and not g.top1_within_noise and g.resolved_pair_acc == 0.0 and g.kendall < 0


def test_no_resolved_pair_gives_no_pair_accuracy():
    same = _rows(0.5, seed=5)
    truth = resolve_truth({"a": same, "b": list(same)}, higher_is_better=True)
    f = judge(truth, {"a": 1.0, "b": 0.0}, method_higher_is_better=True)
    assert f.resolved_pair_acc is None and f.top1_within_noise and f.regret == 0.0


def test_separated_agreement_counts_what_the_truth_says_of_each_separated_pair():
    from damoc.select.fidelity import separated_agreement

    truth = resolve_truth(
        {"a": _rows(0.9, seed=1), "b": _rows(0.5, seed=2), "c": list(_rows(0.5, seed=2))},
        higher_is_better=True,
    )
    # the method is sure c beats a (truth: a beats c) and b beats a (wrong too), sure b beats c (truth: tie)
    method = {"a": [0.0] * 50 + [1.0] * 10, "b": [1.0] * 60, "c": [1.0] * 30 + [0.0] * 30}
    got = separated_agreement(method, True, truth)
    assert (got.pairs, got.separated) == (3, 3)
    assert (got.agree, got.disagree, got.truth_tied) == (0, 2, 1) and got.agreement == 0.0
    # the truth's own rows, scored by the method: every separated pair agrees; tied ones are not separated
    same = separated_agreement(
        {
            c: list(v)
            for c, v in zip("abc", (_rows(0.9, seed=1), _rows(0.5, seed=2), _rows(0.5, seed=2)), strict=True)
        },
        True,
        truth,
    )
    assert same.separated == 2 and same.agree == 2 and same.agreement == 1.0
    # a method on fewer rows than the truth: weights are cut to its rows
    w = [1.0] * 200
    short = separated_agreement({"a": [1.0] * 40, "b": [0.0] * 40, "c": [0.0] * 40}, True, truth, weights=w)
    assert short.separated == 2 and short.agree == 2 and short.agreement == 1.0
