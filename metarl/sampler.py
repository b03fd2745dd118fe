"""Roll out all tasks x episodes of a meta-batch together.

One policy forward per time step serves every episode: observations ``[K, N, obs_dim]``
go through parameters that are either shared or stacked per task (``[K, ...]``). Env
physics is batched: a family's own ``make_batched`` implementation when it has one (the
fast path: torch tensors for 2D navigation, ``mujoco.batch`` for the MuJoCo families),
otherwise a ``gymnasium.vector.SyncVectorEnv`` over K*N copies of the env, each set to
its task.

The sampler is the only module that touches environments. Rollouts run on the CPU in the
calling process, so an exception inside an env surfaces at once as a ``SamplerError``
(no worker processes to hang).

Success: when the env's steps report ``info["success"]`` (Meta-World), ``Episodes.success``
holds it per step (a batched env reports it as a ``last_success`` tensor ``[B]`` after each
``step``; the vector-env path reads the infos); otherwise it is ``None``.

Two optional hooks of a batched env: a ``reset`` that takes ``seed`` gets one seed per
``sample`` call from the sampler's RNG (episode ``b`` should start as the single env's
``reset(seed=seed + b)``, as on the vector-env path, which gets the same seed); a
``torch_threads`` attribute that is not ``None`` sets torch's thread count for the rollout
(restored afterwards), for envs whose own threads (MuJoCo's) need the cores.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from metarl.episodes import Episodes
from metarl.errors import ConfigError, SamplerError
from metarl.families import make_family
from metarl.policies import Params, Policy
from metarl.task_api import BatchedTaskEnv, check_task_family, make_batched


class VectorEnvBatch:
    """Adapts a ``SyncVectorEnv`` of K*N task-family copies to the ``BatchedTaskEnv`` protocol."""

    def __init__(self, envs: gym.vector.SyncVectorEnv, tasks: Sequence[Any], episodes_per_task: int, seed: int) -> None:
        self.vec = envs
        self.num_envs = envs.num_envs
        self.discrete = isinstance(envs.single_action_space, gym.spaces.Discrete)
        for i, env in enumerate(envs.envs):
            env.unwrapped.set_task(tasks[i // episodes_per_task])  # type: ignore[attr-defined]
        self.seed = seed
        self.split_invariant = True  # env i resets with seed + i; each copy draws from its own RNG
        self.last_success: torch.Tensor | None = None  # info["success"] of the last step, where the envs report it

    def reset(self) -> torch.Tensor:
        obs, _ = self.vec.reset(seed=[self.seed + i for i in range(self.num_envs)])
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = actions.numpy()
        if not self.discrete:
            a = a.astype(self.vec.single_action_space.dtype, copy=False)  # type: ignore[union-attr]
        obs, reward, terminated, truncated, infos = self.vec.step(a)
        if "success" in infos:  # Gymnasium's vector infos: values [B], and "_success" where an env set one
            given = np.asarray(infos.get("_success", np.ones(self.num_envs, dtype=bool)), dtype=bool)
            self.last_success = torch.as_tensor(given & (np.asarray(infos["success"], dtype=np.float64) > 0))
        done = torch.as_tensor(np.logical_or(terminated, truncated))
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32), torch.as_tensor(reward, dtype=torch.float32), done


class Sampler:
    """Samples ``Episodes`` for a list of tasks with given policy parameters.

    Args:
        family: The family id (``"Navigation2D"``) or a task-family env instance.
        policy: The policy (its module parameters are not used; ``params`` are passed in).
        horizon: Maximum steps per episode (``None``: the env's ``max_episode_steps``).
        seed: Seed of the sampler's action noise and env reset seeds.
        env_kwargs: Keyword arguments for ``gymnasium.make`` when ``family`` is an id.

    Example:
        >>> sampler = Sampler("Navigation2D", policy, horizon=100, seed=0)
        >>> episodes = sampler.sample(policy.get_params(), tasks, episodes_per_task=20)
    """

    def __init__(
        self,
        family: str | gym.Env,
        policy: Policy,
        horizon: int | None = None,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.env_kwargs = dict(env_kwargs or {})
        if isinstance(family, str):
            self.family_id: str | None = family
            self.env = make_family(family, **self.env_kwargs)
        else:
            check_task_family(family)
            self.family_id, self.env = None, family
        spec_horizon = self.env.spec.max_episode_steps if self.env.spec is not None else None
        self.horizon = int(horizon or spec_horizon or 0)
        if self.horizon < 1:
            raise ConfigError(
                "The sampler needs a horizon: set `horizon` in the config or register the env with max_episode_steps."
            )
        self.policy = policy
        self.generator = torch.Generator()
        self.reseed(seed)
        self._vector_envs: dict[int, gym.vector.SyncVectorEnv] = {}

    def reseed(self, seed: int) -> None:
        """(Re)start the action-noise and reset-seed streams from ``seed``; a reseeded sampler samples as a
        new ``Sampler(..., seed)`` would, keeping its env copies (a family without a batched backend holds a
        full simulator per episode)."""
        self.generator.manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)

    def _make_env_copy(self) -> gym.Env:
        if self.family_id is not None:
            return make_family(self.family_id, **self.env_kwargs)
        import copy

        return copy.deepcopy(self.env)

    def _batched_env(self, tasks: Sequence[Any], episodes_per_task: int, seed: int) -> BatchedTaskEnv:
        """The env for these tasks; its episode ``b`` resets as the single env's ``reset(seed=seed + b)``."""
        n = len(tasks) * episodes_per_task
        batched = make_batched(self.env, tasks, episodes_per_task)
        if batched is not None:
            return batched
        if n not in self._vector_envs:
            self._vector_envs[n] = gym.vector.SyncVectorEnv([self._make_env_copy for _ in range(n)])
        return VectorEnvBatch(self._vector_envs[n], tasks, episodes_per_task, seed)

    def split_invariant(self, tasks: Sequence[Any]) -> bool:
        """Whether a slice of a meta-batch, sampled alone, gets the episodes the whole batch would.

        True on the vector-env path (every env copy is seeded by its own reset seed) and for
        batched envs that say so (``split_invariant = True``: episode ``b`` depends only on its
        task, its reset seed and its actions); False for batched envs that draw one random
        stream for the whole batch (the tabular families).
        """
        batched = make_batched(self.env, tasks[:1], 1)
        return batched is None or bool(getattr(batched, "split_invariant", False))

    def draw_reset_seed(self, num_episodes: int) -> int:
        """The reset seed of one ``sample`` call (episode ``b`` resets with ``seed + b``), from the sampler's RNG."""
        return int(self.np_rng.integers(2**31 - num_episodes))

    @torch.no_grad()
    def sample(self, params: Params, tasks: Sequence[Any], episodes_per_task: int) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task.

        Args:
            params: Policy parameters on the CPU, shared (``[*shape]``) or stacked per task
                (``[len(tasks), *shape]``).
            tasks: Tasks from the family's ``sample_tasks``.
            episodes_per_task: Episodes per task (N).

        Returns:
            ``Episodes`` with tensors ``[K, N, T, ...]``.

        Raises:
            SamplerError: An env raised during reset or step (the original is chained).
            NonFiniteBatchError: The episodes hold NaN or inf.
        """
        k, n = len(tasks), episodes_per_task
        if k < 1 or n < 1:
            raise ValueError(f"Need at least one task and one episode per task, got {k} tasks x {n} episodes.")
        seed = self.draw_reset_seed(k * n)
        episodes, _ = self.sample_part(params, tasks, n, seed, self.generator)
        episodes.check_finite()
        return episodes

    @torch.no_grad()
    def sample_part(
        self,
        params: Params,
        tasks: Sequence[Any],
        episodes_per_task: int,
        seed: int,
        generator: torch.Generator,
        offset: int = 0,
        total_tasks: int | None = None,
        to_horizon: bool = False,
    ) -> tuple[Episodes, int]:
        """The episodes of ``tasks``, the slice from ``offset`` of a meta-batch of ``total_tasks`` tasks.

        Each step draws the action noise of the whole meta-batch from ``generator`` and uses
        this slice's part, and episode ``b`` of the slice resets with ``seed + offset * N + b``;
        the policy's forward and the actions are computed on a batch of the whole meta-batch's
        shape with this slice's observations in their place (zeros elsewhere), because a
        matrix product of another shape, or a vectorized ``exp`` whose elements fall in other
        lanes, may round differently. So the episodes are, bit for bit, those the whole batch
        would get (for a split-invariant env), and ``generator`` advances as it would for the
        whole batch. ``sample`` is the slice that is the whole batch; a Ray worker samples one.

        Args:
            params: Shared parameters, or stacked for the whole meta-batch (``[total_tasks, ...]``).
            tasks: This slice's tasks.
            episodes_per_task: Episodes per task (N).
            seed: The meta-batch's reset seed.
            generator: The meta-batch's action-noise generator (advanced).
            offset: Index of this slice's first task in the meta-batch.
            total_tasks: Tasks in the meta-batch (default: ``len(tasks)``).
            to_horizon: Step to the horizon even after every episode ended (a slice cannot
                know whether the others' episodes go on).

        Returns:
            ``(episodes, steps)``: ``steps`` is when the last of this slice's episodes ended
            (or the horizon); the episodes are that long, or the horizon with ``to_horizon``.
        """
        k, n = len(tasks), episodes_per_task
        total = total_tasks if total_tasks is not None else k
        params = {name: p.detach().cpu() for name, p in params.items()}
        previous_threads: int | None = None
        try:
            try:
                part_seed = seed + offset * n
                env = self._batched_env(tasks, n, part_seed)
                threads = getattr(env, "torch_threads", None)
                if threads is not None and threads != torch.get_num_threads():
                    previous_threads = torch.get_num_threads()
                    torch.set_num_threads(threads)
                obs = env.reset(seed=part_seed) if "seed" in inspect.signature(env.reset).parameters else env.reset()  # type: ignore[call-arg]
            except Exception as e:  # noqa: BLE001 - re-raised with context
                raise SamplerError(
                    f"The environment raised {type(e).__name__} while resetting for {k} tasks: {e}"
                ) from e
            return self._rollout(env, obs, params, k, n, generator, offset, total, to_horizon)
        finally:
            if previous_threads is not None:
                torch.set_num_threads(previous_threads)

    def _rollout(
        self,
        env: BatchedTaskEnv,
        obs: torch.Tensor,
        params: Params,
        k: int,
        n: int,
        generator: torch.Generator,
        offset: int,
        total: int,
        to_horizon: bool,
    ) -> tuple[Episodes, int]:
        """Step ``env`` from ``obs`` until the horizon or until every episode has ended."""
        t_max = self.horizon
        obs_buf = torch.zeros(t_max, k * n, obs.shape[-1])
        act_buf: torch.Tensor | None = None
        rew_buf = torch.zeros(t_max, k * n)
        mask_buf = torch.zeros(t_max, k * n)
        success_buf: torch.Tensor | None = None
        alive = torch.ones(k * n, dtype=torch.bool)
        steps = t_max
        padded = torch.zeros(total, n, obs.shape[-1]) if total != k else None  # a slice's rows in the whole batch
        for t in range(t_max):
            if total == k:
                dist = self.policy.distribution(params, obs.view(k, n, -1))
                actions = self.policy.act(dist, self.policy.noise((k, n), generator))  # type: ignore[arg-type]
            else:  # a slice: every op runs on the whole batch's shape, this slice in its place (zeros elsewhere)
                assert padded is not None
                padded[offset : offset + k] = obs.view(k, n, -1)
                dist = self.policy.distribution(params, padded)
                noise = self.policy.noise((total, n), generator)
                actions = self.policy.act(dist, noise)[offset : offset + k]  # type: ignore[arg-type]
            actions = actions.reshape(k * n, *actions.shape[2:])
            if act_buf is None:
                act_buf = torch.zeros(t_max, *actions.shape, dtype=actions.dtype)
            obs_buf[t], act_buf[t], mask_buf[t] = obs, actions, alive.float()
            try:
                obs, reward, done = env.step(actions)
            except Exception as e:  # noqa: BLE001 - re-raised with context
                raise SamplerError(
                    f"The environment raised {type(e).__name__} at step {t} of a batch of {k} tasks x {n} episodes: {e}"
                ) from e
            rew_buf[t] = reward
            success = getattr(env, "last_success", None)
            if success is not None:
                if success_buf is None:
                    success_buf = torch.zeros(t_max, k * n)
                success_buf[t] = success
            alive = alive & ~done
            if not bool(alive.any()) and steps == t_max:
                steps = t + 1
                if not to_horizon:
                    break
        assert act_buf is not None
        length = t_max if to_horizon else steps

        def to_knt(x: torch.Tensor) -> torch.Tensor:
            x = x[:length]
            return x.reshape(length, k, n, *x.shape[2:]).movedim(0, 2).contiguous()

        success_knt = None if success_buf is None else to_knt(success_buf)
        return Episodes(to_knt(obs_buf), to_knt(act_buf), to_knt(rew_buf), to_knt(mask_buf), success_knt), steps

    def start(self) -> None:
        """Nothing to start for the local sampler (the Ray sampler connects and starts its workers)."""

    def close(self) -> None:
        """Close the vector envs the sampler created."""
        for vec in self._vector_envs.values():
            vec.close()
        self._vector_envs.clear()
