"""The cost projection of a selection run (damoc.select.projection): known answers on a hand-made run."""

import pytest

from damoc.select import projection as cost


def _rec(cand, method, wall, finetune, score=None, lr=None):
    stage = {"load": 1.0, "eval": wall - finetune - 1.0}
    if finetune:
        stage["finetune"] = finetune
    return {
        "candidate": cand,
        "slug": cand,
        "metric": "answer_bpb",
        "method": method,
        "status": "ok",
        "score": score,
        "higher_is_better": False,
        "wall_s": wall,
        "stage_s": stage,
        "lr": lr,
    }


def _summary():
    # two candidates; the full sweep keeps each candidate's best (lowest) score of two rates
    records = [
        _rec("a", "full", 110.0, 100.0, score=0.5, lr=1e-5),
        _rec("a", "full", 500.0, 490.0, score=0.9, lr=5e-5),  # worse: not counted
        _rec("b", "full", 230.0, 200.0, score=0.7, lr=1e-5),
        _rec("b", "full", 215.0, 200.0, score=0.6, lr=5e-5),
        _rec("a", "proxy", 20.0, 5.0),
        _rec("b", "proxy", 40.0, 10.0),
        _rec("a", "zero_shot", 9.0, 0.0),
    ]
    return {
        "records": records,
        "data": {
            "task": "t",
            "fingerprint": "f",
            "n_train": 100,
            "n_dev": 10,
            "n_proxy_train": 10,
            "stage_s": {"filter": 0.0, "compress": 5.0},
        },
    }


def test_cost_splits_growing_and_fixed_wall():
    c = cost.cost_of(_summary())
    # the full sweep keeps a@1e-5 (100 s fine-tune + 10 s) and b@5e-5 (200 + 15); the proxy sweep adds the
    # data stages (5 s) to the two proxies
    assert (c.full_wall_s, c.proxy_wall_s) == (325.0, 65.0)
    assert c.growing_wall_s == (300.0, 20.0)  # full fine-tunes; compression + proxy fine-tunes 5 + 10
    assert c.full_stage_s == {"load": 2.0, "eval": 23.0, "finetune": 300.0}
    assert c.proxy_stage_s == {"data stages": 5.0, "load": 2.0, "eval": 43.0, "finetune": 15.0}


def test_projection_gives_back_the_measured_ratio_and_its_limit():
    s = _summary()
    assert cost.projected_ratio(s, 100) == pytest.approx(325.0 / 65.0)
    assert cost.projected_ratio(s, 400) == pytest.approx((25 + 1200) / (45 + 80))
    assert cost.limit_ratio(s) == pytest.approx(15.0)
    assert cost.projected_ratio(s, 1e9) == pytest.approx(15.0, rel=1e-6)


def test_rows_for_target_inverts_the_projection():
    s = _summary()
    n = cost.rows_for(s, 10.0)
    assert n == pytest.approx(100 * (10 * 45 - 25) / (300 - 10 * 20))
    assert cost.projected_ratio(s, n) == pytest.approx(10.0)
    assert cost.rows_for(s, 15.0) is None  # the limit itself is never reached
    assert cost.rows_for(s, 2.0) == pytest.approx(25.0)  # 2 * 45 - 25 = 65 over a slope of 260 per 100 rows
    assert cost.rows_for(s, 0.5) == 0.0  # reached at any size


def test_projection_table_lists_every_run():
    text = cost.projection_markdown([("dom", "base", _summary())], [400])
    assert "| dom | base | 5.0x (100) | 9.8x | 15.0x | never |" in text


def _fixed_budget_summary(filter_s: float):
    s = _summary()
    s["data"]["budget"] = 10  # a fixed number of proxy rows, not a fraction
    s["data"]["stage_s"] = {"filter": filter_s, "compress": 5.0 - filter_s}
    return s


def test_fixed_row_budget_keeps_the_proxy_side_fixed():
    s = _fixed_budget_summary(0.0)
    c = cost.cost_of(s)
    assert c.fixed_budget and c.growing_wall_s == (300.0, 0.0)
    # only the full fine-tunes grow: 325 + 300 per extra 100 rows over the same 65 s proxy sweep
    assert cost.projected_ratio(s, 400) == pytest.approx((325 + 900) / 65)
    assert cost.limit_ratio(s) == float("inf")
    assert cost.rows_for(s, 20.0) == pytest.approx(100 * (20 * 65 - 25) / 300)
    assert "| dom | rows10 | 5.0x (100) | 18.8x | unbounded |" in cost.projection_markdown(
        [("dom", "rows10", s)], [400]
    )


def test_fixed_row_budget_with_a_scoring_filter_grows_by_the_filter_only():
    s = _fixed_budget_summary(2.0)  # a filter that scores every training row: 2 s per 100 rows
    c = cost.cost_of(s)
    assert c.growing_wall_s == (300.0, 2.0)
    assert cost.projected_ratio(s, 400) == pytest.approx((325 + 900) / (65 + 6))
    assert cost.limit_ratio(s) == pytest.approx(150.0)


def test_report_states_the_fixed_budget_projection():
    from damoc.select.report import _cost_breakdown

    c = cost.cost_of(_fixed_budget_summary(0.0))
    text = "\n".join(_cost_breakdown(c))
    assert "fixed number of rows" in text
    assert (
        f"**{(325 + 300) / 65:.1f}x** with twice" in text and f"**{(325 + 900) / 65:.1f}x** with four" in text
    )


def test_terminal_projection_line_for_both_budgets():
    from damoc.select.report import _cost_breakdown, projection_line

    no_filter = cost.cost_of(
        _summary()
    )  # no budget: the proxy trains on every row, so it grows like a fraction
    s = _summary()
    s["data"]["budget"] = 0.1
    fraction = cost.cost_of(s)
    for c in (no_filter, fraction):
        assert not c.fixed_budget
        assert projection_line(c).startswith("tends to 15.0x with more training rows")
        assert "tends to **15.0x**" in "\n".join(_cost_breakdown(c))
    fixed = cost.cost_of(_fixed_budget_summary(0.0))
    assert "tends to" not in "\n".join(_cost_breakdown(fixed))
    assert projection_line(fixed).startswith(f"about {(325 + 300) / 65:.1f}x with twice the training rows")


def test_a_fraction_run_projected_as_a_fixed_budget():
    s = _summary()  # budget 10% of 100 rows: at 100 rows the same run as a fixed 10-row budget
    assert cost.projected_ratio(s, 100, fixed_budget=True) == pytest.approx(325.0 / 65.0)
    assert cost.projected_ratio(s, 400, fixed_budget=True) == pytest.approx((325 + 900) / 65)
    assert cost.projected_ratio(_fixed_budget_summary(0.0), 400, fixed_budget=False) == pytest.approx(
        (25 + 1200) / (45 + 80)
    )
