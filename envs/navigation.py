"""2D navigation: a point agent moves toward a goal that differs per task.

The task of the MAML paper (Finn et al. 2017, section 5.3) and of pytorch-maml-rl:

* state = observation = the agent's position, starting at the origin;
* task = a goal drawn from U[-0.5, 0.5]^2;
* action = a displacement, clipped to [-0.1, 0.1]^2;
* reward = -||position - goal|| after the move;
* the episode terminates once the agent is within 0.01 of the goal in both coordinates
  (as in the MAML paper's point env and pytorch-maml-rl), else it is truncated after
  100 steps (set by the Gymnasium registration).

``Navigation2DEnv`` is the plain Gymnasium env; ``BatchedNavigation2D`` steps many
(task, episode) pairs as torch tensors and produces identical float32 trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from metarl.errors import TaskNotSetError

MAX_ACTION = 0.1
GOAL_LOW, GOAL_HIGH = -0.5, 0.5
GOAL_TOLERANCE = 0.01


@dataclass(frozen=True)
class GoalTask:
    """A 2D-navigation task: the goal position ``(x, y)``."""

    goal: tuple[float, float]


class Navigation2DEnv(gym.Env):
    """Point-mass 2D navigation to a per-task goal (see the module docstring).

    Example:
        >>> env = Navigation2DEnv()
        >>> _ = env.reset(seed=0)
        >>> env.set_task(env.sample_tasks(1)[0])
        >>> obs, info = env.reset()
        >>> obs.tolist()
        [0.0, 0.0]
    """

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        self._task: GoalTask | None = None
        self._goal = np.zeros(2, dtype=np.float32)
        self._state = np.zeros(2, dtype=np.float32)

    def sample_tasks(self, n: int) -> list[GoalTask]:
        """Draw ``n`` goals uniformly from [-0.5, 0.5]^2 with ``self.np_random``."""
        if n < 1:
            raise ValueError(f"sample_tasks needs n >= 1, got {n}.")
        goals = self.np_random.uniform(GOAL_LOW, GOAL_HIGH, size=(n, 2))
        return [GoalTask(goal=(float(x), float(y))) for x, y in goals]

    def set_task(self, task: GoalTask) -> None:
        """Set the goal; takes a ``GoalTask`` (or a mapping with key ``goal``)."""
        if isinstance(task, dict):
            task = GoalTask(goal=tuple(float(g) for g in task["goal"]))  # type: ignore[arg-type]
        if not isinstance(task, GoalTask) or len(task.goal) != 2:
            raise TypeError(f"Navigation2DEnv.set_task expects a GoalTask with a 2D goal, got {task!r}.")
        self._task = task
        self._goal = np.asarray(task.goal, dtype=np.float32)

    def get_task(self) -> GoalTask:
        """The current task."""
        self._require_task()
        assert self._task is not None
        return self._task

    def _require_task(self) -> None:
        if self._task is None:
            raise TaskNotSetError(
                "Navigation2DEnv has no task: call env.set_task(task) (tasks come from env.sample_tasks(n)) before "
                "reset/step."
            )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._require_task()
        self._state = np.zeros(2, dtype=np.float32)
        return self._state.copy(), {"task": self._task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._require_task()
        action = np.clip(np.asarray(action, dtype=np.float32), -MAX_ACTION, MAX_ACTION)
        self._state = self._state + action
        d = self._state - self._goal
        reward = -np.sqrt(np.sum(d * d, dtype=np.float32), dtype=np.float32)
        terminated = bool(np.all(np.abs(d) < GOAL_TOLERANCE))
        return self._state.copy(), float(reward), terminated, False, {"task": self._task}

    def make_batched(self, tasks: Sequence[GoalTask], episodes_per_task: int) -> BatchedNavigation2D:
        """The batched implementation for ``tasks`` x ``episodes_per_task`` episodes."""
        return BatchedNavigation2D(tasks, episodes_per_task)


class BatchedNavigation2D:
    """``len(tasks) * episodes_per_task`` navigation episodes stepped as one tensor.

    Episode ``b`` has task ``tasks[b // episodes_per_task]``. Gives the same float32
    trajectories as ``Navigation2DEnv`` for the same tasks and actions.
    """

    def __init__(self, tasks: Sequence[GoalTask], episodes_per_task: int) -> None:
        if not tasks or episodes_per_task < 1:
            raise ValueError("BatchedNavigation2D needs at least one task and one episode per task.")
        goals = torch.tensor([t.goal for t in tasks], dtype=torch.float32)
        self.goals = goals.repeat_interleave(episodes_per_task, dim=0)  # [B, 2]
        self.num_envs = self.goals.shape[0]
        self.state = torch.zeros(self.num_envs, 2)
        self.split_invariant = True  # deterministic: an episode depends on its goal and actions only

    def reset(self) -> torch.Tensor:
        self.state = torch.zeros(self.num_envs, 2)
        return self.state.clone()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if actions.shape != (self.num_envs, 2):
            raise ValueError(
                f"BatchedNavigation2D.step expects actions of shape {(self.num_envs, 2)}, got {tuple(actions.shape)}."
            )
        self.state = self.state + actions.to(torch.float32).clamp(-MAX_ACTION, MAX_ACTION)
        d = self.state - self.goals
        # torch's float32 CPU sqrt is not always correctly rounded (1 ulp off numpy's); the float64
        # sqrt of a float32, rounded to float32, is, so rewards match Navigation2DEnv bit for bit.
        reward = -torch.sqrt((d * d).sum(-1).double()).float()
        terminated = (d.abs() < GOAL_TOLERANCE).all(-1)
        return self.state.clone(), reward, terminated
