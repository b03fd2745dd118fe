"""The linear feature baseline: features, the ridge fit against numpy, degenerate batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl.episodes import Episodes, discounted_returns
from metarl.linear_baseline import baseline_features, fit_linear, linear_baseline_values

F64 = torch.float64


def test_features_shape_and_values() -> None:
    obs = torch.tensor([[[[1.0, -2.0], [20.0, 0.5], [-30.0, 3.0]]]], dtype=F64)  # [1, 1, 3, 2]
    f = baseline_features(obs)
    assert f.shape == (1, 1, 3, 2 * 2 + 4)
    # step 1: obs clipped to [10, 0.5]; al = 0.01
    torch.testing.assert_close(f[0, 0, 1], torch.tensor([10.0, 0.5, 100.0, 0.25, 0.01, 1e-4, 1e-6, 1.0], dtype=F64))
    # step 2: obs clipped to [-10, 3]; al = 0.02
    torch.testing.assert_close(f[0, 0, 2], torch.tensor([-10.0, 3.0, 100.0, 9.0, 0.02, 4e-4, 8e-6, 1.0], dtype=F64))


@pytest.mark.parametrize("k, n, t_, d", [(2, 3, 5, 2), (1, 1, 1, 1), (4, 2, 7, 3)])
def test_features_shape(k: int, n: int, t_: int, d: int) -> None:
    assert baseline_features(torch.zeros(k, n, t_, d)).shape == (k, n, t_, 2 * d + 4)


def test_features_reject_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"observations \[K, N, T, obs_dim\]"):
        baseline_features(torch.zeros(3, 5, 2))


def test_fit_linear_matches_numpy_lstsq_on_masked_rows() -> None:
    rng = np.random.default_rng(0)
    k, m, f = 3, 40, 5
    x = rng.normal(size=(k, m, f))
    y = rng.normal(size=(k, m))
    w = (rng.random((k, m)) > 0.3).astype(np.float64)
    # Masked rows hold garbage that must not influence the fit.
    x[w == 0] *= 1e3
    y[w == 0] = 1e6
    coeffs = fit_linear(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w), reg=1e-10)
    assert coeffs.shape == (k, f)
    for i in range(k):
        rows = w[i] > 0
        expected, *_ = np.linalg.lstsq(x[i][rows], y[i][rows], rcond=None)
        np.testing.assert_allclose(coeffs[i].numpy(), expected, rtol=1e-6, atol=1e-9)


def test_fit_linear_recovers_exact_linear_target() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 30, 4, generator=gen, dtype=F64)
    c = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 4.0, -1.0, 2.0]], dtype=F64)
    y = (x @ c.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(fit_linear(x, y, torch.ones(2, 30, dtype=F64), reg=1e-10), c, rtol=1e-6, atol=1e-8)


def test_fit_linear_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"fit_linear expects x \[K, M, F\]"):
        fit_linear(torch.zeros(2, 5, 3), torch.zeros(2, 4), torch.ones(2, 4))


def test_fit_linear_all_zero_is_finite() -> None:
    coeffs = fit_linear(torch.zeros(2, 10, 4), torch.zeros(2, 10), torch.ones(2, 10))
    assert torch.isfinite(coeffs).all()
    assert torch.equal(coeffs, torch.zeros(2, 4))


def _episodes(obs: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor | None = None) -> Episodes:
    k, n, t_, _ = obs.shape
    mask = torch.ones(k, n, t_) if mask is None else mask
    return Episodes(obs, torch.zeros(k, n, t_, 2), rewards, mask)


def test_values_on_all_zero_batch_are_finite_zeros() -> None:
    ep = _episodes(torch.zeros(2, 3, 10, 2), torch.zeros(2, 3, 10))
    returns = discounted_returns(ep.rewards, ep.mask, 0.99)
    values = linear_baseline_values(ep, returns)
    assert values.shape == (2, 3, 10)
    assert not torch.isnan(values).any()
    assert torch.equal(values, torch.zeros(2, 3, 10))


def test_values_on_constant_observations_are_finite_and_fit_the_returns() -> None:
    # Constant observations: the obs features are collinear with the bias, only time explains
    # the returns. Reward -1 per step, gamma 0.99: G_t is a smooth function of t.
    ep = _episodes(torch.full((2, 4, 10, 2), 0.3), -torch.ones(2, 4, 10))
    returns = discounted_returns(ep.rewards, ep.mask, 0.99)
    values = linear_baseline_values(ep, returns)
    assert torch.isfinite(values).all()
    err = (values - returns).abs().max().item()
    assert err < 0.05 * returns.abs().max().item(), err


def test_values_are_zero_on_padded_steps_and_ignore_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 3, 6, 2, generator=gen)
    rewards = torch.randn(2, 3, 6, generator=gen)
    mask = torch.ones(2, 3, 6)
    mask[0, 1, 3:] = 0
    mask[1, 2, 1:] = 0
    returns = discounted_returns(rewards, mask, 0.9)
    values = linear_baseline_values(_episodes(obs, rewards, mask), returns)
    assert torch.all(values[mask == 0] == 0)
    # Changing what lies in the padding changes nothing.
    obs2 = obs.clone()
    obs2[mask == 0] = 7.0
    values2 = linear_baseline_values(_episodes(obs2, rewards, mask), returns)
    torch.testing.assert_close(values2, values)


def test_values_ignore_non_finite_padded_observations() -> None:
    # Episodes.check_finite accepts NaN in padded steps, so the baseline must too.
    obs = torch.zeros(1, 2, 4, 2)
    obs[0, 0, :, 0] = torch.arange(4.0) * 0.1
    mask = torch.ones(1, 2, 4)
    mask[0, 1, 2:] = 0
    obs[0, 1, 2:] = float("nan")
    rewards = -torch.ones(1, 2, 4)
    returns = discounted_returns(rewards, mask, 0.9)
    values = linear_baseline_values(_episodes(obs, rewards, mask), returns)
    assert torch.isfinite(values).all()
    assert torch.all(values[mask == 0] == 0)


def test_values_match_per_task_fit() -> None:
    # Each task's values come from its own regression: fitting task 1 alone gives the same values.
    gen = torch.Generator().manual_seed(5)
    obs = torch.randn(2, 3, 5, 2, generator=gen, dtype=F64)
    rewards = torch.randn(2, 3, 5, generator=gen, dtype=F64)
    mask = torch.ones(2, 3, 5, dtype=F64)
    ep = Episodes(obs, torch.zeros(2, 3, 5, 2, dtype=F64), rewards, mask)
    returns = discounted_returns(rewards, mask, 0.9)
    both = linear_baseline_values(ep, returns)
    one = linear_baseline_values(Episodes(obs[1:], ep.actions[1:], rewards[1:], mask[1:]), returns[1:])
    torch.testing.assert_close(both[1:], one)
