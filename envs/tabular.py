"""Tabular task families with an exact answer: random MDPs and Bernoulli bandits.

As pytorch-maml-rl's ``TabularMDPEnv`` and ``BernoulliBanditEnv`` (Duan et al. 2016, RL^2):

* ``TabularMDPEnv``: ``S`` states, ``A`` actions (10 and 5 by default); a task is a
  transition table ``P[s, a] ~ Dirichlet(1)`` over next states and a reward table
  ``R[s, a] ~ N(1, 1)``; the episode starts in state 0, the observation is the one-hot
  state, the reward of ``a`` in ``s`` is ``R[s, a]`` (deterministic: pytorch-maml-rl adds
  unit Gaussian noise, which changes no expectation, only the variance), and the episode
  is truncated after 10 steps (the Gymnasium registration).
* ``BanditEnv``: ``K`` arms (5 by default) with means ``p_k ~ U[0, 1]``; one state, the
  observation is the constant ``[1.0]``, the reward of arm ``k`` is Bernoulli(``p_k``);
  truncated after 10 pulls.

Both tasks convert to ``(P [S, A, S], R [S, A], initial [S])`` with ``task.model()``, from
which ``metarl.exact`` computes expected returns by dynamic programming (a bandit is a
one-state MDP whose reward table holds the arm means).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from metarl.errors import TaskNotSetError


@dataclass(frozen=True)
class TabularTask:
    """A tabular-MDP task: ``transitions[s][a][s']`` (rows sum to 1) and ``rewards[s][a]``."""

    transitions: tuple[tuple[tuple[float, ...], ...], ...]
    rewards: tuple[tuple[float, ...], ...]

    def model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(P [S, A, S], R [S, A], initial [S])`` as float64 arrays (the episode starts in state 0)."""
        p = np.asarray(self.transitions, dtype=np.float64)
        initial = np.zeros(p.shape[0])
        initial[0] = 1.0
        return p, np.asarray(self.rewards, dtype=np.float64), initial


@dataclass(frozen=True)
class BanditTask:
    """A Bernoulli-bandit task: the success probability of every arm."""

    means: tuple[float, ...]

    def model(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one-state MDP ``(P [1, K, 1], R [1, K], initial [1])`` with expected rewards."""
        k = len(self.means)
        return np.ones((1, k, 1)), np.asarray(self.means, dtype=np.float64)[None], np.ones(1)


class _TaskEnv(gym.Env):
    """Shared task bookkeeping of the tabular families."""

    metadata = {"render_modes": []}
    _task: Any = None

    def get_task(self) -> Any:
        """The current task."""
        self._require_task()
        return self._task

    def _require_task(self) -> None:
        if self._task is None:
            name = type(self).__name__
            raise TaskNotSetError(
                f"{name} has no task: call env.set_task(task) (tasks come from env.sample_tasks(n)) before reset/step."
            )


class TabularMDPEnv(_TaskEnv):
    """A random tabular MDP per task (see the module docstring).

    Args:
        num_states: Number of states S.
        num_actions: Number of actions A.

    Example:
        >>> env = TabularMDPEnv()
        >>> _ = env.reset(seed=0)
        >>> env.set_task(env.sample_tasks(1)[0])
        >>> obs, info = env.reset()
        >>> int(obs.argmax())
        0
    """

    def __init__(self, num_states: int = 10, num_actions: int = 5) -> None:
        if num_states < 1 or num_actions < 1:
            raise ValueError(
                f"TabularMDPEnv needs num_states and num_actions >= 1, got {num_states} and {num_actions}."
            )
        self.num_states, self.num_actions = num_states, num_actions
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)
        self._task: TabularTask | None = None
        self._p = np.zeros((num_states, num_actions, num_states))
        self._r = np.zeros((num_states, num_actions))
        self._state = 0

    def sample_tasks(self, n: int) -> list[TabularTask]:
        """Draw ``n`` tasks: ``P[s, a] ~ Dirichlet(1)``, ``R[s, a] ~ N(1, 1)``, from ``self.np_random``."""
        if n < 1:
            raise ValueError(f"sample_tasks needs n >= 1, got {n}.")
        s, a = self.num_states, self.num_actions
        p = self.np_random.dirichlet(np.ones(s), size=(n, s, a))
        r = self.np_random.normal(1.0, 1.0, size=(n, s, a))
        return [
            TabularTask(
                transitions=tuple(tuple(tuple(row) for row in ps) for ps in pk), rewards=tuple(tuple(row) for row in rk)
            )
            for pk, rk in zip(p.tolist(), r.tolist())
        ]

    def set_task(self, task: TabularTask) -> None:
        """Set the transition and reward tables."""
        if not isinstance(task, TabularTask):
            raise TypeError(f"TabularMDPEnv.set_task expects a TabularTask, got {type(task).__name__}.")
        p, r, _ = task.model()
        if p.shape != (self.num_states, self.num_actions, self.num_states):
            raise ValueError(
                f"The task has tables for {p.shape[0]} states x {p.shape[1]} actions, the env {self.num_states} x "
                f"{self.num_actions}."
            )
        self._task, self._p, self._r = task, p, r

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.num_states, dtype=np.float32)
        obs[self._state] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._require_task()
        self._state = 0
        return self._obs(), {"task": self._task}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._require_task()
        a = int(action)
        reward = float(self._r[self._state, a])
        self._state = int(self.np_random.choice(self.num_states, p=self._p[self._state, a]))
        return self._obs(), reward, False, False, {"task": self._task}

    def make_batched(self, tasks: Sequence[TabularTask], episodes_per_task: int) -> BatchedTabularMDP:
        """The batched implementation for ``tasks`` x ``episodes_per_task`` episodes."""
        return BatchedTabularMDP([t.model() for t in tasks], episodes_per_task)


class BanditEnv(_TaskEnv):
    """K-armed Bernoulli bandits (see the module docstring).

    Args:
        num_arms: Number of arms K.
    """

    def __init__(self, num_arms: int = 5) -> None:
        if num_arms < 1:
            raise ValueError(f"BanditEnv needs num_arms >= 1, got {num_arms}.")
        self.num_arms = num_arms
        self.observation_space = gym.spaces.Box(1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(num_arms)
        self._task: BanditTask | None = None

    def sample_tasks(self, n: int) -> list[BanditTask]:
        """Draw ``n`` tasks with arm means ``~ U[0, 1]`` from ``self.np_random``."""
        if n < 1:
            raise ValueError(f"sample_tasks needs n >= 1, got {n}.")
        return [BanditTask(means=tuple(m)) for m in self.np_random.uniform(0.0, 1.0, size=(n, self.num_arms)).tolist()]

    def set_task(self, task: BanditTask) -> None:
        """Set the arm means."""
        if not isinstance(task, BanditTask) or len(task.means) != self.num_arms:
            raise TypeError(f"BanditEnv.set_task expects a BanditTask with {self.num_arms} arm means, got {task!r}.")
        self._task = task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._require_task()
        return np.ones(1, dtype=np.float32), {"task": self._task}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._require_task()
        assert self._task is not None
        reward = float(self.np_random.random() < self._task.means[int(action)])
        return np.ones(1, dtype=np.float32), reward, False, False, {"task": self._task}

    def make_batched(self, tasks: Sequence[BanditTask], episodes_per_task: int) -> BatchedTabularMDP:
        """The batched implementation (a one-state MDP with Bernoulli rewards)."""
        return BatchedTabularMDP([t.model() for t in tasks], episodes_per_task, bernoulli_rewards=True, one_hot=False)


class BatchedTabularMDP:
    """``len(models) * episodes_per_task`` tabular episodes stepped as tensors.

    Episode ``b`` follows ``models[b // episodes_per_task]``; next states (and Bernoulli
    rewards) are drawn with a torch generator seeded by ``reset(seed)``. The distribution of
    trajectories equals the single env's, not the random numbers.

    Args:
        models: ``(P [S, A, S], R [S, A], initial [S])`` per task.
        episodes_per_task: Episodes per task.
        bernoulli_rewards: Rewards are Bernoulli(``R[s, a]``) instead of ``R[s, a]``.
        one_hot: Observations are one-hot states ``[B, S]``; else the constant ``[B, 1]`` ones.
    """

    def __init__(
        self,
        models: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
        episodes_per_task: int,
        bernoulli_rewards: bool = False,
        one_hot: bool = True,
    ) -> None:
        if not models or episodes_per_task < 1:
            raise ValueError("BatchedTabularMDP needs at least one task and one episode per task.")
        p = torch.tensor(np.stack([m[0] for m in models]), dtype=torch.float64)
        self.p = p.repeat_interleave(episodes_per_task, dim=0)  # [B, S, A, S]
        self.r = torch.tensor(np.stack([m[1] for m in models]), dtype=torch.float64).repeat_interleave(
            episodes_per_task, dim=0
        )
        self.initial = torch.tensor(np.stack([m[2] for m in models]), dtype=torch.float64).repeat_interleave(
            episodes_per_task, dim=0
        )
        self.num_envs = self.p.shape[0]
        self.bernoulli_rewards, self.one_hot = bernoulli_rewards, one_hot
        self.generator = torch.Generator().manual_seed(0)
        self.state = torch.zeros(self.num_envs, dtype=torch.long)

    def _obs(self) -> torch.Tensor:
        if not self.one_hot:
            return torch.ones(self.num_envs, 1)
        return torch.nn.functional.one_hot(self.state, self.p.shape[1]).float()

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = torch.multinomial(self.initial, 1, generator=self.generator).squeeze(-1)
        return self._obs()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if actions.shape != (self.num_envs,):
            raise ValueError(
                f"BatchedTabularMDP.step expects actions of shape {(self.num_envs,)}, got {tuple(actions.shape)}."
            )
        b = torch.arange(self.num_envs)
        a = actions.long()
        reward = self.r[b, self.state, a]
        if self.bernoulli_rewards:
            reward = (torch.rand(self.num_envs, generator=self.generator, dtype=torch.float64) < reward).double()
        self.state = torch.multinomial(self.p[b, self.state, a], 1, generator=self.generator).squeeze(-1)
        return self._obs(), reward.float(), torch.zeros(self.num_envs, dtype=torch.bool)
