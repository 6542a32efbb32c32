"""The compression check on a proxy ranking (damoc.select.checks) and how the report carries it."""

from pathlib import Path

import pytest

from damoc.select.checks import compression_check


def test_compression_check_known_answers():
    proxy = {"a": 1.2, "b": 0.8, "c": 3.0, "d": 1.0}
    zero = {"a": 1.0, "b": 1.0, "c": 1.0}  # d has no zero-shot score: left out
    # lower is better: a (1.2x) and c (3x) got worse than zero-shot, b improved
    assert compression_check(proxy, zero, higher_is_better=False) == pytest.approx({"a": 1.2, "c": 3.0})
    # a 25% slack keeps a (20% worse) and still flags c
    assert compression_check(proxy, zero, higher_is_better=False, tolerance=0.25) == pytest.approx({"c": 3.0})
    # higher is better: now b (0.8 < 1.0) is the one that got worse
    assert compression_check(proxy, zero, higher_is_better=True) == pytest.approx({"b": 0.8})
    assert compression_check({"a": 1.0}, {"a": 1.0}, higher_is_better=False) == {}  # equal is not worse
    with pytest.raises(ValueError):
        compression_check(proxy, zero, False, tolerance=-0.1)


def _records(scores: dict[str, dict[str, float]]):
    from damoc.select.records import UnitRecord

    return [
        UnitRecord(
            candidate=c, slug=c, method=m, status="ok", metric="answer_bpb", higher_is_better=False, score=v
        )
        for c, by in scores.items()
        for m, v in by.items()
    ]


def _cfg(**over):
    from damoc.select.config import SelectConfig

    return SelectConfig.model_validate({"task": {"path": "pubmedqa"}, "candidates": ["a", "b"], **over})


def test_leaderboard_flags_and_reports_a_candidate_the_proxy_left_worse(tmp_path: Path):
    from damoc.select.records import DataRecord
    from damoc.select.report import build_leaderboard, render_markdown, render_table

    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=5, n_proxy_train=1)
    recs = _records({"a": {"proxy": 1.1, "zero_shot": 0.9}, "b": {"proxy": 1.5, "zero_shot": 0.5}})
    board = build_leaderboard(_cfg(), data, recs, tmp_path)
    assert board.compression_check == pytest.approx({"a": 1.1 / 0.9, "b": 3.0})
    text = render_table(board)
    # rows in proxy rank order: a (1.1) before b (1.5)
    assert (
        "check: proxy worse than the uncompressed model zero-shot for a (1.1000 vs 0.9000), b (1.5000 vs"
        in text
    )
    assert "model.layer_fraction" in text and "check: proxy worse" in render_markdown(board)
    # a slack of 50% keeps a; the check can be switched off; the JSON keeps the flags
    assert build_leaderboard(_cfg(compression_check=0.5), data, recs, tmp_path).compression_check == {
        "b": 3.0
    }
    off = build_leaderboard(_cfg(compression_check=None), data, recs, tmp_path)
    assert off.compression_check == {} and "check:" not in render_table(off)
    assert (
        type(board).model_validate_json(board.model_dump_json()).compression_check == board.compression_check
    )


def test_no_flag_when_every_proxy_beats_its_zero_shot_or_no_baselines(tmp_path: Path):
    from damoc.select.records import DataRecord
    from damoc.select.report import build_leaderboard, render_table

    data = DataRecord(task="t", fingerprint="f", n_train=10, n_dev=5, n_proxy_train=1)
    good = build_leaderboard(
        _cfg(),
        data,
        _records({"a": {"proxy": 0.8, "zero_shot": 0.9}, "b": {"proxy": 0.4, "zero_shot": 0.5}}),
        tmp_path,
    )
    assert good.compression_check == {} and "check:" not in render_table(good)
    bare = build_leaderboard(_cfg(), data, _records({"a": {"proxy": 1.8}, "b": {"proxy": 1.4}}), tmp_path)
    assert bare.compression_check == {}
