"""Aggregate returns across seeds and tasks: mean, interquartile mean, confidence intervals.

Following Agarwal et al. 2021 ("Deep RL at the Edge of the Statistical Precipice"): report
the interquartile mean (IQM) next to the mean, and percentile confidence intervals from a
stratified bootstrap. Scores are ``[runs, tasks]`` matrices (runs = training seeds, tasks =
held-out tasks, the same for every run); the bootstrap resamples tasks within each run and
runs within the matrix, so it covers both evaluation noise and seed-to-seed variation.
With few seeds also report ``t_interval`` over the per-seed means (conservative).

Example:
    >>> import numpy as np
    >>> scores = np.arange(12.0).reshape(3, 4)
    >>> round(interquartile_mean(scores), 2)
    5.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# Two-sided 95% Student-t quantiles t_{0.975, df}.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}  # fmt: skip


def t_quantile_975(df: int) -> float:
    """``t_{0.975}`` with ``df`` degrees of freedom (table, interpolated in ``1/df``; 1.96 at infinity)."""
    if df < 1:
        raise ValueError(f"Degrees of freedom must be >= 1, got {df}.")
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    if df > keys[-1]:
        lo, hi, q_lo, q_hi = keys[-1], math.inf, _T975[keys[-1]], 1.96
    else:
        hi = next(k for k in keys if k > df)
        lo = max(k for k in keys if k < df)
        q_lo, q_hi = _T975[lo], _T975[hi]
    x, x_lo, x_hi = 1 / df, 1 / lo, (0.0 if hi == math.inf else 1 / hi)
    return q_hi + (q_lo - q_hi) * (x - x_hi) / (x_lo - x_hi)


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {scores.shape}.")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; drop or fix the failed runs before aggregating.")
    return scores


def interquartile_mean(scores: np.ndarray) -> float:
    """Mean of the middle 50% of all scores (``scipy.stats.trim_mean(x, 0.25)``, as rliable)."""
    x = np.sort(_check_scores(np.atleast_2d(scores)).reshape(-1))
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def mean_score(scores: np.ndarray) -> float:
    """Mean of all scores."""
    return float(_check_scores(np.atleast_2d(scores)).mean())


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic([runs, tasks])``.

    Each replicate draws runs with replacement, then, within every drawn run, tasks with
    replacement (a two-level bootstrap stratified by run).

    Args:
        scores: ``[runs, tasks]``.
        statistic: Maps a ``[runs, tasks]`` matrix to a number (``mean_score``, ``interquartile_mean``).
        reps: Bootstrap replicates.
        confidence: Coverage of the interval.
        seed: RNG seed (the interval is reproducible).

    Returns:
        ``(low, high)``.
    """
    scores = _check_scores(scores)
    if reps < 1 or not 0 < confidence < 1:
        raise ValueError(f"Need reps >= 1 and 0 < confidence < 1, got {reps} and {confidence}.")
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    stats = np.empty(reps)
    for i in range(reps):
        r = np.asarray(rng.integers(0, runs, size=runs))
        t = np.asarray(rng.integers(0, tasks, size=(runs, tasks)))
        stats[i] = statistic(scores[r[:, None], t])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(low), float(high)


def normal_interval(values: Any, z: float = 1.96) -> tuple[float, float, float]:
    """``(mean, z * standard error, sample standard deviation)`` of a 1-D sample (95% by default).

    The normal approximation, for many values (per-task returns); a single value has
    half-width and deviation 0. ``t_interval`` is the one for few values (per-seed means).

    Raises:
        ValueError: No values.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("A confidence interval needs at least one value.")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), z * std / math.sqrt(values.size), std


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width from the Student t distribution (e.g. over per-seed means)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    if values.size < 2:
        raise ValueError(f"A t interval needs at least 2 values, got {values.size}.")
    half = t_quantile_975(values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


@dataclass
class Aggregate:
    """A method's scores summarized (see ``aggregate``)."""

    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]
    seed_means: list[float]
    seed_t_halfwidth: float
    """Half-width of the 95% t interval over ``seed_means`` (nan with one seed)."""


def aggregate(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> Aggregate:
    """Mean and IQM with stratified-bootstrap 95% intervals, plus per-seed means and their t interval."""
    scores = _check_scores(scores)
    seed_means = scores.mean(1)
    half = t_interval(seed_means)[1] if seed_means.size > 1 else float("nan")
    return Aggregate(
        mean=mean_score(scores),
        mean_ci=stratified_bootstrap_ci(scores, mean_score, reps, seed=seed),
        iqm=interquartile_mean(scores),
        iqm_ci=stratified_bootstrap_ci(scores, interquartile_mean, reps, seed=seed),
        seed_means=[float(m) for m in seed_means],
        seed_t_halfwidth=half,
    )
