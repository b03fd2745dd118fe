"""Aggregation across seeds and tasks: IQM, bootstrap and t intervals against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from metarl.stats import aggregate, interquartile_mean, mean_score, stratified_bootstrap_ci, t_interval, t_quantile_975


def test_interquartile_mean_by_hand() -> None:
    # 8 scores sorted: -50, 1, 2, 3, 4, 5, 6, 100; trimming 2 from each end leaves 2, 3, 4, 5
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, -50.0]])
    assert interquartile_mean(scores) == pytest.approx((2.0 + 3.0 + 4.0 + 5.0) / 4)
    assert mean_score(scores) == pytest.approx(71.0 / 8)


def test_t_quantiles() -> None:
    assert t_quantile_975(2) == pytest.approx(4.303)
    assert 2.042 > t_quantile_975(35) > 2.021
    assert 1.96 < t_quantile_975(1000) < 1.98
    with pytest.raises(ValueError, match="Degrees of freedom"):
        t_quantile_975(0)


def test_t_interval_by_hand() -> None:
    mean, half = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / np.sqrt(3))
    with pytest.raises(ValueError, match="at least 2 values"):
        t_interval(np.array([1.0]))


def test_bootstrap_interval_covers_the_truth_and_shrinks_with_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(3.0, 1.0, size=(3, 20))
    large = rng.normal(3.0, 1.0, size=(3, 2000))
    lo_s, hi_s = stratified_bootstrap_ci(small, mean_score, reps=500)
    lo_l, hi_l = stratified_bootstrap_ci(large, mean_score, reps=500)
    assert lo_l < 3.0 < hi_l and lo_s < small.mean() < hi_s
    assert hi_l - lo_l < 0.5 * (hi_s - lo_s)
    assert stratified_bootstrap_ci(small, mean_score, reps=200, seed=1) == stratified_bootstrap_ci(
        small, mean_score, reps=200, seed=1
    )


def test_bootstrap_interval_sees_seed_to_seed_variation() -> None:
    """Runs that disagree widen the interval even with many tasks per run."""
    rng = np.random.default_rng(1)
    agree = rng.normal(0.0, 1.0, size=(4, 500))
    disagree = agree + np.array([[-3.0], [-1.0], [1.0], [3.0]])
    w_agree = np.diff(stratified_bootstrap_ci(agree, mean_score, reps=500))[0]
    w_disagree = np.diff(stratified_bootstrap_ci(disagree, mean_score, reps=500))[0]
    assert w_disagree > 5 * w_agree


def test_aggregate_and_bad_scores() -> None:
    agg = aggregate(np.array([[1.0, 2.0], [3.0, 4.0]]), reps=100)
    assert agg.mean == 2.5 and agg.seed_means == [1.5, 3.5]
    assert agg.mean_ci[0] <= agg.mean <= agg.mean_ci[1]
    with pytest.raises(ValueError, match="NaN or inf"):
        aggregate(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match=r"\[runs, tasks\] matrix"):
        stratified_bootstrap_ci(np.zeros(3), mean_score)
