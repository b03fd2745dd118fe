"""Tabular families (envs/tabular.py) and the exact returns of metarl/exact.py.

Monte-Carlo checks compare a sample mean with the exact expectation and allow 4 standard
errors (the sample standard deviation over sqrt(number of episodes)); seeds are fixed, so
each test is deterministic, and a wrong expectation would miss by far more.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl.envs.tabular import BanditEnv, BanditTask, TabularMDPEnv, TabularTask
from metarl.errors import TaskNotSetError
from metarl.exact import expected_return, maml_objective, maml_objective_and_grad, policy_table
from metarl.families import make_family
from metarl.policies import CategoricalMLPPolicy
from metarl.sampler import Sampler
from metarl.task_api import seed_family

torch.set_num_threads(1)


def random_policy(obs_dim: int, num_actions: int, seed: int = 0) -> CategoricalMLPPolicy:
    torch.manual_seed(seed)
    policy = CategoricalMLPPolicy(obs_dim, num_actions, hidden_sizes=()).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return policy


@pytest.mark.parametrize("family,obs_dim,num_actions", [("TabularMDP", 10, 5), ("Bandit", 1, 5)])
def test_families_are_registered_with_their_spaces_and_horizon(family: str, obs_dim: int, num_actions: int) -> None:
    env = make_family(family)
    assert env.spec is not None and env.spec.id == f"metarl/{family}-v0" and env.spec.max_episode_steps == 10
    assert env.observation_space.shape == (obs_dim,)
    assert isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == num_actions


@pytest.mark.parametrize("cls", [TabularMDPEnv, BanditEnv])
def test_reset_before_set_task_raises(cls) -> None:
    with pytest.raises(TaskNotSetError, match="set_task"):
        cls().reset(seed=0)


def test_tabular_tasks_are_seeded_valid_and_distinct() -> None:
    env = TabularMDPEnv()
    seed_family(env, 3)
    tasks = env.sample_tasks(3)
    seed_family(env, 3)
    assert env.sample_tasks(3) == tasks  # from env.np_random only
    assert tasks[0] != tasks[1]
    p, r, initial = tasks[0].model()
    assert p.shape == (10, 5, 10) and r.shape == (10, 5) and initial.tolist() == [1.0] + [0.0] * 9
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-12)
    assert (p >= 0).all()
    rewards = np.concatenate([t.model()[1].ravel() for t in tasks])
    assert 0.6 < rewards.mean() < 1.4 and 0.7 < rewards.std() < 1.3  # N(1, 1), 150 draws


def test_bandit_tasks_have_means_in_the_unit_interval() -> None:
    env = BanditEnv(num_arms=4)
    seed_family(env, 0)
    tasks = env.sample_tasks(50)
    means = np.array([t.means for t in tasks])
    assert means.shape == (50, 4) and (means >= 0).all() and (means <= 1).all()
    assert 0.4 < means.mean() < 0.6
    with pytest.raises(TypeError, match="BanditTask"):
        env.set_task(BanditTask(means=(0.5,)))
    with pytest.raises(TypeError, match="TabularTask"):
        TabularMDPEnv().set_task(tasks[0])  # type: ignore[arg-type]


def test_single_env_steps_follow_the_task_tables() -> None:
    env = TabularMDPEnv(num_states=3, num_actions=2)
    p = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0))  # from s: action 0 -> 1, action 1 -> 2
    task = TabularTask(transitions=(p, p, p), rewards=((1.0, 2.0), (3.0, 4.0), (5.0, 6.0)))
    env.set_task(task)
    obs, _ = env.reset(seed=0)
    assert obs.tolist() == [1.0, 0.0, 0.0]
    obs, r, terminated, truncated, _ = env.step(1)
    assert (obs.tolist(), r, terminated, truncated) == ([0.0, 0.0, 1.0], 2.0, False, False)
    obs, r, *_ = env.step(0)
    assert (obs.tolist(), r) == ([0.0, 1.0, 0.0], 5.0)
    assert env.get_task() == task


def test_policy_table_is_the_softmax_of_weight_plus_bias() -> None:
    policy = random_policy(10, 5)
    params = policy.get_params()
    table = policy_table(params, 10)
    expected = policy.distribution(params, torch.eye(10, dtype=torch.float64))[0].exp()
    torch.testing.assert_close(table, expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="hidden_sizes"):
        policy_table(CategoricalMLPPolicy(10, 5, hidden_sizes=(4,)).get_params(), 10)


def test_expected_return_of_a_deterministic_chain_is_hand_computed() -> None:
    """Two states; action 0 stays (reward 1), action 1 switches (reward 0 from s0, 2 from s1)."""
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 0, 1] = p[0, 1, 1] = p[1, 1, 0] = 1.0
    r = np.array([[1.0, 0.0], [1.0, 2.0]])
    params = {
        "layers.0.weight": torch.zeros(2, 2, dtype=torch.float64),
        "layers.0.bias": torch.zeros(2, dtype=torch.float64),
    }
    # Uniform policy: V_t(s) = mean_a (r + V_{t+1}(next)); by hand for H = 2 from s0:
    # V_1 = [0.5, 1.5]; V_0(s0) = 0.5 * (1 + 0.5) + 0.5 * (0 + 1.5) = 1.5.
    j = expected_return(params, (p, r, np.array([1.0, 0.0])), horizon=2)
    assert float(j) == pytest.approx(1.5, abs=1e-12)
    jd = expected_return(params, (p, r, np.array([1.0, 0.0])), horizon=2, gamma=0.5)
    assert float(jd) == pytest.approx(0.5 * 1 + 0.5 * 0 + 0.5 * (0.5 * 0.5 + 0.5 * 1.5), abs=1e-12)


@pytest.mark.parametrize("family", ["TabularMDP", "Bandit"])
@pytest.mark.parametrize("batched", [True, False])
def test_monte_carlo_returns_match_the_exact_return(
    family: str, batched: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_family(family)
    seed_family(env, 2)
    tasks = env.unwrapped.sample_tasks(3)
    policy = random_policy(env.observation_space.shape[0], env.action_space.n)
    if not batched:  # the single Gymnasium env, through the sampler's vector-env fallback
        monkeypatch.setattr(type(env.unwrapped), "make_batched", None)
    n = 2000 if batched else 300
    sampler = Sampler(family, policy, seed=1)
    episodes = sampler.sample({k: v.float() for k, v in policy.get_params().items()}, tasks, n)
    sampler.close()
    assert episodes.rewards.shape == (3, n, 10) and bool((episodes.mask == 1).all())
    returns = episodes.episode_returns().double()  # [K, N]
    for k, task in enumerate(tasks):
        exact = float(expected_return(policy.get_params(), task.model(), horizon=10).detach())
        se = float(returns[k].std() / n**0.5)
        assert abs(float(returns[k].mean()) - exact) < 4 * se, (k, float(returns[k].mean()), exact, se)


def test_exact_maml_gradient_matches_finite_differences() -> None:
    env = TabularMDPEnv(num_states=4, num_actions=3)
    seed_family(env, 0)
    models = [t.model() for t in env.sample_tasks(2)]
    params = random_policy(4, 3).get_params()
    value, grad = maml_objective_and_grad(params, models, fast_lr=2.0, horizon=5)
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def f(x: torch.Tensor) -> float:
        w, b = x[:12].view(3, 4), x[12:]
        leaves = {"layers.0.weight": w.clone().requires_grad_(True), "layers.0.bias": b.clone().requires_grad_(True)}
        return float(maml_objective(leaves, models, fast_lr=2.0, horizon=5).detach())

    assert value == pytest.approx(f(flat), abs=1e-12)
    eps = 1e-6
    fd = torch.tensor(
        [(f(flat + eps * e) - f(flat - eps * e)) / (2 * eps) for e in torch.eye(flat.numel(), dtype=torch.float64)]
    )
    assert float(grad.norm()) > 1e-3
    assert float((grad - fd).norm() / fd.norm()) < 1e-6
    # The adaptation matters: the MAML gradient is not the plain gradient of mean_k J_k / H.
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    plain = torch.autograd.grad(sum(expected_return(leaves, m, 5) for m in models) / (2 * 5), list(leaves.values()))
    assert float((grad - torch.cat([g.reshape(-1) for g in plain])).norm() / grad.norm()) > 0.05
