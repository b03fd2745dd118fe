"""The task-family API: what a meta-RL environment must offer, and how to get one.

A *task family* is a ``gymnasium.Env`` whose goal or dynamics depend on a task, plus
three methods::

    tasks = env.sample_tasks(n)   # n tasks drawn from env.np_random (seed it: seed_family(env, seed))
    env.set_task(tasks[0])        # the env now behaves as that task
    env.get_task()                # the current task

A family may also offer a *batched* implementation, a ``BatchedTaskEnv`` that steps many
(task, episode) pairs at once as tensors; the sampler uses it when present and falls back
to a Gymnasium vector env otherwise.

Example:
    >>> from metarl.tasks import make_family
    >>> env = make_family("Navigation2D")
    >>> seed_family(env, 0)
    >>> env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol, Sequence, runtime_checkable

import gymnasium as gym
import torch
from gymnasium.utils import seeding

TASK_API = ("sample_tasks", "set_task", "get_task")


class TaskAPIError(TypeError):
    """An environment does not implement the task-family API."""


class TaskNotSetError(RuntimeError):
    """A task family was reset or stepped before ``set_task`` was called."""


class UnknownFamilyError(ValueError):
    """A family id that is neither a metarl family nor a registered Gymnasium env."""


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
        raise TaskAPIError(f"{label} is a {type(env).__name__}, not a gymnasium.Env; a task family must subclass gymnasium.Env.")
    base = env.unwrapped
    missing = [m for m in TASK_API if not callable(getattr(base, m, None))]
    if missing:
        raise TaskAPIError(
            f"{label} is not a task family: it lacks {', '.join(missing)}. "
            "A task family is a gymnasium.Env with sample_tasks(n) -> list, set_task(task) and "
            "get_task(); add them (see metarl/tasks.py and envs/navigation.py for an example)."
        )


def known_family_ids() -> list[str]:
    """All registered Gymnasium ids under the ``metarl/`` namespace."""
    import metarl.envs  # noqa: F401  (registers the families)

    return sorted(k for k in gym.registry if k.startswith("metarl/"))


def resolve_family_id(family: str) -> str:
    """Turn a short name (``"Navigation2D"``) or a full Gymnasium id into a registered id.

    Raises:
        UnknownFamilyError: With close matches ("did you mean ...").
    """
    ids = known_family_ids()
    if family in gym.registry:
        return family
    for candidate in (f"{family}-v0", f"metarl/{family}", f"metarl/{family}-v0"):
        if candidate in gym.registry:
            return candidate
    short = {i.removeprefix("metarl/").rsplit("-v", 1)[0]: i for i in ids}
    choices = list(dict.fromkeys([*short, *ids, *gym.registry]))  # ids are also in the registry: no repeats
    close = difflib.get_close_matches(family, choices, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownFamilyError(
        f"Unknown task family {family!r}.{hint} metarl families: {', '.join(short) or 'none'}; "
        "a registered Gymnasium id with the task API also works."
    )


def make_family(family: str, **kwargs: Any) -> gym.Env:
    """Create a task family by id and check that it implements the task API.

    Args:
        family: ``"Navigation2D"``, ``"metarl/Navigation2D-v0"`` or any registered Gymnasium id.
        **kwargs: Passed to ``gymnasium.make``.

    Raises:
        UnknownFamilyError: The id is not registered.
        TaskAPIError: The env lacks ``sample_tasks`` / ``set_task`` / ``get_task``.
    """
    env_id = resolve_family_id(family)
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    check_task_family(env, name=env_id)
    return env


def seed_family(env: gym.Env, seed: int) -> None:
    """Seed the family's own RNG (``env.np_random``), from which ``sample_tasks`` draws.

    Unlike ``env.reset(seed=...)`` this needs no task to be set first.
    """
    env.unwrapped.np_random, _ = seeding.np_random(seed)


def make_batched(env: gym.Env, tasks: Sequence[Any], episodes_per_task: int) -> BatchedTaskEnv | None:
    """The family's batched implementation for these tasks, or ``None`` if it has none."""
    factory = getattr(env.unwrapped, "make_batched", None)
    return factory(tasks, episodes_per_task) if callable(factory) else None
