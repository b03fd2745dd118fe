"""Policies: distributions against torch.distributions, the stacked-parameter path, make_policy."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, make_policy, stack_params

K, M, OBS_DIM, ACT_DIM, NUM_ACTIONS = 3, 7, 2, 2, 4


def gaussian_policy(seed: int = 0) -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(4,), activation="tanh", init_std=0.7).double()
    with torch.no_grad():  # non-zero biases and unequal stds, so every parameter matters
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def categorical_policy(seed: int = 0) -> CategoricalMLPPolicy:
    torch.manual_seed(seed)
    policy = CategoricalMLPPolicy(OBS_DIM, NUM_ACTIONS, hidden_sizes=(4,), activation="tanh").double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def perturbed_stack(params: dict[str, torch.Tensor], num_tasks: int, seed: int) -> dict[str, torch.Tensor]:
    """Stacked ``[K, ...]`` parameters whose per-task copies all differ."""
    g = torch.Generator().manual_seed(seed)
    stacked = stack_params({n: p.detach() for n, p in params.items()}, num_tasks)
    return {n: p + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in stacked.items()}


def test_stack_params_shapes_and_values() -> None:
    params = gaussian_policy().get_params()
    stacked = stack_params(params, K)
    assert set(stacked) == set(params)
    for name, p in params.items():
        assert stacked[name].shape == (K, *p.shape)
        for k in range(K):
            assert torch.equal(stacked[name][k], p)


def test_gaussian_log_prob_matches_torch_normal() -> None:
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    log_std = 0.5 * torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    actions = torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    ours = GaussianMLPPolicy.log_prob((mean, log_std), actions)
    ref = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert ours.shape == (K, M)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_matches_torch_kl_divergence() -> None:
    g = torch.Generator().manual_seed(2)
    m0, m1 = (torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64) for _ in range(2))
    s0, s1 = (0.5 * torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64) for _ in range(2))
    ours = GaussianMLPPolicy.kl((m0, s0), (m1, s1))
    ref = kl_divergence(Normal(m0, s0.exp()), Normal(m1, s1.exp())).sum(-1)
    assert ours.shape == (K, M)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # KL(p || p) = 0 and KL is not symmetric here.
    torch.testing.assert_close(GaussianMLPPolicy.kl((m0, s0), (m0, s0)), torch.zeros(K, M, dtype=torch.float64))
    assert not torch.allclose(ours, GaussianMLPPolicy.kl((m1, s1), (m0, s0)))


def test_gaussian_distribution_of_policy_matches_its_parameters() -> None:
    """The policy's own (mean, log_std) reproduce torch.distributions log-probs and KLs."""
    policy = gaussian_policy()
    params = policy.get_params()
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(K, M, OBS_DIM, generator=g, dtype=torch.float64)
    actions = torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    mean, log_std = policy.distribution(params, obs)
    assert mean.shape == log_std.shape == (K, M, ACT_DIM)
    torch.testing.assert_close(log_std, params["log_std"].expand(K, M, ACT_DIM))
    ref = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(policy.log_prob((mean, log_std), actions), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_stacked_params_equal_per_task_shared_path() -> None:
    policy = gaussian_policy()
    stacked = perturbed_stack(policy.get_params(), K, seed=4)
    g = torch.Generator().manual_seed(5)
    obs = torch.randn(K, M, OBS_DIM, generator=g, dtype=torch.float64)
    actions = torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    mean, log_std = policy.distribution(stacked, obs)
    assert mean.shape == log_std.shape == (K, M, ACT_DIM)
    logp = policy.log_prob((mean, log_std), actions)
    for k in range(K):
        task_params = {n: p[k] for n, p in stacked.items()}
        mean_k, log_std_k = policy.distribution(task_params, obs[k])
        torch.testing.assert_close(mean[k], mean_k, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(log_std[k], log_std_k, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(logp[k], policy.log_prob((mean_k, log_std_k), actions[k]), rtol=1e-12, atol=1e-12)
    # The perturbation is visible: task 0's parameters on task 1's observations differ from task 1's result.
    params_0 = {n: p[0] for n, p in stacked.items()}
    assert not torch.allclose(policy.distribution(params_0, obs[1])[0], mean[1])


def test_gaussian_stacked_gradients_are_per_task() -> None:
    """A loss of task k only reaches task k's copy of the stacked parameters."""
    policy = gaussian_policy()
    stacked = {n: p.clone().requires_grad_(True) for n, p in perturbed_stack(policy.get_params(), K, seed=6).items()}
    obs = torch.randn(K, M, OBS_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    actions = torch.randn(K, M, ACT_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    logp = policy.log_prob(policy.distribution(stacked, obs), actions)
    grads = torch.autograd.grad(logp[1].sum(), list(stacked.values()))
    for grad in grads:
        assert torch.count_nonzero(grad[0]) == 0 and torch.count_nonzero(grad[2]) == 0
    assert any(torch.count_nonzero(grad[1]) > 0 for grad in grads)


def test_categorical_log_prob_and_kl_match_torch_categorical() -> None:
    policy = categorical_policy()
    g = torch.Generator().manual_seed(9)
    obs = torch.randn(K, M, OBS_DIM, generator=g, dtype=torch.float64)
    actions = torch.randint(0, NUM_ACTIONS, (K, M), generator=g)
    (log_probs,) = policy.distribution(policy.get_params(), obs)
    assert log_probs.shape == (K, M, NUM_ACTIONS)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(K, M, dtype=torch.float64))
    ref = Categorical(logits=log_probs)
    torch.testing.assert_close(policy.log_prob((log_probs,), actions), ref.log_prob(actions), rtol=1e-12, atol=1e-12)

    other = {n: p + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in policy.get_params().items()}
    (log_probs_new,) = policy.distribution(other, obs)
    ours = policy.kl((log_probs,), (log_probs_new,))
    ref_kl = kl_divergence(Categorical(logits=log_probs), Categorical(logits=log_probs_new))
    assert ours.shape == (K, M)
    torch.testing.assert_close(ours, ref_kl, rtol=1e-10, atol=1e-12)
    assert bool((ours > 0).all())


def test_categorical_stacked_params_equal_per_task_shared_path() -> None:
    policy = categorical_policy()
    stacked = perturbed_stack(policy.get_params(), K, seed=10)
    obs = torch.randn(K, M, OBS_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    (log_probs,) = policy.distribution(stacked, obs)
    for k in range(K):
        (log_probs_k,) = policy.distribution({n: p[k] for n, p in stacked.items()}, obs[k])
        torch.testing.assert_close(log_probs[k], log_probs_k, rtol=1e-12, atol=1e-12)


def test_make_policy_picks_the_distribution_from_the_action_space() -> None:
    obs_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    gaussian = make_policy(obs_space, gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32), (8,), "tanh")
    assert isinstance(gaussian, GaussianMLPPolicy)
    assert gaussian.obs_dim == 3 and gaussian.act_dim == 2
    categorical = make_policy(obs_space, gym.spaces.Discrete(5), (8,), "relu")
    assert isinstance(categorical, CategoricalMLPPolicy)
    assert categorical.num_actions == 5
    (log_probs,) = categorical.distribution(categorical.get_params(), torch.zeros(4, 3))
    assert log_probs.shape == (4, 5)


def test_make_policy_init_std_sets_the_initial_standard_deviation() -> None:
    obs_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    policy = make_policy(obs_space, gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32), (8,), "tanh", init_std=0.5)
    _, log_std = policy.distribution(policy.get_params(), torch.zeros(1, 2))
    torch.testing.assert_close(log_std.exp(), torch.full((1, 2), 0.5))


def test_make_policy_rejects_dict_action_space() -> None:
    obs_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})
    with pytest.raises(ValueError, match="action space"):
        make_policy(obs_space, action_space, (8,), "tanh")


def test_make_policy_rejects_dict_observation_space() -> None:
    obs_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)})
    with pytest.raises(ValueError, match="FlattenObservation"):
        make_policy(obs_space, gym.spaces.Discrete(2), (8,), "tanh")


def test_unknown_activation_raises() -> None:
    with pytest.raises(ValueError, match="activation"):
        GaussianMLPPolicy(2, 2, (4,), activation="sigmoid")


@pytest.mark.parametrize("make", [gaussian_policy, categorical_policy])
def test_wrong_observation_width_raises(make) -> None:
    policy = make()
    with pytest.raises(ValueError) as excinfo:
        policy.distribution(policy.get_params(), torch.zeros(K, M, OBS_DIM + 1, dtype=torch.float64))
    message = str(excinfo.value)  # names both the width it got and the width it expects
    assert str(OBS_DIM + 1) in message and str(OBS_DIM) in message


def test_stacked_params_with_mismatched_task_count_raise() -> None:
    policy = gaussian_policy()
    stacked = stack_params(policy.get_params(), K)
    with pytest.raises(ValueError, match="Stacked parameters"):
        policy.distribution(stacked, torch.zeros(K + 1, M, OBS_DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match="Stacked parameters"):
        policy.distribution(stacked, torch.zeros(M, OBS_DIM, dtype=torch.float64))


def reference_mean(policy: GaussianMLPPolicy, params: dict[str, torch.Tensor], obs: torch.Tensor, act) -> torch.Tensor:
    """The Gaussian mean from ``torch.nn.functional.linear`` and a stock activation."""
    x = obs
    for i in range(len(policy.layers)):
        x = torch.nn.functional.linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
        if i < len(policy.layers) - 1:
            x = act(x)
    return x


def test_tanh_mlp_matches_torch_tanh_up_to_third_derivatives() -> None:
    """Second-order MAML needs the activation's 2nd derivative and the exact HVP its 3rd."""
    policy = gaussian_policy()
    params = {n: p.detach().clone().requires_grad_(True) for n, p in policy.get_params().items()}
    leaves = [p for n, p in params.items() if n.startswith("layers.")]  # the mean does not depend on log_std
    g = torch.Generator().manual_seed(12)
    obs = 2.0 * torch.randn(K, M, OBS_DIM, generator=g, dtype=torch.float64)
    coef = torch.randn(K, M, ACT_DIM, generator=g, dtype=torch.float64)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in leaves]
    w = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in leaves]

    def derivatives(mean: torch.Tensor) -> list[torch.Tensor]:
        f = (coef * mean).sum() + 0.1 * (mean**2).sum()
        grads = torch.autograd.grad(f, leaves, create_graph=True)
        hv = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(grads, v)), leaves, create_graph=True)
        third = torch.autograd.grad(sum((hi * wi).sum() for hi, wi in zip(hv, w)), leaves, allow_unused=True)
        third = [torch.zeros_like(p) if t is None else t for p, t in zip(leaves, third)]
        return [mean, *grads, *hv, *third]

    ours = derivatives(policy.distribution(params, obs)[0])
    ref = derivatives(reference_mean(policy, params, obs, torch.tanh))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert any(float(t.abs().max()) > 1e-3 for t in ref[-len(leaves) :])  # the third order is really exercised


def test_relu_mlp_matches_torch_relu() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(4, 3), activation="relu").double()
    params = {n: p.detach().clone().requires_grad_(True) for n, p in policy.get_params().items()}
    obs = torch.randn(K, M, OBS_DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    mean = policy.distribution(params, obs)[0]
    ref = reference_mean(policy, params, obs, torch.relu)
    torch.testing.assert_close(mean, ref, rtol=1e-12, atol=1e-12)
    leaves = [p for n, p in params.items() if n.startswith("layers.")]
    grads = torch.autograd.grad(mean.sum(), leaves)
    ref_grads = torch.autograd.grad(ref.sum(), leaves)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_float32_tanh_mlp_is_accurate() -> None:
    """float32 is what the sampler uses: the mean agrees with torch.tanh to float32 accuracy."""
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(OBS_DIM, ACT_DIM, hidden_sizes=(16, 16), activation="tanh")
    params = policy.get_params()
    obs = torch.cat([1e-4 * torch.randn(50, OBS_DIM), torch.randn(50, OBS_DIM), 10.0 * torch.randn(50, OBS_DIM)])
    with torch.no_grad():
        mean = policy.distribution(params, obs)[0]
        ref = reference_mean(policy, {n: p.double() for n, p in params.items()}, obs.double(), torch.tanh)
    torch.testing.assert_close(mean.double(), ref, rtol=1e-5, atol=1e-6)


def test_categorical_actions_follow_the_probabilities() -> None:
    """Inverse-CDF sampling from explicit uniforms: frequencies within 4 standard errors of the probabilities."""
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3], [0.97, 0.01, 0.01, 0.01]])
    dist = (probs.log().expand(20_000, 2, 4),)
    actions = CategoricalMLPPolicy.act(dist, torch.rand(20_000, 2, generator=torch.Generator().manual_seed(0)))
    for row in range(2):
        freq = torch.bincount(actions[:, row], minlength=4).double() / 20_000
        se = (probs[row].double() * (1 - probs[row].double()) / 20_000).sqrt()
        assert ((freq - probs[row]).abs() <= 4 * se + 1e-9).all(), (row, freq)
    assert (actions[:, 0] != 1).all()  # a zero-probability action is never drawn


def test_gaussian_actions_are_mean_plus_std_times_the_noise() -> None:
    policy = GaussianMLPPolicy(OBS_DIM, 2, hidden_sizes=(4,), activation="tanh")
    noise = policy.noise((3, 5), torch.Generator().manual_seed(0))
    assert noise.shape == (3, 5, 2)
    dist = (torch.ones(3, 5, 2), torch.full((3, 5, 2), math.log(2.0)))
    assert torch.allclose(policy.act(dist, noise), 1 + 2 * noise)
