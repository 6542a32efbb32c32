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


# --- the general paired bootstrap: plain means, ratios of sums, seeds ---------------------------------

import math  # noqa: E402
import random  # noqa: E402

from damoc.evaluate.paired import paired_difference, rows_to_separate, seeds_to_separate  # noqa: E402


def _direct_bootstrap(a, b, w, n_boot, level, seed):
    """A plain-Python bootstrap, independent of the library's: rows drawn with ``random``."""
    rng = random.Random(seed)
    n = len(a)
    diffs = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        den = sum(w[i] for i in idx) if w is not None else n
        diffs.append((sum(a[i] for i in idx) - sum(b[i] for i in idx)) / den)
    diffs.sort()
    tail = (1 - level) / 2
    return diffs[int(tail * n_boot)], diffs[int((1 - tail) * n_boot) - 1]


def test_the_vectorized_draws_equal_a_loop_over_the_same_rows():
    import torch

    a, b, w = [3.0, 9.0, 1.0, 4.0, 7.0], [4.0, 8.0, 2.0, 5.0, 6.5], [4, 10, 2, 5, 8]
    d = paired_difference(a, b, w, higher_is_better=False, n_boot=50, level=0.9, seed=7)
    idx = torch.randint(0, 5, (50, 5), generator=torch.Generator().manual_seed(7)).tolist()
    loop = sorted((sum(a[i] for i in r) - sum(b[i] for i in r)) / sum(w[i] for i in r) for r in idx)
    lo, hi = torch.quantile(
        torch.tensor(loop, dtype=torch.float64), torch.tensor([0.05, 0.95], dtype=torch.float64)
    )
    assert d.ci_low == pytest.approx(float(lo), abs=1e-12) and d.ci_high == pytest.approx(
        float(hi), abs=1e-12
    )
    assert d.diff == pytest.approx(sum(a) / sum(w) - sum(b) / sum(w))
    assert d.share_a_better == pytest.approx(sum(x < 0 for x in loop) / 50)


@pytest.mark.parametrize("weighted", [False, True])
def test_interval_matches_an_independent_bootstrap(weighted):
    rng = random.Random(1)
    n = 40
    w = [rng.randint(2, 30) for _ in range(n)] if weighted else None
    b = [rng.random() * (w[i] if w else 1.0) for i in range(n)]
    a = [x + (rng.gauss(0.05, 0.2) * (w[i] if w else 1.0)) for i, x in enumerate(b)]
    d = paired_difference(a, b, w, higher_is_better=True, n_boot=20000, level=0.95, seed=0)
    lo, hi = _direct_bootstrap(a, b, w, 20000, 0.95, seed=5)
    width = hi - lo
    assert abs(d.ci_low - lo) < 0.05 * width and abs(d.ci_high - hi) < 0.05 * width
    mean = (sum(a) - sum(b)) / (sum(w) if w else n)
    assert d.diff == pytest.approx(mean)


def test_plain_mean_of_accuracy_counts_ties_half():
    a = [1, 0, 1, 1, 0, 1, 0, 1]
    b = [1, 0, 1, 0, 0, 1, 0, 1]  # a is right on one more row
    d = paired_difference(a, b, higher_is_better=True, n_boot=4000, seed=2)
    assert d.diff == pytest.approx(1 / 8) and d.a_ahead
    # a draw without row 3 ties (about (7/8)^8 = 34% of draws), every other draw has a ahead
    assert d.share_b_better == 0.0 and d.share_a_better == pytest.approx(1 - (7 / 8) ** 8, abs=0.03)
    assert d.p_order == pytest.approx(d.share_a_better + 0.5 * (1 - d.share_a_better))
    assert not d.separated  # the interval's low end is 0


def test_one_seed_given_as_a_matrix_is_the_flat_case_and_copies_add_no_seed_noise():
    a, b, w = [3.0, 9.0, 1.0, 4.0], [4.0, 8.0, 2.0, 5.0], [4, 10, 2, 5]
    flat = paired_difference(a, b, w, higher_is_better=False, n_boot=300, seed=4)
    assert paired_difference([a], [b], w, higher_is_better=False, n_boot=300, seed=4) == flat
    three = paired_difference([a] * 3, [b] * 3, w, higher_is_better=False, n_boot=300, seed=4)
    assert three.n_seeds == 3 and three.sd_seeds == pytest.approx(0.0, abs=1e-12)
    assert (three.ci_low, three.ci_high, three.diff) == pytest.approx((flat.ci_low, flat.ci_high, flat.diff))


def test_seed_noise_widens_the_interval_and_more_seeds_would_separate():
    base = [5.0 + (i % 4) for i in range(30)]
    b = [base, base, base]
    # a is better by 0.3 on every row, but its seeds scatter by ±0.5 (the same shift on every row)
    a = [[x - 0.3 + s for x in base] for s in (-0.5, 0.0, 0.5)]
    d = paired_difference(a, b, higher_is_better=False, n_boot=3000, seed=0)
    assert d.sd_rows == pytest.approx(0.0, abs=1e-9) and d.sd_seeds > 0.05
    assert d.ci_low < -0.3 < d.ci_high and not d.separated  # the seeds make the interval
    assert rows_to_separate(d) is None  # the rows carry no noise: more of them would not help
    need = seeds_to_separate(d)
    assert need is not None and need > 3
    k = math.ceil(need / 3) + 1  # the same three seeds repeated: the gap stays, the seed spread shrinks
    assert paired_difference(a * k, b * k, higher_is_better=False, n_boot=3000).separated
    # with every row one seed: the pair is separated (no seed noise left)
    assert paired_difference(a[1], b[1], higher_is_better=False, n_boot=500).separated


def test_rows_to_separate_projects_what_more_rows_give():
    rng = random.Random(3)
    n = 20
    b = [1.0] * n
    a = [1.0 + rng.gauss(0.1, 0.5) for _ in range(n)]  # a scores higher on average, with much noise
    d = paired_difference(a, b, higher_is_better=True, n_boot=4000, seed=1)
    assert not d.separated
    need = rows_to_separate(d)
    assert need is not None and need > n
    # the same rows repeated to that count: the observed gap stays, the spread shrinks as 1/sqrt(rows)
    k = math.ceil(need / n) + 1
    dk = paired_difference(a * k, b * k, higher_is_better=True, n_boot=4000, seed=1)
    assert dk.diff == pytest.approx(d.diff) and dk.separated
    assert rows_to_separate(dk) is None


def test_general_bad_input():
    with pytest.raises(ValueError, match="same non-empty rows"):
        paired_difference([1.0, 2.0], [1.0, 2.0], [1], higher_is_better=True)
    with pytest.raises(ValueError, match="same non-empty rows"):
        paired_difference([[1.0, 2.0]], [[1.0, 2.0], [1.0, 2.0]], higher_is_better=True)
    with pytest.raises(ValueError, match="n_boot"):
        paired_difference([1.0], [1.0], higher_is_better=True, n_boot=0)
