"""The sampler: batched and vector-env paths, masks after termination, errors, determinism."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl.episodes import Episodes
from metarl.errors import NonFiniteBatchError, SamplerError
from metarl.policies import make_policy
from metarl.sampler import Sampler
from metarl.task_api import seed_family

TOL = 0.15
POINT_ID = "metarl_test/PointGoal1D-v0"


class PointGoal1D(gym.Env):
    """A 1-D point starting at 0 that moves by clip(action, -0.1, 0.1) toward a per-task goal.

    Reward -|x - goal|; the episode terminates once |x - goal| < 0.15. No ``make_batched``,
    so the sampler must go through its Gymnasium vector-env path.
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, shape=(1,), dtype=np.float32)
        self.goal: float | None = None
        self.x = np.zeros(1, dtype=np.float32)

    def sample_tasks(self, n: int) -> list[float]:
        return [float(g) for g in self.np_random.uniform(-1.0, 1.0, size=n)]

    def set_task(self, task: float) -> None:
        self.goal = float(task)

    def get_task(self) -> float | None:
        return self.goal

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        assert self.goal is not None
        self.x = np.zeros(1, dtype=np.float32)
        return self.x.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.goal is not None
        self.x = self.x + np.clip(np.asarray(action, dtype=np.float32), -0.1, 0.1)
        dist = float(abs(self.x[0] - self.goal))
        return self.x.copy(), self._reward(dist), dist < TOL, False, {}

    def _reward(self, dist: float) -> float:
        return -dist


class RaisingPoint(PointGoal1D):
    """Raises on its 4th step."""

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        self.steps = 0
        return super().reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        if self.steps == 4:
            raise ValueError("wheel fell off at step 4")
        return super().step(action)


class RaisingOnResetPoint(PointGoal1D):
    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        raise OSError("simulator not found")


class NaNRewardPoint(PointGoal1D):
    def _reward(self, dist: float) -> float:
        return float("nan")


if POINT_ID not in gym.registry:
    gym.register(id=POINT_ID, entry_point=PointGoal1D, max_episode_steps=7)


def policy_for(env: gym.Env) -> Any:
    torch.manual_seed(0)
    return make_policy(env.observation_space, env.action_space, (8,), "tanh", init_std=1.0)


def nav_sampler(seed: int = 0, horizon: int = 10) -> Sampler:
    env = gym.make("metarl/Navigation2D-v0")
    return Sampler("Navigation2D", policy_for(env), horizon=horizon, seed=seed)


def nav_tasks(k: int = 3) -> list[Any]:
    env = gym.make("metarl/Navigation2D-v0")
    seed_family(env, 0)
    return env.unwrapped.sample_tasks(k)


# -- batched (navigation) path --------------------------------------------------------------


def test_batched_path_shapes_and_full_mask() -> None:
    sampler = nav_sampler()
    episodes = sampler.sample(sampler.policy.get_params(), nav_tasks(3), episodes_per_task=2)
    assert isinstance(episodes, Episodes)
    assert episodes.observations.shape == (3, 2, 10, 2)
    assert episodes.actions.shape == (3, 2, 10, 2)
    assert episodes.rewards.shape == (3, 2, 10)
    assert episodes.mask.shape == (3, 2, 10)
    assert torch.equal(episodes.mask, torch.ones(3, 2, 10))
    assert episodes.num_steps == 60
    # Every episode starts at the origin and follows the clipped actions.
    assert torch.equal(episodes.observations[:, :, 0], torch.zeros(3, 2, 2))
    step = episodes.actions[:, :, 0].clamp(-0.1, 0.1)
    torch.testing.assert_close(episodes.observations[:, :, 1], step)


def test_batched_rewards_are_negative_distance_to_each_task_goal() -> None:
    tasks = nav_tasks(2)
    sampler = nav_sampler()
    ep = sampler.sample(sampler.policy.get_params(), tasks, episodes_per_task=2)
    goals = torch.tensor([t.goal for t in tasks]).view(2, 1, 1, 2)
    # The reward of step t is measured at the position after it, the observation of step t + 1.
    d = ep.observations[:, :, 1:] - goals
    torch.testing.assert_close(ep.rewards[:, :, :-1], -torch.sqrt((d * d).sum(-1)), rtol=1e-6, atol=1e-6)


def test_horizon_defaults_to_the_registered_max_episode_steps() -> None:
    env = gym.make("metarl/Navigation2D-v0")
    assert Sampler("Navigation2D", policy_for(env)).horizon == 100
    assert Sampler(POINT_ID, policy_for(PointGoal1D())).horizon == 7


def test_instance_without_spec_needs_a_horizon() -> None:
    with pytest.raises(ValueError, match="The sampler needs a horizon"):
        Sampler(PointGoal1D(), policy_for(PointGoal1D()))


def test_same_seed_gives_identical_episodes_and_other_seed_differs() -> None:
    tasks = nav_tasks(2)
    a = nav_sampler(seed=5)
    b = nav_sampler(seed=5)
    c = nav_sampler(seed=6)
    params = a.policy.get_params()
    ea, eb, ec = (s.sample(params, tasks, 2) for s in (a, b, c))
    for field in ("observations", "actions", "rewards", "mask"):
        assert torch.equal(getattr(ea, field), getattr(eb, field)), field
    assert not torch.equal(ea.actions, ec.actions)


def test_stacked_per_task_params_are_used_per_task() -> None:
    # Task 1 gets a policy with a huge negative mean bias: its actions all clip to -0.1.
    sampler = nav_sampler()
    params = {k: v.detach().clone() for k, v in sampler.policy.get_params().items()}
    stacked = {k: v.unsqueeze(0).repeat(2, *([1] * v.dim())) for k, v in params.items()}
    stacked["log_std"][1] = -20.0
    stacked[f"layers.{sampler.policy.num_layers - 1}.bias"][1] = -100.0
    ep = sampler.sample(stacked, nav_tasks(2), 2)
    torch.testing.assert_close(ep.observations[1, :, 3], torch.full((2, 2), -0.3), atol=1e-6, rtol=0)
    assert torch.all(ep.actions[1] < -10)
    assert torch.all(ep.actions[0].abs() < 10)


def test_sample_rejects_empty_batch() -> None:
    sampler = nav_sampler()
    with pytest.raises(ValueError, match="at least one task and one episode per task"):
        sampler.sample(sampler.policy.get_params(), [], 2)


# -- vector-env path (a user family without make_batched) ----------------------------------


def replay(goal: float, actions: torch.Tensor) -> tuple[list[float], list[float], int | None]:
    """Observations and rewards of a fresh PointGoal1D, and the step it terminates at (or None)."""
    env = PointGoal1D()
    env.set_task(goal)
    obs, _ = env.reset()
    observations, rewards = [float(obs[0])], []
    for t, a in enumerate(actions):
        obs, r, terminated, _, _ = env.step(a.numpy())
        rewards.append(r)
        if terminated:
            return observations, rewards, t
        observations.append(float(obs[0]))
    return observations, rewards, None


@pytest.mark.parametrize("as_instance", [True, False])
def test_vector_path_masks_stop_after_termination(as_instance: bool) -> None:
    env = PointGoal1D()
    family = env if as_instance else POINT_ID
    sampler = Sampler(family, policy_for(env), horizon=7, seed=0)
    # Goal 0: any first step ends within 0.1 < 0.15 -> length 1. Goal 5: never reached in 7 steps.
    # Goal 0.3: reachable from step 2 on, depending on the random actions.
    tasks = [0.0, 5.0, 0.3]
    ep = sampler.sample(sampler.policy.get_params(), tasks, episodes_per_task=4)
    assert ep.observations.shape == (3, 4, 7, 1)
    assert ep.actions.shape == (3, 4, 7, 1)
    assert torch.equal(ep.mask[0], torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]] * 4))
    assert torch.equal(ep.mask[1], torch.ones(4, 7))
    for k, goal in enumerate(tasks):
        for n in range(4):
            observations, rewards, t_end = replay(goal, ep.actions[k, n])
            length = 7 if t_end is None else t_end + 1
            expected_mask = torch.tensor([1.0] * length + [0.0] * (7 - length))
            assert torch.equal(ep.mask[k, n], expected_mask), (k, n)
            # Valid steps match a fresh replay of the recorded actions.
            torch.testing.assert_close(ep.observations[k, n, :length, 0], torch.tensor(observations[:length]))
            torch.testing.assert_close(ep.rewards[k, n, :length], torch.tensor(rewards[:length], dtype=torch.float32))
    sampler.close()


def test_vector_path_truncates_batch_when_every_episode_ended() -> None:
    env = PointGoal1D()
    sampler = Sampler(env, policy_for(env), horizon=7, seed=0)
    ep = sampler.sample(sampler.policy.get_params(), [0.0, 0.04], episodes_per_task=3)
    # |x - goal| <= 0.1 + 0.04 < 0.15 after any first step: every episode ends there, so T = 1.
    assert ep.mask.shape == (2, 3, 1)
    assert torch.equal(ep.mask, torch.ones(2, 3, 1))


def test_vector_path_is_deterministic_per_seed() -> None:
    env = PointGoal1D()
    eps = []
    for seed in (3, 3, 4):
        sampler = Sampler(PointGoal1D(), policy_for(env), horizon=7, seed=seed)
        eps.append(sampler.sample(sampler.policy.get_params(), [0.3, -0.4], episodes_per_task=3))
    for field in ("observations", "actions", "rewards", "mask"):
        assert torch.equal(getattr(eps[0], field), getattr(eps[1], field)), field
    assert not torch.equal(eps[0].actions, eps[2].actions)


def test_reseed_gives_the_episodes_of_a_fresh_sampler_and_keeps_its_env_copies() -> None:
    env = PointGoal1D()
    sampler = Sampler(PointGoal1D(), policy_for(env), horizon=7, seed=3)
    params = sampler.policy.get_params()
    first = sampler.sample(params, [0.3, -0.4], episodes_per_task=3)
    copies = dict(sampler._vector_envs)
    sampler.sample(params, [0.3, -0.4], episodes_per_task=3)  # advances both random streams
    sampler.reseed(3)
    again = sampler.sample(params, [0.3, -0.4], episodes_per_task=3)
    for field in ("observations", "actions", "rewards", "mask"):
        assert torch.equal(getattr(first, field), getattr(again, field)), field
    assert sampler._vector_envs == copies
    sampler.reseed(3)
    assert sampler.draw_reset_seed(6) == Sampler(PointGoal1D(), policy_for(env), horizon=7, seed=3).draw_reset_seed(6)
    sampler.close()


def test_vector_path_reuses_env_copies_with_new_tasks() -> None:
    env = PointGoal1D()
    sampler = Sampler(env, policy_for(env), horizon=7, seed=0)
    params = sampler.policy.get_params()
    sampler.sample(params, [5.0, 5.0], 2)
    ep = sampler.sample(params, [0.0, 5.0], 2)  # same batch size: cached envs, new tasks
    assert torch.equal(ep.mask[0], torch.tensor([[1.0, 0, 0, 0, 0, 0, 0]] * 2))
    assert torch.equal(ep.mask[1], torch.ones(2, 7))
    assert len(sampler._vector_envs) == 1
    sampler.close()
    assert sampler._vector_envs == {}


# -- errors -------------------------------------------------------------------------------


def test_env_raising_in_step_surfaces_as_sampler_error() -> None:
    env = RaisingPoint()
    sampler = Sampler(env, policy_for(env), horizon=7, seed=0)
    with pytest.raises(SamplerError) as info:
        sampler.sample(sampler.policy.get_params(), [5.0, 5.0], episodes_per_task=2)
    message = str(info.value)
    assert "ValueError" in message
    assert "wheel fell off at step 4" in message
    assert "at step 3" in message  # the sampler's 0-based step index
    assert isinstance(info.value.__cause__, ValueError)


def test_env_raising_in_reset_surfaces_as_sampler_error() -> None:
    env = RaisingOnResetPoint()
    sampler = Sampler(env, policy_for(env), horizon=7, seed=0)
    with pytest.raises(SamplerError, match=r"OSError while resetting for 2 tasks: simulator not found"):
        sampler.sample(sampler.policy.get_params(), [5.0, 5.0], episodes_per_task=2)


def test_nan_rewards_raise_non_finite_batch_error() -> None:
    env = NaNRewardPoint()
    sampler = Sampler(env, policy_for(env), horizon=7, seed=0)
    with pytest.raises(NonFiniteBatchError, match=r"NaN or inf in rewards \(first in task 0\)"):
        sampler.sample(sampler.policy.get_params(), [5.0, 5.0], episodes_per_task=2)


def test_nan_params_raise_non_finite_batch_error_on_actions() -> None:
    sampler = nav_sampler()
    params = {k: torch.full_like(v, float("nan")) for k, v in sampler.policy.get_params().items()}
    # NaN actions move the point to NaN: the first field checked that holds them is named.
    with pytest.raises(
        NonFiniteBatchError, match=r"NaN or inf in (observations|actions) \(first in task 0\).*diverged policy"
    ):
        sampler.sample(params, nav_tasks(2), 2)


def test_sampler_rejects_non_family() -> None:
    from metarl.errors import TaskAPIError

    with pytest.raises(TaskAPIError, match="lacks sample_tasks, set_task, get_task"):
        Sampler("CartPole-v1", policy_for(PointGoal1D()), horizon=5)
