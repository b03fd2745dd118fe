"""Task families defined outside metarl, as a user would write them (used by tests/test_check_env.py).

Pure numpy and fast. ``GoodFamily`` follows the task-family API; each broken family breaks
exactly one thing that ``metarl check-env`` checks. Tests import this module as
``user_families`` (pytest puts ``tests/`` on ``sys.path``; subprocesses get it through
``PYTHONPATH``).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from metarl.errors import TaskNotSetError


class GoodFamily(gym.Env):
    """A point on a line moving toward a per-task goal; reward = -|position - goal|.

    Args:
        goal_scale: Goals are drawn from U[-goal_scale, goal_scale] (a task-space argument,
            passed through ``env_kwargs``).
    """

    metadata = {"render_modes": []}
    built_with: ClassVar[list[float]] = []
    """The ``goal_scale`` of every instance built, in order (lets tests see env kwargs arrive)."""

    def __init__(self, goal_scale: float = 1.0) -> None:
        self.goal_scale = float(goal_scale)
        GoodFamily.built_with.append(self.goal_scale)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, shape=(1,), dtype=np.float32)
        self._goal: float | None = None
        self._pos = np.zeros(1, dtype=np.float32)

    def sample_tasks(self, n: int) -> list[dict[str, float]]:
        """``n`` goals drawn with ``self.np_random``."""
        return [{"goal": float(g)} for g in self.np_random.uniform(-self.goal_scale, self.goal_scale, size=n)]

    def set_task(self, task: dict[str, float]) -> None:
        self._goal = float(task["goal"])

    def get_task(self) -> dict[str, float]:
        if self._goal is None:
            raise TaskNotSetError("GoodFamily has no task: call set_task first.")
        return {"goal": self._goal}

    def _reward(self) -> float:
        return -abs(float(self._pos[0]) - self._target())

    def _target(self) -> float:
        if self._goal is None:
            raise TaskNotSetError("GoodFamily has no task: call set_task before reset/step.")
        return self._goal

    def _observation(self) -> np.ndarray:
        return self._pos.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._target()
        self._pos = np.zeros(1, dtype=np.float32)
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._pos = self._pos + np.clip(np.asarray(action, dtype=np.float32), -0.1, 0.1)
        return self._observation(), self._reward(), False, False, {}


class GoodFamilyWithHorizon(GoodFamily):
    """``GoodFamily`` whose class attribute sets the registered ``max_episode_steps``."""

    max_episode_steps = 7


def make_good_family(goal_scale: float = 1.0) -> GoodFamily:
    """A factory function: specs may name a function that returns the env."""
    return GoodFamily(goal_scale)


def make_not_an_env() -> str:
    """A factory that returns something other than an env."""
    return "not an env"


class NoSetTask(GoodFamily):
    """Broken: no ``set_task``."""

    set_task = None  # type: ignore[assignment]


class UnseededTasks(GoodFamily):
    """Broken: draws tasks from numpy's global RNG instead of ``self.np_random``."""

    def sample_tasks(self, n: int) -> list[dict[str, float]]:
        return [{"goal": float(g)} for g in np.random.uniform(-1.0, 1.0, size=n)]


class WrongObservationShape(GoodFamily):
    """Broken: observations have shape (2,) while ``observation_space`` says (1,)."""

    def _observation(self) -> np.ndarray:
        return np.concatenate([self._pos, self._pos])


class TaskIgnored(GoodFamily):
    """Broken: ``set_task`` stores the task but rewards always use goal 0.5."""

    def _target(self) -> float:
        super()._target()
        return 0.5


class StepRaises(GoodFamily):
    """Broken: ``step`` raises (check-env must report it, not crash)."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        raise RuntimeError("simulated physics blow-up")


class ShortTasks(GoodFamily):
    """Broken: ``sample_tasks(n)`` returns ``n - 1`` tasks."""

    def sample_tasks(self, n: int) -> list[dict[str, float]]:
        return super().sample_tasks(n)[:-1]


class NoneTasks(GoodFamily):
    """Broken: ``sample_tasks`` returns ``None``."""

    def sample_tasks(self, n: int) -> None:  # type: ignore[override]
        return None


class RaisingTasks(GoodFamily):
    """Broken: ``sample_tasks`` raises."""

    def sample_tasks(self, n: int) -> list[dict[str, float]]:
        raise RuntimeError("task file not found")


class RaisingConstructor(GoodFamily):
    """Broken: the constructor raises."""

    def __init__(self, goal_scale: float = 1.0) -> None:
        raise OSError("simulator licence not found")


class DictObservation(GoodFamily):
    """Unsupported as is: a ``Dict`` observation (``flat_dict_observation`` flattens it)."""

    def __init__(self, goal_scale: float = 1.0) -> None:
        super().__init__(goal_scale)
        self.observation_space = gym.spaces.Dict({"position": gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)})

    def _observation(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {"position": self._pos.copy()}


def flat_dict_observation(goal_scale: float = 1.0) -> gym.Env:
    """``DictObservation`` flattened by a Gymnasium wrapper: trainable."""
    return gym.wrappers.FlattenObservation(DictObservation(goal_scale))


class ImageObservation(GoodFamily):
    """Unsupported: a 3-D ``Box`` observation (an image)."""

    def __init__(self, goal_scale: float = 1.0) -> None:
        super().__init__(goal_scale)
        self.observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)

    def _observation(self) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)


class NanReward(GoodFamily):
    """Broken: rewards are NaN."""

    def _reward(self) -> float:
        return float("nan")


class InfObservation(GoodFamily):
    """Broken: observations are inf (inside its unbounded ``Box``)."""

    def _observation(self) -> np.ndarray:
        return np.full(1, np.inf, dtype=np.float32)


class _FunctionGoal:
    """A task holding a function: compares by value, cannot be pickled."""

    def __init__(self, goal: float) -> None:
        self.goal = goal
        self.shaping = lambda distance: -abs(distance)


class FunctionTasks(GoodFamily):
    """Seeded correctly, but its tasks hold lambdas (not picklable)."""

    def sample_tasks(self, n: int) -> list[_FunctionGoal]:  # type: ignore[override]
        return [_FunctionGoal(float(g)) for g in self.np_random.uniform(-1.0, 1.0, size=n)]

    def set_task(self, task: _FunctionGoal) -> None:  # type: ignore[override]
        self._task = task
        self._goal = task.goal

    def get_task(self) -> _FunctionGoal:  # type: ignore[override]
        return self._task


class ResetKeepsState(GoodFamily):
    """Broken: ``reset`` does not reset the position (state leaks across episodes)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        gym.Env.reset(self, seed=seed)
        self._target()
        return self._observation(), {}


class SlowStep(GoodFamily):
    """Correct but slow: every step sleeps 0.2 s (the Ray sampler's timeout test)."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        time.sleep(0.2)
        return super().step(action)


class WithSuccess(GoodFamily):
    """``GoodFamily`` that reports success: ``info["success"]`` is 1.0 at the steps where the point
    is within 0.05 of the goal (as Meta-World reports it)."""

    reports_success = True

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "success": float(-reward < 0.05)}


class NotAnEnv:
    """Not a ``gymnasium.Env``."""


NOT_CALLABLE = 3
