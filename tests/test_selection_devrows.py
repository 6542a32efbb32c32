"""A proxy's ranking on subsets of its dev rows (damoc.select.devrows): known answers."""

import pytest

from damoc.select import devrows


def test_subset_score_weights_rows_by_answer_bytes():
    # bits/byte of the subset = summed bits ÷ summed bytes: (0.5*2 + 2.0*6) / 8, not the mean of 0.5 and 2.0
    assert devrows.subset_score([0.5, 9.0, 2.0], [2, 1, 6], [0, 2]) == pytest.approx(13.0 / 8)


def test_agreement_counts_the_subsets_that_keep_the_truth():
    run = {
        "bytes": [1, 1, 1],
        "truth": {"a": 0.2, "b": 0.3},  # a is truly better (lower)
        "proxy": {"a": [0.1, 0.1, 0.9], "b": [0.45, 0.45, 0.45]},
    }
    assert devrows.agreement(run, 3, draws=10) == (1.0, 1.0)  # all rows: a 0.367 < b 0.45
    # two rows: {0,1} keeps a first, {0,2} and {1,2} give a 0.5 > 0.45; each subset equally likely
    top, whole = devrows.agreement(run, 2, draws=3000)
    assert top == whole and top == pytest.approx(1 / 3, abs=0.03)
    run["truth"] = {"a": 0.4, "b": 0.3}
    assert devrows.agreement(run, 3, draws=10) == (0.0, 0.0)
