"""2D navigation: plain env vs batched env, task sampling, registration, the env checker."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metarl  # noqa: F401  (registers metarl/Navigation2D-v0)
from metarl.envs import BatchedNavigation2D, GoalTask, Navigation2DEnv
from metarl.errors import TaskNotSetError
from metarl.task_api import seed_family


def test_plain_and_batched_envs_give_identical_trajectories() -> None:
    tasks = [GoalTask((0.3, -0.2)), GoalTask((-0.45, 0.1)), GoalTask((0.05, 0.49))]
    n = 8
    rng = np.random.default_rng(0)
    # Actions up to +-0.3, so most components are clipped to [-0.1, 0.1].
    actions = rng.uniform(-0.3, 0.3, size=(100, len(tasks) * n, 2)).astype(np.float32)
    assert (np.abs(actions) > 0.1).mean() > 0.5

    batched = BatchedNavigation2D(tasks, n)
    assert batched.num_envs == 24
    b_obs = [batched.reset()]
    b_rew, b_term = [], []
    for a in actions:
        obs, rew, term = batched.step(torch.from_numpy(a))
        assert obs.dtype == torch.float32 and rew.dtype == torch.float32
        b_obs.append(obs)
        b_rew.append(rew)
        b_term.append(term)

    for b in range(len(tasks) * n):
        env = Navigation2DEnv()
        env.set_task(tasks[b // n])
        obs, _ = env.reset(seed=b)
        assert np.array_equal(obs, b_obs[0][b].numpy())
        for step, a in enumerate(actions):
            obs, reward, terminated, truncated, _ = env.step(a[b])
            assert obs.dtype == np.float32
            assert terminated == bool(b_term[step][b]) and not truncated, (b, step)
            assert np.array_equal(obs, b_obs[step + 1][b].numpy()), (b, step)
            assert np.float32(reward) == b_rew[step][b].item(), (b, step)


def test_reaching_the_goal_terminates_in_both_implementations() -> None:
    goal = (0.25, -0.15)
    env = Navigation2DEnv()
    env.set_task(GoalTask(goal))
    env.reset()
    batched = BatchedNavigation2D([GoalTask(goal)], 1)
    batched.reset()
    steps = [np.array([0.1, -0.1]), np.array([0.1, -0.05]), np.array([0.05, 0.0])]  # lands at (0.25, -0.15)
    for i, a in enumerate(steps):
        a = a.astype(np.float32)
        _, reward, terminated, truncated, _ = env.step(a)
        _, b_reward, b_term = batched.step(torch.from_numpy(a)[None])
        last = i == len(steps) - 1
        assert terminated is last and bool(b_term[0]) is last and not truncated
    assert reward == pytest.approx(0.0, abs=1e-6)
    # Within 0.01 on one axis only does not end the episode.
    env.set_task(GoalTask((0.1, 0.2)))
    env.reset()
    assert env.step(np.array([0.1, 0.1], dtype=np.float32))[2] is False


def test_actions_are_clipped() -> None:
    env = Navigation2DEnv()
    env.set_task(GoalTask((0.0, 0.0)))
    env.reset()
    obs, reward, *_ = env.step(np.array([5.0, -0.05], dtype=np.float32))
    np.testing.assert_array_equal(obs, np.array([0.1, -0.05], dtype=np.float32))
    assert reward == pytest.approx(-np.sqrt(0.1**2 + 0.05**2), rel=1e-6)
    batched = BatchedNavigation2D([GoalTask((0.0, 0.0))], 1)
    batched.reset()
    obs_b, rew_b, _ = batched.step(torch.tensor([[5.0, -0.05]]))
    assert np.array_equal(obs_b[0].numpy(), obs)


def test_reward_is_negative_distance_to_goal() -> None:
    env = Navigation2DEnv()
    env.set_task(GoalTask((0.3, 0.4)))
    obs, info = env.reset()
    np.testing.assert_array_equal(obs, np.zeros(2, dtype=np.float32))
    assert info["task"] == GoalTask((0.3, 0.4))
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-0.5, rel=1e-6)


def test_batched_episode_b_uses_task_b_div_n() -> None:
    tasks = [GoalTask((0.1, 0.2)), GoalTask((-0.3, 0.4))]
    batched = BatchedNavigation2D(tasks, 3)
    expected = torch.tensor([[0.1, 0.2]] * 3 + [[-0.3, 0.4]] * 3)
    assert torch.equal(batched.goals, expected)


def test_batched_rejects_wrong_action_shape() -> None:
    batched = BatchedNavigation2D([GoalTask((0.1, 0.2))], 2)
    batched.reset()
    with pytest.raises(ValueError, match=r"expects actions of shape \(2, 2\), got \(3, 2\)"):
        batched.step(torch.zeros(3, 2))


def test_batched_rejects_empty() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        BatchedNavigation2D([], 2)
    with pytest.raises(ValueError, match="at least one task"):
        BatchedNavigation2D([GoalTask((0.0, 0.0))], 0)


def test_tasks_are_reproducible_with_seed_family_and_differ_across_seeds() -> None:
    def draw(seed: int) -> list[GoalTask]:
        env = Navigation2DEnv()
        seed_family(env, seed)
        return env.sample_tasks(5)

    a, b, c = draw(0), draw(0), draw(1)
    assert a == b
    assert a != c
    assert len(a) == 5 and all(isinstance(task, GoalTask) for task in a)
    # Consecutive draws continue the stream, they do not repeat it.
    env = Navigation2DEnv()
    seed_family(env, 0)
    first, second = env.sample_tasks(5), env.sample_tasks(5)
    assert first == a and second != a


def test_sample_tasks_uses_the_env_rng_not_the_global_one() -> None:
    env = Navigation2DEnv()
    seed_family(env, 7)
    np.random.seed(123)
    a = env.sample_tasks(3)
    env2 = Navigation2DEnv()
    seed_family(env2, 7)
    np.random.seed(999)
    assert env2.sample_tasks(3) == a


def test_goals_lie_in_the_unit_box() -> None:
    env = Navigation2DEnv()
    seed_family(env, 3)
    goals = np.array([task.goal for task in env.sample_tasks(2000)])
    assert goals.shape == (2000, 2)
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    # They fill the box (not a degenerate sampler).
    assert goals.min() < -0.45 and goals.max() > 0.45


def test_sample_tasks_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        Navigation2DEnv().sample_tasks(0)


def test_reset_and_step_before_set_task_raise() -> None:
    env = Navigation2DEnv()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.reset()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.get_task()


def test_set_task_accepts_mapping_and_rejects_garbage() -> None:
    env = Navigation2DEnv()
    env.set_task({"goal": [0.1, -0.2]})
    assert env.get_task() == GoalTask((0.1, -0.2))
    with pytest.raises(TypeError, match="expects a GoalTask"):
        env.set_task((0.1, 0.2))


def test_reset_options_can_set_the_task() -> None:
    env = Navigation2DEnv()
    _, info = env.reset(options={"task": GoalTask((0.2, 0.2))})
    assert info["task"] == GoalTask((0.2, 0.2))
    assert env.get_task() == GoalTask((0.2, 0.2))


def test_gymnasium_make_after_import_truncates_at_100_steps() -> None:
    env = gym.make("metarl/Navigation2D-v0")
    assert isinstance(env.unwrapped, Navigation2DEnv)
    assert env.spec is not None and env.spec.max_episode_steps == 100
    env.unwrapped.set_task(GoalTask((0.4, 0.4)))
    env.reset(seed=0)
    action = np.zeros(2, dtype=np.float32)
    for step in range(1, 100):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated and not truncated, step
    _, _, terminated, truncated, _ = env.step(action)
    assert truncated and not terminated
    env.close()


@pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")  # unbounded positions by design
def test_env_checker_passes_after_set_task() -> None:
    env = Navigation2DEnv()
    env.set_task(GoalTask((0.1, 0.2)))
    check_env(env, skip_render_check=True)
    # The checker resets and steps the env; the task survives.
    assert env.get_task() == GoalTask((0.1, 0.2))
