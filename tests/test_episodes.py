"""Returns, GAE, masked normalization and the Episodes container, against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from metarl.episodes import Episodes, discounted_returns, gae, masked_normalize
from metarl.errors import NonFiniteBatchError

F64 = torch.float64


def t(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# -- discounted returns ------------------------------------------------------------------


def test_discounted_returns_full_episode_hand_computed() -> None:
    # G_2 = 3; G_1 = 2 + 0.5 * 3 = 3.5; G_0 = 1 + 0.5 * 3.5 = 2.75
    g = discounted_returns(t([1.0, 2.0, 3.0]), t([1.0, 1.0, 1.0]), gamma=0.5)
    torch.testing.assert_close(g, t([2.75, 3.5, 3.0]))


def test_discounted_returns_gamma_zero_and_one() -> None:
    r, m = t([1.0, -2.0, 4.0]), t([1.0, 1.0, 1.0])
    torch.testing.assert_close(discounted_returns(r, m, gamma=0.0), r)
    torch.testing.assert_close(discounted_returns(r, m, gamma=1.0), t([3.0, 2.0, 4.0]))


def test_discounted_returns_masks_episodes_of_different_lengths() -> None:
    # Batch of 3 episodes padded to T = 4: lengths 4, 2 and 1. Padded rewards are garbage.
    r = t([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 100.0, -50.0], [5.0, 7.0, 9.0, 11.0]])
    m = t([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    g = discounted_returns(r, m, gamma=0.5)
    expected = t(
        [
            [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4.0],  # 3.25, 4.0, 5.0, 4.0
            [1 + 0.5 * 2, 2.0, 0.0, 0.0],
            [5.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(g, expected)


def test_discounted_returns_ignore_non_finite_padding() -> None:
    # The sampler may record anything after an episode ends (Episodes.check_finite accepts
    # NaN there), so padded steps must not leak into the valid ones.
    r = t([[1.0, 2.0, float("nan"), float("inf")]])
    m = t([[1.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(discounted_returns(r, m, gamma=0.5), t([[2.0, 2.0, 0.0, 0.0]]))


def test_discounted_returns_batch_shape_kept() -> None:
    r = torch.ones(2, 3, 5, dtype=F64)
    g = discounted_returns(r, torch.ones_like(r), gamma=0.5)
    assert g.shape == (2, 3, 5)
    torch.testing.assert_close(g[..., 0], torch.full((2, 3), 1 + 0.5 + 0.25 + 0.125 + 0.0625, dtype=F64))


def test_discounted_returns_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="Shapes must match"):
        discounted_returns(torch.zeros(2, 3), torch.zeros(2, 4), gamma=0.9)


# -- GAE ---------------------------------------------------------------------------------


def test_gae_full_episode_hand_computed() -> None:
    r, v, m = t([1.0, 2.0, 3.0]), t([0.5, 1.0, 1.5]), t([1.0, 1.0, 1.0])
    # delta_2 = 3 - 1.5 = 1.5; delta_1 = 2 + 0.5*1.5 - 1 = 1.75; delta_0 = 1 + 0.5*1 - 0.5 = 1.0
    # A_2 = 1.5; A_1 = 1.75 + 0.25*1.5 = 2.125; A_0 = 1.0 + 0.25*2.125 = 1.53125
    adv = gae(r, v, m, gamma=0.5, lambda_=0.5)
    torch.testing.assert_close(adv, t([1.53125, 2.125, 1.5]))


def test_gae_lambda_zero_is_td_error() -> None:
    r, v, m = t([1.0, 2.0, 3.0]), t([0.5, 1.0, 1.5]), t([1.0, 1.0, 1.0])
    torch.testing.assert_close(gae(r, v, m, gamma=0.5, lambda_=0.0), t([1.0, 1.75, 1.5]))


def test_gae_with_mask_treats_episode_end_as_terminal() -> None:
    # Episode of length 2 padded to 3; the padded value and reward must not matter.
    r, v, m = t([1.0, 2.0, 99.0]), t([0.5, 1.0, 123.0]), t([1.0, 1.0, 0.0])
    # delta_1 = 2 - 1 = 1 (v after the end is 0); delta_0 = 1 + 0.5*1 - 0.5 = 1; A_0 = 1 + 0.25*1
    adv = gae(r, v, m, gamma=0.5, lambda_=0.5)
    torch.testing.assert_close(adv, t([1.25, 1.0, 0.0]))


def test_gae_ignores_non_finite_padding() -> None:
    nan = float("nan")
    r, v, m = t([[1.0, 2.0, nan]]), t([[0.5, 1.0, nan]]), t([[1.0, 1.0, 0.0]])
    torch.testing.assert_close(gae(r, v, m, gamma=0.5, lambda_=0.5), t([[1.25, 1.0, 0.0]]))


def test_gae_lambda_one_equals_returns_minus_values() -> None:
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(3, 4, 7, generator=gen, dtype=F64)
    v = torch.randn(3, 4, 7, generator=gen, dtype=F64)
    lengths = torch.tensor([[7, 3, 1, 5], [2, 7, 7, 4], [6, 1, 2, 3]])
    m = (torch.arange(7).view(1, 1, 7) < lengths.unsqueeze(-1)).to(F64)
    adv = gae(r, v, m, gamma=0.9, lambda_=1.0)
    expected = (discounted_returns(r, m, gamma=0.9) - v) * m
    torch.testing.assert_close(adv, expected)
    assert torch.all(adv[m == 0] == 0)


def test_gae_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="Shapes must match"):
        gae(torch.zeros(2, 5), torch.zeros(2, 4), torch.ones(2, 5), gamma=0.9, lambda_=1.0)


def test_gae_empty_time_axis_raises() -> None:
    with pytest.raises(ValueError, match="T >= 1"):
        gae(torch.zeros(2, 0), torch.zeros(2, 0), torch.zeros(2, 0), gamma=0.9, lambda_=1.0)


# -- masked normalization ----------------------------------------------------------------


def test_masked_normalize_ignores_masked_entries() -> None:
    # Valid entries 1 and 3: mean 2, population std 1 -> -1, 1; the masked 100 becomes 0.
    x = t([[1.0, 3.0, 100.0], [10.0, 10.0, 14.0]])
    m = t([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    out = masked_normalize(x, m, dims=(1,))
    s = (32.0 / 9.0) ** 0.5  # std of [10, 10, 14]: mean 34/3, var = ((4/3)^2 * 2 + (8/3)^2) / 3 = 32/9
    expected = t([[-1.0, 1.0, 0.0], [(10 - 34 / 3) / s, (10 - 34 / 3) / s, (14 - 34 / 3) / s]])
    torch.testing.assert_close(out, expected)


def test_masked_normalize_valid_entries_have_zero_mean_unit_std() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 6, generator=gen, dtype=F64) * 5 + 3
    m = (torch.rand(2, 3, 6, generator=gen) > 0.3).to(F64)
    out = masked_normalize(x, m, dims=(1, 2))
    for k in range(2):
        valid = out[k][m[k] > 0]
        torch.testing.assert_close(valid.mean(), torch.tensor(0.0, dtype=F64), atol=1e-9, rtol=0)
        torch.testing.assert_close(valid.std(unbiased=False), torch.tensor(1.0, dtype=F64), atol=1e-6, rtol=0)
    assert torch.all(out[m == 0] == 0)


def test_masked_normalize_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="must have the same shape"):
        masked_normalize(torch.zeros(2, 3), torch.ones(2, 4), dims=(1,))


# -- Episodes ----------------------------------------------------------------------------


def make_episodes(k: int = 2, n: int = 3, t_: int = 4, obs_dim: int = 2, act_dim: int = 2) -> Episodes:
    return Episodes(
        observations=torch.zeros(k, n, t_, obs_dim),
        actions=torch.zeros(k, n, t_, act_dim),
        rewards=torch.zeros(k, n, t_),
        mask=torch.ones(k, n, t_),
    )


def test_episodes_properties() -> None:
    ep = make_episodes()
    ep.mask[1, 2, 2:] = 0
    ep.rewards[0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ep.rewards[1, 2] = torch.tensor([1.0, 1.0, 50.0, 50.0])  # the last two are padding
    assert (ep.num_tasks, ep.episodes_per_task, ep.num_steps) == (2, 3, 2 * 3 * 4 - 2)
    returns = ep.episode_returns()
    assert returns.shape == (2, 3)
    assert returns[0, 0].item() == 10.0
    assert returns[1, 2].item() == 2.0


@pytest.mark.parametrize(
    "field, shape",
    [("observations", (2, 3, 5, 2)), ("actions", (2, 2, 4, 2)), ("mask", (2, 3)), ("mask", (2, 3, 5))],
)
def test_episodes_rejects_inconsistent_shapes(field: str, shape: tuple[int, ...]) -> None:
    parts = {
        "observations": torch.zeros(2, 3, 4, 2),
        "actions": torch.zeros(2, 3, 4, 2),
        "rewards": torch.zeros(2, 3, 4),
        "mask": torch.ones(2, 3, 4),
    }
    parts[field] = torch.zeros(shape)
    with pytest.raises(ValueError, match=r"Episodes need observations \[K, N, T, obs_dim\]"):
        Episodes(**parts)


def test_episodes_accept_discrete_actions() -> None:
    ep = Episodes(
        torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    )
    assert ep.actions.shape == (2, 3, 4)


@pytest.mark.parametrize("field", ["observations", "actions", "rewards"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_raises_on_valid_step_naming_field(field: str, bad: float) -> None:
    ep = make_episodes()
    getattr(ep, field)[1, 0, 2] = bad
    with pytest.raises(NonFiniteBatchError, match=f"NaN or inf in {field} \\(first in task 1\\)"):
        ep.check_finite()


@pytest.mark.parametrize("field", ["observations", "actions", "rewards"])
def test_check_finite_ignores_padded_steps(field: str) -> None:
    ep = make_episodes()
    ep.mask[0, 1, 2:] = 0
    getattr(ep, field)[0, 1, 3] = float("nan")
    getattr(ep, field)[0, 1, 2] = float("inf")
    ep.check_finite()  # must not raise
    ep.mask[0, 1, 3] = 1  # now the NaN step is a real step
    with pytest.raises(NonFiniteBatchError, match=field):
        ep.check_finite()


def test_check_finite_names_the_task_of_the_valid_bad_step() -> None:
    # Task 0 holds NaN only in a padded step (harmless); task 1 holds NaN in a real step.
    ep = make_episodes()
    ep.mask[0, 0, 3] = 0
    ep.rewards[0, 0, 3] = float("nan")
    ep.rewards[1, 2, 0] = float("nan")
    with pytest.raises(NonFiniteBatchError, match=r"rewards \(first in task 1\)"):
        ep.check_finite()


def test_check_finite_error_is_a_value_error() -> None:
    assert issubclass(NonFiniteBatchError, ValueError)


def test_episodes_to_casts_floats_only() -> None:
    ep = Episodes(
        torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 2, dtype=torch.long), torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
    )
    out = ep.to("cpu", torch.float64)
    assert out.observations.dtype == torch.float64
    assert out.rewards.dtype == torch.float64
    assert out.mask.dtype == torch.float64
    assert out.actions.dtype == torch.long


def test_episode_weights_count_every_episode_equally() -> None:
    from metarl.episodes import episode_weights

    m = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]])  # one task: lengths 4 and 1
    w = episode_weights(m)
    torch.testing.assert_close(w, torch.tensor([[[0.125, 0.125, 0.125, 0.125], [0.5, 0.0, 0.0, 0.0]]]))
    x = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [3.0, 9.0, 9.0, 9.0]]])
    z = masked_normalize(x, m, dims=(1, 2), weights=w)
    # Weighted mean 2 (episode means 1 and 3), weighted std 1: values -1 and +1; padding zero.
    torch.testing.assert_close(z, torch.tensor([[[-1.0, -1.0, -1.0, -1.0], [1.0, 0.0, 0.0, 0.0]]]), atol=1e-6, rtol=0)
