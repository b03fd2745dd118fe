"""The task-family API: what a meta-RL environment must offer (a leaf module).

A *task family* is a ``gymnasium.Env`` whose goal or dynamics depend on a task, plus
three methods::

    tasks = env.sample_tasks(n)   # n tasks drawn from env.np_random (seed it: seed_family(env, seed))
    env.set_task(tasks[0])        # the env now behaves as that task
    env.get_task()                # the current task

A family may also offer a *batched* implementation, a ``BatchedTaskEnv`` that steps many
(task, episode) pairs at once as tensors (its ``make_batched(tasks, episodes_per_task)``);
the sampler uses it when present and falls back to a Gymnasium vector env otherwise.
Two optional extras: ``sample_test_tasks(n)``, a meta-test split that evaluation adapts on
instead of fresh ``sample_tasks`` draws (Meta-World), and ``reports_success = True`` for a
family whose ``step`` puts ``info["success"]`` (logs then show success rates).
How to get a family by name is ``metarl.families``.

Example:
    >>> from metarl.families import make_family
    >>> env = make_family("Navigation2D")
    >>> seed_family(env, 0)
    >>> env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import gymnasium as gym
import torch
from gymnasium.utils import seeding

from metarl.errors import MetarlError, TaskAPIError

TASK_API = ("sample_tasks", "set_task", "get_task")


@runtime_checkable
class TaskFamily(Protocol):
    """Structural type of a task family (a ``gymnasium.Env`` with the three task methods)."""

    observation_space: gym.Space
    action_space: gym.Space

    def sample_tasks(self, n: int) -> list[Any]:
        """Draw ``n`` tasks from the env's own RNG (``self.np_random``)."""

    def set_task(self, task: Any) -> None:
        """Make the env behave as ``task``."""

    def get_task(self) -> Any:
        """Return the current task."""


class BatchedTaskEnv(Protocol):
    """Steps ``len(tasks) * episodes_per_task`` episodes at once, as float32 CPU tensors.

    Episode ``b`` belongs to task ``b // episodes_per_task`` (task-major order).

    Optional attributes the sampler reads: ``torch_threads`` (torch's thread count during a
    rollout, for envs with threads of their own) and ``split_invariant`` (``True`` when
    episode ``b`` depends only on its task, its reset seed ``seed + b`` and its actions, so
    that a slice of the batch sampled alone, on a Ray worker, gets the same episodes;
    absent means ``False`` and the Ray sampler refuses the family).
    """

    num_envs: int

    def reset(self) -> torch.Tensor:
        """Start every episode; returns observations ``[B, obs_dim]``."""

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every episode one step.

        Args:
            actions: ``[B, act_dim]`` (continuous) or ``[B]`` (discrete).

        Returns:
            ``(obs [B, obs_dim], reward [B], terminated [B] bool)``.
        """


def check_task_family(env: Any, name: str | None = None) -> None:
    """Raise ``TaskAPIError`` unless ``env`` is a Gymnasium env with the task API.

    Args:
        env: The environment to check (wrappers are looked through).
        name: How to call the env in the message (defaults to its class name).

    Raises:
        TaskAPIError: With the missing methods and how to add them.
    """
    label = name or type(env).__name__
    if not isinstance(env, gym.Env):
        raise TaskAPIError(
            f"{label} is a {type(env).__name__}, not a gymnasium.Env; a task family must subclass gymnasium.Env."
        )
    base = env.unwrapped
    missing = [m for m in TASK_API if not callable(getattr(base, m, None))]
    if missing:
        raise TaskAPIError(
            f"{label} is not a task family: it lacks {', '.join(missing)}. "
            "A task family is a gymnasium.Env with sample_tasks(n) -> list, set_task(task) and "
            "get_task(); add them (see docs/task-families.md and envs/navigation.py for an example)."
        )


def sample_tasks(env: gym.Env, n: int) -> list[Any]:
    """``env``'s ``sample_tasks(n)``, checked: exactly ``n`` tasks in a list.

    Raises:
        TaskAPIError: ``sample_tasks`` raised, or returned something other than a list of
            ``n`` tasks (the message names the family and says what to fix).
    """
    return _checked_tasks(env, "sample_tasks", n)


def sample_test_tasks(env: gym.Env, n: int) -> list[Any]:
    """``n`` held-out tasks for evaluation: the family's ``sample_test_tasks(n)`` when it has a
    meta-test split of its own (Meta-World's test goals and classes), else ``sample_tasks(n)``
    (fresh draws from the training distribution, from an RNG seeded apart from training's).

    Raises:
        TaskAPIError: As ``sample_tasks``.
    """
    has_split = callable(getattr(env.unwrapped, "sample_test_tasks", None))
    return _checked_tasks(env, "sample_test_tasks" if has_split else "sample_tasks", n)


def _checked_tasks(env: gym.Env, method: str, n: int) -> list[Any]:
    """``env.unwrapped.<method>(n)``, raising ``TaskAPIError`` unless it returns a list of ``n`` tasks."""
    base = env.unwrapped
    call = f"{type(base).__name__}.{method}({n})"
    try:
        tasks = getattr(base, method)(n)
    except MetarlError:
        raise
    except Exception as e:
        raise TaskAPIError(
            f"{call} raised {type(e).__name__}: {e}. Fix the family "
            "(`metarl check-env` runs each method of the task API on it)."
        ) from e
    if not isinstance(tasks, list):
        raise TaskAPIError(f"{call} returned a {type(tasks).__name__}, not a list of {n} tasks. Return a list.")
    if len(tasks) != n:
        raise TaskAPIError(f"{call} returned {len(tasks)} tasks, not {n}. Return exactly n tasks.")
    return tasks


def reports_success(env: gym.Env) -> bool:
    """Whether the family says its steps report ``info["success"]`` (``reports_success = True``),
    so that logs get success-rate columns."""
    return bool(getattr(env.unwrapped, "reports_success", False))


def seed_family(env: gym.Env, seed: int) -> None:
    """Seed the family's own RNG (``env.np_random``), from which ``sample_tasks`` draws.

    Unlike ``env.reset(seed=...)`` this needs no task to be set first.
    """
    env.unwrapped.np_random, _ = seeding.np_random(seed)


def make_batched(env: gym.Env, tasks: Sequence[Any], episodes_per_task: int) -> BatchedTaskEnv | None:
    """The family's batched implementation for these tasks, or ``None`` if it has none."""
    factory = getattr(env.unwrapped, "make_batched", None)
    return factory(tasks, episodes_per_task) if callable(factory) else None
