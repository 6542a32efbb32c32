"""Known answers for AtS: a pure power law is recovered and extrapolated; a pre-power point is rejected."""

import math

import pytest

from damoc.select.ats import accept_then_stop, fit_rectified


def test_power_law_points_are_all_accepted_and_extrapolated_exactly():
    sizes = [64, 32, 16, 8]
    losses = [2.0 * s**-0.3 for s in sizes]
    fit = accept_then_stop(sizes, losses)
    assert fit.accepted == [64, 32, 16, 8] and fit.rejected is None
    assert fit.slope == pytest.approx(-0.3) and fit.predict(1000) == pytest.approx(2.0 * 1000**-0.3)


def test_a_pre_power_point_stops_the_walk():
    # the rectified law with a large pre-learned size: the smallest subsets sit on a flatter curve
    law = lambda d: 5.0 / (10.0 + d)  # noqa: E731
    sizes = [400, 200, 100, 12, 6]
    fit = accept_then_stop(sizes, [law(s) for s in sizes], min_points=2, tolerance=0.02)
    assert fit.rejected is not None and fit.rejected <= 100
    assert 400 in fit.accepted and 6 not in fit.accepted
    # the accepted (power-phase) line extrapolates far better than one through every point
    every = accept_then_stop(sizes, [law(s) for s in sizes], min_points=5)
    truth = law(3000)
    assert abs(fit.predict(3000) - truth) < abs(every.predict(3000) - truth)


def test_ranking_by_predicted_loss_can_differ_from_the_largest_subset():
    # model a is better on the largest subset but learns slower: at full size b is predicted better
    sizes = [32, 16, 8]
    a = [0.5 * s**-0.05 for s in sizes]
    b = [1.2 * s**-0.25 for s in sizes]
    fa, fb = accept_then_stop(sizes, a), accept_then_stop(sizes, b)
    assert a[0] < b[0] and fb.predict(900) < fa.predict(900)


def test_rectified_fit_recovers_a_known_curve():
    law = lambda d: 5.0 / (40.0 + d**0.8) + 0.1  # noqa: E731
    sizes = [4, 8, 16, 32, 64, 128, 256, 512]
    fit = fit_rectified(sizes, [law(s) for s in sizes])
    for d in (10, 300, 2000):
        assert fit.predict(d) == pytest.approx(law(d), rel=0.02)
    with pytest.raises(ValueError, match="at least 5 points"):
        fit_rectified(sizes[:3], [law(s) for s in sizes[:3]])


def test_bad_points_are_refused():
    with pytest.raises(ValueError, match="positive"):
        accept_then_stop([8, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one loss per"):
        accept_then_stop([8, 4], [1.0])
    assert math.isfinite(accept_then_stop([8], [1.0]).predict(100))
