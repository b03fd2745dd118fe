"""The task-family API: resolving ids, creating families, and the errors for misuse."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from metarl.envs import BatchedNavigation2D, GoalTask, Navigation2DEnv
from metarl.errors import TaskAPIError, UnknownFamilyError
from metarl.families import known_family_ids, make_family, resolve_family_id
from metarl.task_api import TaskFamily, check_task_family, make_batched, seed_family


class HalfFamily(gym.Env):
    """Has sample_tasks but neither set_task nor get_task."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def sample_tasks(self, n: int) -> list[Any]:
        return [0] * n


class NotCallableFamily(HalfFamily):
    set_task = None  # present but not a method
    get_task = "nope"


@pytest.mark.parametrize("family", ["Navigation2D", "metarl/Navigation2D", "metarl/Navigation2D-v0"])
def test_resolve_family_id_accepts_short_and_full_ids(family: str) -> None:
    assert resolve_family_id(family) == "metarl/Navigation2D-v0"


def test_resolve_family_id_accepts_any_registered_gymnasium_id() -> None:
    assert resolve_family_id("CartPole-v1") == "CartPole-v1"


def test_known_family_ids_lists_navigation() -> None:
    assert "metarl/Navigation2D-v0" in known_family_ids()
    assert all(i.startswith("metarl/") for i in known_family_ids())


def test_typo_in_family_suggests_the_right_one() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        make_family("Navigatoin2D")
    message = str(info.value)
    assert "Unknown task family 'Navigatoin2D'" in message
    assert "Did you mean" in message
    assert "'Navigation2D'" in message


def test_unknown_family_without_close_match_lists_families() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        resolve_family_id("Qwzx")
    message = str(info.value)
    assert "Did you mean" not in message
    families = message.split("metarl families: ")[1]
    assert "Navigation2D" in families and "HalfCheetahVel" in families


def test_unknown_family_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        resolve_family_id("Nope")


def test_env_without_task_api_raises_naming_missing_methods() -> None:
    with pytest.raises(TaskAPIError) as info:
        make_family("CartPole-v1")
    message = str(info.value)
    assert message.startswith("CartPole-v1 is not a task family")
    assert "it lacks sample_tasks, set_task, get_task" in message


def test_partial_task_api_names_only_the_missing_methods() -> None:
    with pytest.raises(TaskAPIError, match=r"HalfFamily is not a task family: it lacks set_task, get_task\."):
        check_task_family(HalfFamily())
    with pytest.raises(TaskAPIError, match=r"it lacks set_task, get_task\."):
        check_task_family(NotCallableFamily())


def test_non_env_object_raises() -> None:
    with pytest.raises(TaskAPIError, match="is a dict, not a gymnasium.Env"):
        check_task_family({"sample_tasks": None})


def test_check_task_family_looks_through_wrappers() -> None:
    env = gym.wrappers.TimeLimit(Navigation2DEnv(), max_episode_steps=5)
    check_task_family(env)  # no error: the base env has the API
    with pytest.raises(TaskAPIError, match="lacks set_task, get_task"):
        check_task_family(gym.wrappers.TimeLimit(HalfFamily(), max_episode_steps=5))


def test_make_family_returns_a_checked_navigation_env() -> None:
    env = make_family("Navigation2D")
    assert isinstance(env.unwrapped, Navigation2DEnv)
    assert isinstance(env.unwrapped, TaskFamily)
    assert env.spec is not None and env.spec.max_episode_steps == 100


def test_make_batched_uses_the_family_factory_or_returns_none() -> None:
    env = make_family("Navigation2D")
    seed_family(env, 0)
    tasks = env.unwrapped.sample_tasks(3)
    batched = make_batched(env, tasks, 2)
    assert isinstance(batched, BatchedNavigation2D)
    assert batched.num_envs == 6
    assert make_batched(HalfFamily(), [0], 2) is None


def test_seed_family_needs_no_task_and_is_reproducible() -> None:
    env = make_family("Navigation2D")
    seed_family(env, 11)
    a = env.unwrapped.sample_tasks(4)
    seed_family(env, 11)
    assert env.unwrapped.sample_tasks(4) == a
    assert all(isinstance(task, GoalTask) for task in a)


def test_suggestions_are_not_repeated() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        resolve_family_id("metarl/Navigation3D-v0")
    message = str(info.value)
    assert "Did you mean" in message
    assert message.count("'metarl/Navigation2D-v0'") == 1
