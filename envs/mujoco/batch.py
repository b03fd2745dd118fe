"""The native batched backend of the MuJoCo families: a meta-batch stepped by MuJoCo itself.

``BatchedMujocoEnv`` runs all ``len(tasks) * episodes_per_task`` episodes of a meta-batch in
one ``mujoco.batch.Batch`` (mujoco >= 4), which advances every simulation on MuJoCo's own
thread pool; observations, rewards and terminations are computed for all episodes at once
with numpy (elementwise work only: no matmuls, so ``OPENBLAS_CORETYPE`` does not matter).
It implements ``metarl.task_api.BatchedTaskEnv``, and every family of ``metarl.envs.mujoco.locomotion``
and ``metarl.envs.mujoco.dynamics`` returns it from ``make_batched``, so ``metarl.sampler.Sampler``
uses it for them.

**Same numbers as the single env.** For the same task, initial state and actions, episode
``b`` gives the observations, rewards and terminations of the family's ``gymnasium.Env``
(``tests/test_mujoco_batch.py`` checks every family to 1e-6; the physics is bit-exact):

* *Physics*: the batch runs ``mj_step`` ``frame_skip`` times per env step on each
  simulation, as Gymnasium's ``do_simulation``, with the float32 control
  ``clip(action, -S, S) / S`` (``S`` the family's ``action_scale``) as ``ctrl``.
  Goal families (the task is only in the reward) share one ``MjModel``; dynamics families run
  each task on its own model (``family.task_models``, the code ``set_task`` uses), shared by
  that task's episodes through ``Batch.set_models``.
* *Formulas*: the family's task term is its own vectorized ``task_term`` (one formula for
  both); Gymnasium's v5 terms (control cost, Ant's contact cost, survive bonus, health and
  termination, observation layout and velocity clipping) are vectorized in ``_Robot``,
  reading the env's constructor settings (``ctrl_cost_weight``, ``healthy_z_range``, ...).
* *Initial states*: ``reset(seed)`` gives episode ``b`` the initial state that the single
  env's ``reset(seed=seed + b)`` draws (Gymnasium's reset noise from
  ``np.random.default_rng(seed + b)``: ``U(-s, s)`` on ``qpos`` and ``s * N(0, 1)`` on
  ``qvel`` for HalfCheetah and Ant, ``U(-s, s)`` on both for Hopper and Walker2d). The
  sampler's vector-env fallback seeds episode ``b`` with the same ``seed + b``, so the two
  paths produce the same episodes.
* *Ant's contact forces* (``cfrc_ext``, in Ant-v5's observation and contact cost):
  Gymnasium computes them with ``mj_rnePostConstraint`` after ``mj_step``, from the last
  Runge-Kutta stage's contacts, which only the simulation's own ``MjData`` still holds. The
  Ant batch is therefore *persistent* (one ``MjData`` per simulation), and after each step
  every live episode's ``MjData`` that had a contact is copied out (``Batch.get_data``) and
  ``mj_rnePostConstraint`` runs on the copy: exact, at a cost measured by
  ``benchmarks/bench_mujoco_sampler.py`` (a serial loop of ~7 us per episode, mostly the
  copy, against ~110 us of Ant physics per env step on one thread). An episode whose last
  Runge-Kutta stage had no contact (the bound ``ncon`` is 0), no equality constraint row
  (``ne``) and no applied force (``xfrc_applied``) has ``cfrc_ext = 0`` exactly (what
  ``mj_rnePostConstraint`` computes then), so it is not copied: 73% of the live Ant steps of
  an untrained policy at ``action_scale`` 1, 27% at 10. Cheaper routes are not exact: the batch's bound ``cfrc_ext`` is
  never computed (or, with a force sensor, comes from the substep's first Runge-Kutta
  stage), and the contacts and constraint forces it would need cannot be bound. An Ant
  with ``include_cfrc_ext_in_observation=False`` and ``contact_cost_weight=0`` skips all this.

**Episode ends.** An episode that terminates (Ant, Hopper, Walker2d falling) is not stepped
again until the next ``reset``: ``step`` advances only the live simulations, and returns
reward 0 and ``terminated=True`` for the ended ones (the sampler masks them). HalfCheetah
never terminates.

**Threads.** ``nthread`` MuJoCo threads (default: every CPU core available to the process)
step the batch; ``torch_threads = 1`` asks the sampler to run torch on one thread during the
rollout, since torch's own threads would compete with MuJoCo's for the same cores (with
torch's default two threads the 800-env HalfCheetah closed loop ran at ~0.7x on 2 cores).
Results do not depend on either setting.

**Memory.** A family keeps the ``Batch`` of a dropped env (at most ``POOL_SIZE``) and hands
it to its next ``make_batched`` of the same size, so the sampler allocates its batch once,
not once per ``sample`` call (see ``_take_batch``).

Example:
    >>> import gymnasium as gym, metarl
    >>> env = gym.make("metarl/HalfCheetahVel-v0").unwrapped
    >>> metarl.task_api.seed_family(env, 0)
    >>> batch = env.make_batched(env.sample_tasks(40), episodes_per_task=20)
    >>> obs = batch.reset(seed=0)                       # [800, 17]
    >>> obs, reward, terminated = batch.step(torch.zeros(800, 6))
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Sequence

import numpy as np
import torch

try:
    import mujoco
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
    from mujoco import batch as mj_batch
except ImportError as e:  # pragma: no cover - mujoco < 4 or no mujoco at all
    raise ImportError(
        "The batched MuJoCo backend needs mujoco >= 4 (mujoco.batch): pip install -U 'metarl[mujoco]'."
    ) from e

from metarl.envs.action_scale import to_control  # noqa: E402
from metarl.envs.mujoco.base import task_vector  # noqa: E402

ROBOTS = {HalfCheetahEnv: "half_cheetah", AntEnv: "ant", HopperEnv: "hopper", Walker2dEnv: "walker2d"}


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class _Robot:
    """Gymnasium v5's observation, forward term, costs and health for one robot, vectorized.

    Reads the settings of the env it was made from (Gymnasium keeps them as private
    attributes); every method takes and returns arrays with a leading batch dimension.
    """

    def __init__(self, env: Any) -> None:
        kind = next((name for cls, name in ROBOTS.items() if isinstance(env, cls)), None)
        if kind is None:
            raise TypeError(
                f"{type(env).__name__} is not built on a Gymnasium v5 HalfCheetah, Ant, Hopper or Walker2d env; the "
                "batched MuJoCo backend knows only those."
            )
        self.kind = kind
        self.ctrl_cost_weight = float(env._ctrl_cost_weight)
        self.forward_reward_weight = float(env._forward_reward_weight)
        self.reset_noise_scale = float(env._reset_noise_scale)
        self.normal_qvel_noise = kind in ("half_cheetah", "ant")  # Hopper and Walker2d draw U(-s, s)
        self.skip_qpos = (2 if kind == "ant" else 1) if env._exclude_current_positions_from_observation else 0
        self.clip_qvel = kind in ("hopper", "walker2d")  # their observations clip qvel to [-10, 10]
        self.terminates = kind != "half_cheetah" and bool(env._terminate_when_unhealthy)
        if kind != "half_cheetah":
            self.healthy_reward = float(env._healthy_reward)
            self.healthy_z_range = tuple(float(z) for z in env._healthy_z_range)
        if kind == "hopper":
            self.healthy_state_range = tuple(float(x) for x in env._healthy_state_range)
        if kind in ("hopper", "walker2d"):
            self.healthy_angle_range = tuple(float(x) for x in env._healthy_angle_range)
        self.contact_forces = False
        if kind == "ant":
            self.main_body = env.model.body(env._main_body).id
            self.contact_cost_weight = float(env._contact_cost_weight)
            self.contact_force_range = tuple(float(f) for f in env._contact_force_range)
            self.cfrc_in_observation = bool(env._include_cfrc_ext_in_observation)
            self.contact_forces = self.cfrc_in_observation or self.contact_cost_weight != 0.0

    def observe(self, qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: np.ndarray | None) -> np.ndarray:
        """The observations ``[B, obs_dim]`` (float64, as Gymnasium's)."""
        parts = [qpos[:, self.skip_qpos :], np.clip(qvel, -10.0, 10.0) if self.clip_qvel else qvel]
        if self.kind == "ant" and self.cfrc_in_observation:
            assert cfrc_ext is not None
            parts.append(self.clipped_contact_forces(cfrc_ext)[:, 1:].reshape(len(qpos), -1))
        return np.concatenate(parts, axis=1)

    def clipped_contact_forces(self, cfrc_ext: np.ndarray) -> np.ndarray:
        low, high = self.contact_force_range
        return np.clip(cfrc_ext, low, high)

    def control_cost(self, action: np.ndarray) -> np.ndarray:
        """``w * ||u||^2`` of the float32 controls ``u``, summed in float32 as Gymnasium does."""
        return self.ctrl_cost_weight * np.sum(np.square(action), axis=1)

    def contact_cost(self, cfrc_ext: np.ndarray) -> np.ndarray:
        squares = np.square(self.clipped_contact_forces(cfrc_ext)).reshape(len(cfrc_ext), -1)
        return self.contact_cost_weight * np.sum(squares, axis=1)

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Gymnasium's ``is_healthy`` per episode (all ``True`` for HalfCheetah)."""
        if self.kind == "half_cheetah":
            return np.ones(len(qpos), dtype=bool)
        if self.kind == "ant":
            min_z, max_z = self.healthy_z_range
            finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
            return finite & (min_z <= qpos[:, 2]) & (qpos[:, 2] <= max_z)
        z, angle = qpos[:, 1], qpos[:, 2]
        min_z, max_z = self.healthy_z_range
        min_angle, max_angle = self.healthy_angle_range
        healthy = (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)
        if self.kind == "hopper":
            min_state, max_state = self.healthy_state_range
            state = np.concatenate([qpos[:, 2:], qvel], axis=1)
            healthy &= np.all((min_state < state) & (state < max_state), axis=1)
        return healthy


class BatchedMujocoEnv:
    """All episodes of a meta-batch of a MuJoCo family in one ``mujoco.batch.Batch``.

    See the module docstring for what matches the single env and how.

    Args:
        family: The family env (``env.unwrapped``) whose settings, model and task terms to use;
            it is not changed.
        tasks: The tasks; episode ``b`` runs ``tasks[b // episodes_per_task]``.
        episodes_per_task: Episodes per task.
        nthread: MuJoCo threads (``None``: every available CPU core).

    Raises:
        TypeError, ValueError: An invalid task (as ``family.set_task``), an unknown robot, or
            no tasks / episodes.
    """

    torch_threads: int | None = 1  # the sampler runs torch on this many threads during a rollout
    split_invariant = True  # episode b starts as the single env's reset(seed=seed + b); physics is deterministic

    def __init__(self, family: Any, tasks: Sequence[Any], episodes_per_task: int, nthread: int | None = None) -> None:
        if len(tasks) < 1 or episodes_per_task < 1:
            raise ValueError(
                f"BatchedMujocoEnv needs at least one task and one episode per task, got {len(tasks)} tasks x "
                f"{episodes_per_task} episodes."
            )
        if nthread is not None and nthread < 1:
            raise ValueError(f"nthread must be >= 1 (or None for every CPU core), got {nthread}.")
        self.robot = _Robot(family)
        self.tasks = [family.validate_task(task) for task in tasks]
        self.episodes_per_task = episodes_per_task
        self.num_envs = len(tasks) * episodes_per_task
        self.task_index = np.repeat(np.arange(len(tasks)), episodes_per_task)  # [B]: episode -> task
        self.nthread = nthread or available_cpus()
        self.frame_skip = int(family.frame_skip)
        self.dt = float(family.dt)
        self.action_low = family.action_space.low.astype(np.float32)
        self.action_high = family.action_space.high.astype(np.float32)
        self.action_scale = np.float32(getattr(family, "action_scale", 1.0))
        self.init_qpos = np.array(family.init_qpos, dtype=np.float64)
        self.init_qvel = np.array(family.init_qvel, dtype=np.float64)
        self.task_term = getattr(family, "task_term", None)  # goal families; dynamics: Gymnasium's forward reward
        # Goal families: the task vectors [B, p] their task_term reads.
        self.task_vectors = (
            None if self.task_term is None else np.stack([task_vector(t) for t in self.tasks])[self.task_index]
        )

        task_models = family.task_models(self.tasks)
        self.batch = _take_batch(family, self.num_envs, self.nthread, self.robot.contact_forces)
        # The model each episode runs on (and its mj_rnePostConstraint with).
        if task_models is None:
            self._models = [self.batch.get_model(0)] * self.num_envs
        else:
            self._models = [task_models[k] for k in self.task_index]
            self.batch.set_models(self._models)
        self.qpos, self.qvel, self.ctrl = self.batch.bind("qpos"), self.batch.bind("qvel"), self.batch.bind("ctrl")
        self.xpos = self.batch.bind("xpos") if self.robot.kind == "ant" else None
        self.cfrc_ext = np.zeros((self.num_envs, family.model.nbody, 6)) if self.robot.contact_forces else None
        if self.robot.contact_forces:  # what tells an episode whose cfrc_ext is exactly 0
            self._ncon, self._ne = self.batch.bind("ncon"), self.batch.bind("ne")
            self._xfrc_applied = self.batch.bind("xfrc_applied")
        self._scratch = mujoco.MjData(family.model) if self.robot.contact_forces else None
        # A view of the scratch's cfrc_ext, made once: get_data writes into the same memory.
        self._scratch_cfrc_ext = None if self._scratch is None else self._scratch.cfrc_ext
        self.done = np.zeros(self.num_envs, dtype=bool)  # episodes that have terminated
        self._started = False
        weakref.finalize(self, _return_batch, family.__dict__["_metarl_batch_pool"], self.batch)
        self._seeds = np.random.default_rng()

    # ------------------------------------------------------------------ BatchedTaskEnv

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every episode; episode ``b`` from the single env's ``reset(seed=seed + b)`` state.

        Args:
            seed: Base seed (``None``: drawn from fresh entropy).

        Returns:
            Observations ``[B, obs_dim]`` (float32).
        """
        if seed is None:
            seed = int(self._seeds.integers(2**31 - self.num_envs))
        if seed < 0:
            raise ValueError(f"The reset seed must be >= 0, got {seed}.")
        qpos, qvel = self.initial_states(seed)
        self.batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        self.qpos[:] = qpos
        self.qvel[:] = qvel
        self.batch.forward()
        if self.cfrc_ext is not None:
            self.cfrc_ext[:] = 0.0  # Gymnasium's reset runs no mj_rnePostConstraint: cfrc_ext is reset to 0
        self.done[:] = False
        self._started = True
        return self._observation()

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every live episode one env step (``frame_skip`` MuJoCo steps).

        Args:
            actions: ``[B, act_dim]``; clipped to the action space and divided by the family's
                ``action_scale``, as the family's ``step`` does.

        Returns:
            ``(obs [B, obs_dim] float32, reward [B] float32, terminated [B] bool)``; episodes
            that had already terminated keep their last observation, get reward 0 and stay
            terminated.
        """
        expected = (self.num_envs, len(self.action_low))
        if tuple(actions.shape) != expected:
            raise ValueError(f"BatchedMujocoEnv.step expects actions of shape {expected}, got {tuple(actions.shape)}.")
        if not self._started:
            raise RuntimeError("BatchedMujocoEnv.step before reset: call reset() first.")
        action = to_control(
            actions.detach().cpu().numpy().astype(np.float32, copy=False),
            self.action_low,
            self.action_high,
            self.action_scale,
        )
        ended = self.done.copy()
        ids = None if not ended.any() else np.flatnonzero(~ended)
        position_before = self._position().copy()
        self.ctrl[:] = action
        if ids is None or len(ids):
            self.batch.step(ids=ids, nstep=self.frame_skip)
        if self.cfrc_ext is not None:
            self._update_contact_forces(np.arange(self.num_envs) if ids is None else ids)
        position = self._position()
        velocity = (position - position_before) / self.dt
        reward, healthy = self._reward(action, position, velocity)
        terminated = ~healthy if self.robot.terminates else np.zeros(self.num_envs, dtype=bool)
        reward[ended] = 0.0
        terminated |= ended
        self.done |= terminated
        return self._observation(), torch.from_numpy(reward.astype(np.float32)), torch.from_numpy(terminated)

    # ------------------------------------------------------------------ internals

    def initial_states(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos [B, nq], qvel [B, nv])``: Gymnasium's ``reset_model`` noise, episode ``b`` drawn
        from ``np.random.default_rng(seed + b)`` as ``env.reset(seed=seed + b)`` draws it."""
        s = self.robot.reset_noise_scale
        nq, nv = len(self.init_qpos), len(self.init_qvel)
        qpos_noise, qvel_noise = np.empty((self.num_envs, nq)), np.empty((self.num_envs, nv))
        for b in range(self.num_envs):
            rng = np.random.default_rng(seed + b)
            qpos_noise[b] = rng.uniform(low=-s, high=s, size=nq)
            qvel_noise[b] = (
                s * rng.standard_normal(nv) if self.robot.normal_qvel_noise else rng.uniform(low=-s, high=s, size=nv)
            )
        return self.init_qpos + qpos_noise, self.init_qvel + qvel_noise

    def _position(self) -> np.ndarray:
        """What the forward velocity differentiates: ``qpos[:, 0]``, or the Ant torso's ``xpos[:, :2]``."""
        if self.xpos is not None:
            return self.xpos[:, self.robot.main_body, :2]
        return self.qpos[:, 0]

    def _update_contact_forces(self, ids: np.ndarray) -> None:
        """Gymnasium's ``mj_rnePostConstraint`` after the step, for the stepped episodes ``ids``.

        Episodes without contacts, equality constraints or applied forces get ``cfrc_ext = 0``
        (exactly what ``mj_rnePostConstraint`` computes for them); the others run it on a copy
        of their ``MjData``. The loop is the hot spot of the Ant closed loop: it binds what it
        calls to locals and reads the scratch's ``cfrc_ext`` through a view made once.
        """
        assert self._scratch is not None and self._scratch_cfrc_ext is not None and self.cfrc_ext is not None
        forced = (self._ncon[ids] > 0) | (self._ne[ids] > 0) | self._xfrc_applied[ids].any(axis=(1, 2))
        scratch, scratch_cfrc_ext, models, cfrc_ext = self._scratch, self._scratch_cfrc_ext, self._models, self.cfrc_ext
        cfrc_ext[ids[~forced]] = 0.0
        get_data, rne_post_constraint = self.batch.get_data, mujoco.mj_rnePostConstraint
        for i in ids[forced].tolist():
            get_data(i, scratch)
            rne_post_constraint(models[i], scratch)
            cfrc_ext[i] = scratch_cfrc_ext

    def _reward(self, action: np.ndarray, position: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(reward [B] float64, healthy [B] bool)`` with Gymnasium's grouping of the terms."""
        robot = self.robot
        ant = robot.kind == "ant"
        if self.task_term is None:  # dynamics families: Gymnasium's forward reward
            forward = robot.forward_reward_weight * velocity[:, 0] if ant else robot.forward_reward_weight * velocity
        elif ant:
            forward = self.task_term(self.task_vectors, position, velocity)
        else:
            forward = self.task_term(self.task_vectors, velocity)
        ctrl_cost = robot.control_cost(action)
        healthy = robot.healthy(self.qpos, self.qvel)
        if robot.kind == "half_cheetah":
            return forward - ctrl_cost, healthy
        rewards = forward + healthy * robot.healthy_reward
        if ant:
            assert self.cfrc_ext is not None or not robot.contact_forces
            contact_cost = robot.contact_cost(self.cfrc_ext) if self.cfrc_ext is not None else 0.0
            return rewards - (ctrl_cost + contact_cost), healthy
        return rewards - ctrl_cost, healthy

    def _observation(self) -> torch.Tensor:
        obs = self.robot.observe(self.qpos, self.qvel, self.cfrc_ext)
        return torch.from_numpy(obs.astype(np.float32))


POOL_SIZE = 2  # idle batches a family keeps (the sampler needs one size at a time)


def _take_batch(family: Any, nsim: int, nthread: int, persistent: bool) -> mj_batch.Batch:
    """An idle ``Batch`` of this shape from the family's pool, or a new one on its model.

    A persistent batch allocates one ``MjData`` per simulation (Ant: a 14 MB arena each, of
    which ~200 kB get touched); allocating 800 of them for every ``sample`` call grows the
    process's resident memory without bound (glibc keeps the freed pages), so batches are
    reused. ``reset`` restores every simulation from scratch, so a reused batch gives the
    same numbers as a new one. A batch returns to the pool when the env using it is
    garbage-collected; dynamics families set their models on it again (``set_models``).
    """
    pool: list[mj_batch.Batch] = family.__dict__.setdefault("_metarl_batch_pool", [])
    for i, batch in enumerate(pool):
        # MuJoCo runs at most one thread per simulation: a Batch reports min(nthread, nsim).
        if (batch.nsim, batch.nthread, batch.persistent) == (nsim, min(nthread, nsim), persistent):
            return pool.pop(i)
    return mj_batch.Batch(family.model, nsim=nsim, nthread=nthread, persistent=persistent)


def _return_batch(pool: list[mj_batch.Batch], batch: mj_batch.Batch) -> None:
    pool.append(batch)
    del pool[:-POOL_SIZE]


__all__ = ["BatchedMujocoEnv", "available_cpus"]
