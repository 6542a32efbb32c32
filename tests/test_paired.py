"""Paired bootstrap of a bits-per-byte difference (damoc.evaluate.paired)."""

import pytest

from damoc.evaluate.paired import bits_per_byte, paired_bpb_difference


def test_identical_models_differ_by_zero():
    bits = [3.0, 8.0, 1.5, 6.0]
    d = paired_bpb_difference(bits, bits, [4, 9, 2, 5], n_boot=200)
    assert d.diff == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0 and d.share_a_better == 0.0


def test_difference_is_a_ratio_of_sums():
    a, b, n = [2.0, 10.0], [4.0, 4.0], [1, 9]
    d = paired_bpb_difference(a, b, n, n_boot=200)
    assert d.diff == pytest.approx(bits_per_byte(a, n) - bits_per_byte(b, n)) == pytest.approx(0.4)


def test_consistently_better_model_has_an_interval_below_zero():
    n = [10 + i % 7 for i in range(40)]
    b = [1.2 * k for k in n]
    a = [x - 0.5 - 0.1 * (i % 3) for i, x in enumerate(b)]  # better on every row
    d = paired_bpb_difference(a, b, n, n_boot=500)
    assert d.diff < 0 and d.ci_high < 0 and d.share_a_better == 1.0


def test_a_mixed_difference_straddles_zero_and_is_seeded():
    n = [10] * 30
    b = [10.0] * 30
    a = [10.0 + (3.0 if i % 2 else -3.0) for i in range(30)]  # better on half the rows, worse on half
    d = paired_bpb_difference(a, b, n, n_boot=1000, seed=3)
    assert d.ci_low < 0 < d.ci_high and 0.2 < d.share_a_better < 0.8
    assert d == paired_bpb_difference(a, b, n, n_boot=1000, seed=3)


def test_bad_input():
    with pytest.raises(ValueError, match="same non-empty rows"):
        paired_bpb_difference([1.0], [1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="level"):
        paired_bpb_difference([1.0], [1.0], [1], level=1.0)
