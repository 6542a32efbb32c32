"""Ranking agreement on hand-made rankings: Spearman, Kendall, top-1 hit, regret, pairwise accuracy."""

import pytest

from damoc.select.ranking import (
    agreement,
    pairwise_accuracy,
    rank_correlations,
    ranking,
    top1_hit,
    top1_regret,
)

TRUE = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.1}  # higher is better: a > b > c > d


def test_identical_ranking():
    ag = agreement("proxy", {"a": 9, "b": 8, "c": 7, "d": 1}, TRUE, higher_is_better=True)
    assert ag.spearman == pytest.approx(1.0) and ag.kendall == pytest.approx(1.0)
    assert ag.top1_hit and ag.top1_regret == 0.0 and ag.pairwise_acc == 1.0
    assert ag.ranking == ["a", "b", "c", "d"]


def test_reversed_ranking():
    ag = agreement("zero_shot", {"a": 1, "b": 2, "c": 3, "d": 4}, TRUE, higher_is_better=True)
    assert ag.spearman == pytest.approx(-1.0) and ag.kendall == pytest.approx(-1.0)
    assert not ag.top1_hit
    assert ag.top1_regret == pytest.approx(0.9 - 0.1)
    assert ag.pairwise_acc == 0.0


def test_one_swap():
    pred = {"a": 3.0, "b": 4.0, "c": 2.0, "d": 1.0}  # b > a > c > d: one discordant pair of six
    rho, tau = rank_correlations(pred, TRUE)
    assert tau == pytest.approx((5 - 1) / 6)
    assert rho == pytest.approx(1 - 6 * 2 / (4 * 15))  # d² = 1 + 1
    assert pairwise_accuracy(pred, TRUE) == pytest.approx(5 / 6)
    assert top1_regret(pred, TRUE, True) == pytest.approx(0.2)
    assert not top1_hit(pred, TRUE, True)


def test_lower_is_better():
    true = {"x": 1.0, "y": 2.0, "z": 3.0}  # bits per byte: x is best
    assert ranking(true, higher_is_better=False) == ["x", "y", "z"]
    pred = {"x": 0.6, "y": 0.5, "z": 0.9}  # picks y
    assert top1_regret(pred, true, higher_is_better=False) == pytest.approx(1.0)
    ag = agreement("proxy", pred, true, higher_is_better=False)
    assert ag.kendall == pytest.approx(1 / 3) and ag.pairwise_acc == pytest.approx(2 / 3)


def test_ties_and_missing():
    assert pairwise_accuracy({"a": 1, "b": 1}, {"a": 2, "b": 1}) == 0.5
    assert rank_correlations({"a": 1, "b": 1}, {"a": 2, "b": 1}) == (None, None)
    ag = agreement("proxy", {"a": 1.0}, {"a": 1.0, "b": 2.0}, higher_is_better=True)  # b has no proxy score
    assert ag.n == 1 and ag.kendall is None and ag.top1_hit
    assert agreement("proxy", {}, TRUE, True).n == 0
