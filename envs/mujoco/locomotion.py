"""MuJoCo locomotion families: HalfCheetah and Ant with a per-task velocity, direction or goal.

The families of the MAML paper (Finn et al. 2017, section 5.3) and its successors (ProMP,
pytorch-maml-rl), rebuilt on Gymnasium's v5 MuJoCo envs and models with the ``mujoco``
package (no mujoco-py). Each family subclasses the Gymnasium env and changes only the
forward term of the reward; physics, observations, reset noise and termination are
Gymnasium's.

=================  ==========================  ===========================================
family             task distribution           task term of the reward
=================  ==========================  ===========================================
HalfCheetahVel     v* ~ U[0, 2]                ``-|v_x - v*|``
HalfCheetahDir     d ~ U{-1, +1}               ``d * v_x``
AntVel             v* ~ U[0, 3]                ``-|v_x - v*|``
AntDir             d ~ U{-1, +1}               ``d * v_x``
AntDir2D           u = (cos t, sin t),         ``u . (v_x, v_y)``
                   t ~ U[0, 2 pi)
AntGoal            g ~ U[-3, 3]^2              ``-||(x, y) - g||_1``
=================  ==========================  ===========================================

Common to all families:

* **Velocity** is Gymnasium's finite difference over one env step, ``dt = 0.05`` s
  (5 MuJoCo steps of 0.01 s): HalfCheetah uses the ``rootx`` joint position
  (``data.qpos[0]``), Ant the torso's ``data.xpos`` (body 1). ``data.xpos`` is the
  kinematics MuJoCo computed at the start of the last substep, not of the final ``qpos``;
  the reward uses it as Gymnasium does (and AntGoal's position is that ``xpos`` too).
* **Actions**: the actuators' ``ctrlrange`` is ``[-1, 1]^6`` (HalfCheetah) or ``[-1, 1]^8``
  (Ant); MuJoCo multiplies a control by the motor gears (HalfCheetah 120, 90, 60, 120, 60,
  30; Ant 150). With ``action_scale = S`` (constructor argument, default 1) the family's
  action space is ``[-S, S]^n``: an action is clipped to that box and divided by ``S``
  before it is simulated, and the control cost is computed on that divided control. This
  is the action normalization of the published MAML results: rllab's and garage's
  ``normalize``, pytorch-maml-rl's ``NormalizedActionWrapper`` (``normalization_scale:
  10`` in its MuJoCo configs) and ProMP's ``NormalizedEnv`` all use ``S = 10``, so that a
  Gaussian policy's initial standard deviation of 1 explores with noise 0.1 in control
  units instead of saturating a third of its actions. The packaged locomotion configs set
  ``env_kwargs: {action_scale: 10.0}``. With ``S = 1`` the physics is Gymnasium's (MuJoCo
  clamps ``ctrl`` to ``ctrlrange`` anyway); only the control cost of an out-of-range
  Gaussian sample stops growing at the boundary. The policy's log-probabilities are those
  of its raw, unclipped sample (the sampler stores that).
* **Horizon** 200 steps (the MAML paper's locomotion horizon), set by the Gymnasium
  registration: ``gymnasium.make("metarl/HalfCheetahVel-v0", max_episode_steps=100)``
  changes it.
* **Control cost** ``0.05 * ||u||^2`` of the control ``u = clip(a, -S, S) / S`` for
  HalfCheetah (the MAML paper's and pytorch-maml-rl's), Gymnasium's ``0.5 * ||u||^2`` for
  Ant; both configurable with ``ctrl_cost_weight``.
* **Ant** keeps Gymnasium's Ant-v5 contact cost ``5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
  survive bonus ``1`` while healthy, and terminates once the torso height leaves
  ``[0.2, 1.0]`` (or the state is not finite). HalfCheetah never terminates.
* Tasks come from ``self.np_random`` (seed it with ``metarl.task_api.seed_family``); the task
  is not part of the observation. ``reset``/``step`` before ``set_task`` raise
  ``TaskNotSetError``. Envs pickle with their task, simulator state and RNG.
* **Batched**: ``make_batched(tasks, episodes_per_task)`` returns the native batched
  backend (``metarl.envs.mujoco.batch.BatchedMujocoEnv``), which the sampler uses: all
  episodes stepped at once by MuJoCo's multithreaded ``mujoco.batch.Batch``, with the
  same observations, rewards and terminations as this env. Each family's task term is one
  vectorized function (``task_term``) shared by both. ``batch_threads`` (constructor
  argument, default: every CPU core) sets the batch's MuJoCo threads.

Other keyword arguments go to the Gymnasium env (``reset_noise_scale``,
``healthy_z_range``, ``exclude_current_positions_from_observation`` ...).

Example:
    >>> import gymnasium as gym, metarl
    >>> env = gym.make("metarl/HalfCheetahVel-v0")
    >>> metarl.task_api.seed_family(env, 0)
    >>> env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
    >>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl.envs.mujoco.base import AntEnv, HalfCheetahEnv, coerce_task, task_vector
from metarl.envs.mujoco.family import MujocoTaskFamily
from metarl.envs.navigation import GoalTask

HALF_CHEETAH_VELOCITY_RANGE = (0.0, 2.0)
ANT_VELOCITY_RANGE = (0.0, 3.0)
ANT_GOAL_RANGE = (-3.0, 3.0)
HALF_CHEETAH_CTRL_COST = 0.05


@dataclass(frozen=True)
class VelocityTask:
    """Run forward (+x) at ``velocity`` m/s."""

    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    """Run along +x (``direction=1``) or -x (``direction=-1``)."""

    direction: float


@dataclass(frozen=True)
class Direction2DTask:
    """Run along the unit vector ``direction = (u_x, u_y)`` in the plane."""

    direction: tuple[float, float]


# ---------------------------------------------------------------------------- HalfCheetah


class _VelocityTasks:
    """Task sampling for target-velocity families: ``v* ~ U[velocity_range]``."""

    velocity_range: tuple[float, float]

    def sample_tasks(self, n: int) -> list[VelocityTask]:
        """Draw ``n`` target velocities from U[velocity_range] with ``self.np_random``."""
        self._check_n(n)  # type: ignore[attr-defined]
        return [VelocityTask(float(v)) for v in self.np_random.uniform(*self.velocity_range, size=n)]  # type: ignore[attr-defined]

    def validate_task(self, task: Any) -> VelocityTask:
        task = coerce_task(task, VelocityTask, type(self).__name__)
        if not math.isfinite(task.velocity):
            raise ValueError(f"{type(self).__name__}: the target velocity must be finite, got {task.velocity}.")
        return task


class _DirectionTasks:
    """Task sampling for forward/backward families: ``d`` = -1 or +1 with equal probability."""

    def sample_tasks(self, n: int) -> list[DirectionTask]:
        """Draw ``n`` directions from {-1, +1} with ``self.np_random``."""
        self._check_n(n)  # type: ignore[attr-defined]
        return [DirectionTask(float(d)) for d in self.np_random.choice((-1.0, 1.0), size=n)]  # type: ignore[attr-defined]

    def validate_task(self, task: Any) -> DirectionTask:
        task = coerce_task(task, DirectionTask, type(self).__name__)
        if task.direction not in (-1.0, 1.0):
            raise ValueError(f"{type(self).__name__}: the direction must be -1 or +1, got {task.direction}.")
        return task


class _HalfCheetahFamily(MujocoTaskFamily, HalfCheetahEnv):
    """HalfCheetah-v5 with a task-dependent forward term (see the module docstring).

    Gymnasium's ``step`` computes ``v_x = (qpos[0]_after - qpos[0]_before) / dt`` and calls
    ``_get_rew(v_x, action)``, overridden here with the family's ``task_term``.
    """

    @staticmethod
    def task_term(task: np.ndarray, x_velocity: Any) -> Any:
        """The reward's task term of ``v_x`` for tasks ``task`` (from ``task_vector``)."""
        raise NotImplementedError

    def __init__(self, ctrl_cost_weight: float = HALF_CHEETAH_CTRL_COST, **kwargs: Any) -> None:
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)

    def _apply_task(self, task: Any) -> None:
        self._task_vector = task_vector(task)

    def _get_rew(self, x_velocity: float, action: np.ndarray) -> tuple[float, dict[str, float]]:
        forward_reward = self.task_term(self._task_vector, x_velocity)
        ctrl_cost = self.control_cost(action)
        return forward_reward - ctrl_cost, {"reward_forward": forward_reward, "reward_ctrl": -ctrl_cost}


class HalfCheetahVelEnv(_VelocityTasks, _HalfCheetahFamily):
    """HalfCheetah running at a target velocity (MAML's "HalfCheetah, goal velocity").

    * task: ``VelocityTask(v*)``, ``v* ~ U[0, 2]`` m/s;
    * reward: ``-|v_x - v*| - 0.05 * ||u||^2``, with ``v_x`` the finite
      difference of ``qpos[0]`` (the ``rootx`` slide joint) over ``dt = 0.05``;
    * observation: Gymnasium's HalfCheetah-v5 (17: ``qpos[1:]``, ``qvel``); actions in
      ``[-S, S]^6``, simulated as the control ``u = clip(a, -S, S) / S`` (``S = action_scale``),
      gears 120/90/60/120/60/30; never terminates; horizon 200.
    """

    velocity_range = HALF_CHEETAH_VELOCITY_RANGE

    @staticmethod
    def task_term(task: np.ndarray, x_velocity: Any) -> Any:
        """``-|v_x - v*|``, ``v* = task[..., 0]``."""
        return -np.abs(x_velocity - task[..., 0])


class HalfCheetahDirEnv(_DirectionTasks, _HalfCheetahFamily):
    """HalfCheetah running forward or backward (MAML's "HalfCheetah, forward/backward").

    * task: ``DirectionTask(d)``, ``d`` = -1 or +1 with equal probability;
    * reward: ``d * v_x - 0.05 * ||u||^2``, ``v_x`` as in ``HalfCheetahVelEnv``;
    * observation, actions, termination and horizon as ``HalfCheetahVelEnv``.
    """

    @staticmethod
    def task_term(task: np.ndarray, x_velocity: Any) -> Any:
        """``d * v_x``, ``d = task[..., 0]``."""
        return task[..., 0] * x_velocity


# ---------------------------------------------------------------------------- Ant


class _AntFamily(MujocoTaskFamily, AntEnv):
    """Ant-v5 with a task-dependent forward term (see the module docstring).

    ``reward = (task_term + survive) - (ctrl_cost + contact_cost)``, grouped as Gymnasium's
    Ant-v5 so that ``AntDir`` with ``d = +1`` gives Ant-v5's reward bit for bit.
    """

    @staticmethod
    def task_term(task: np.ndarray, xy_position: Any, xy_velocity: Any) -> Any:
        """The reward's task term of the torso's ``(x, y)`` and velocity for tasks ``task``."""
        raise NotImplementedError

    def _apply_task(self, task: Any) -> None:
        self._task_vector = task_vector(task)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.float64, bool, bool, dict[str, Any]]:
        self._require_task()
        action = self._to_control(action)
        xy_before = self.data.body(self._main_body).xpos[:2].copy()
        self.do_simulation(action, self.frame_skip)
        xy_after = self.data.body(self._main_body).xpos[:2].copy()
        xy_velocity = (xy_after - xy_before) / self.dt

        observation = self._get_obs()
        task_reward = self.task_term(self._task_vector, xy_after, xy_velocity)
        healthy_reward = self.healthy_reward
        ctrl_cost = self.control_cost(action)
        contact_cost = self.contact_cost
        reward = (task_reward + healthy_reward) - (ctrl_cost + contact_cost)
        terminated = (not self.is_healthy) and self._terminate_when_unhealthy
        info = {
            "x_position": self.data.qpos[0],
            "y_position": self.data.qpos[1],
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": task_reward,
            "reward_ctrl": -ctrl_cost,
            "reward_contact": -contact_cost,
            "reward_survive": healthy_reward,
            "task": self._task,
        }
        return observation, np.float64(reward), bool(terminated), False, info


class AntVelEnv(_VelocityTasks, _AntFamily):
    """Ant running along +x at a target velocity.

    * task: ``VelocityTask(v*)``, ``v* ~ U[0, 3]`` m/s;
    * reward: ``-|v_x - v*| + 1[healthy] - 0.5 * ||u||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
      ``v_x`` the finite difference of the torso's ``xpos[0]`` over ``dt = 0.05``;
    * observation: Gymnasium's Ant-v5 (105: ``qpos[2:]``, ``qvel``, clipped ``cfrc_ext[1:]``);
      actions in ``[-S, S]^8`` (the control ``u = clip(a, -S, S) / S``), gear 150; terminates
      when the torso height leaves [0.2, 1.0]; horizon 200.
    """

    velocity_range = ANT_VELOCITY_RANGE

    @staticmethod
    def task_term(task: np.ndarray, xy_position: Any, xy_velocity: Any) -> Any:
        """``-|v_x - v*|``, ``v* = task[..., 0]``."""
        return -np.abs(xy_velocity[..., 0] - task[..., 0])


class AntDirEnv(_DirectionTasks, _AntFamily):
    """Ant running forward or backward along x (MAML's "Ant, forward/backward").

    * task: ``DirectionTask(d)``, ``d`` = -1 or +1 with equal probability;
    * reward: ``d * v_x + 1[healthy] - 0.5 * ||u||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``;
    * observation, actions, termination and horizon as ``AntVelEnv``.
    """

    @staticmethod
    def task_term(task: np.ndarray, xy_position: Any, xy_velocity: Any) -> Any:
        """``d * v_x``, ``d = task[..., 0]``."""
        return task[..., 0] * xy_velocity[..., 0]


class AntDir2DEnv(_AntFamily):
    """Ant running in a direction of the plane (ProMP's ``AntRandDirec2DEnv``).

    * task: ``Direction2DTask(u)``, ``u = (cos t, sin t)`` with ``t ~ U[0, 2 pi)``;
    * reward: ``u . (v_x, v_y) + 1[healthy] - 0.5 * ||u||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
      the velocity from the torso's ``xpos[:2]``;
    * observation, actions, termination and horizon as ``AntVelEnv``.
    """

    def sample_tasks(self, n: int) -> list[Direction2DTask]:
        """Draw ``n`` unit directions (uniform angle) with ``self.np_random``."""
        self._check_n(n)
        angles = self.np_random.uniform(0.0, 2.0 * np.pi, size=n)
        return [Direction2DTask((float(np.cos(t)), float(np.sin(t)))) for t in angles]

    def validate_task(self, task: Any) -> Direction2DTask:
        task = coerce_task(task, Direction2DTask, type(self).__name__)
        u = np.asarray(task.direction, dtype=np.float64)
        if u.shape != (2,) or not abs(float(np.hypot(*u)) - 1.0) < 1e-6:
            raise ValueError(
                f"{type(self).__name__}: the direction must be a unit vector (u_x, u_y), got {task.direction}."
            )
        return Direction2DTask((float(u[0]), float(u[1])))

    @staticmethod
    def task_term(task: np.ndarray, xy_position: Any, xy_velocity: Any) -> Any:
        """``u . (v_x, v_y)``, ``u = task[..., :2]``."""
        return task[..., 0] * xy_velocity[..., 0] + task[..., 1] * xy_velocity[..., 1]


class AntGoalEnv(_AntFamily):
    """Ant walking to a goal position in the plane (ProMP's ``AntRandGoalEnv``).

    * task: ``GoalTask((g_x, g_y))``, ``g ~ U[-3, 3]^2``;
    * reward: ``-(|x - g_x| + |y - g_y|) + 1[healthy] - 0.5 * ||u||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
      ``(x, y)`` the torso's ``xpos[:2]`` after the step;
    * observation: as ``AntVelEnv`` but *with* the torso's ``qpos[:2]`` (107 values), since the
      policy needs its position to find a goal (pytorch-maml-rl and ProMP include it too);
      actions, termination and horizon as ``AntVelEnv``.
    """

    def __init__(self, exclude_current_positions_from_observation: bool = False, **kwargs: Any) -> None:
        super().__init__(
            exclude_current_positions_from_observation=exclude_current_positions_from_observation, **kwargs
        )

    def sample_tasks(self, n: int) -> list[GoalTask]:
        """Draw ``n`` goals from U[-3, 3]^2 with ``self.np_random``."""
        self._check_n(n)
        return [GoalTask((float(x), float(y))) for x, y in self.np_random.uniform(*ANT_GOAL_RANGE, size=(n, 2))]

    def validate_task(self, task: Any) -> GoalTask:
        task = coerce_task(task, GoalTask, type(self).__name__)
        goal = np.asarray(task.goal, dtype=np.float64)
        if goal.shape != (2,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"{type(self).__name__}: the goal must be a finite (x, y), got {task.goal}.")
        return GoalTask((float(goal[0]), float(goal[1])))

    @staticmethod
    def task_term(task: np.ndarray, xy_position: Any, xy_velocity: Any) -> Any:
        """``-||(x, y) - g||_1``, ``g = task[..., :2]``."""
        return -(np.abs(xy_position[..., 0] - task[..., 0]) + np.abs(xy_position[..., 1] - task[..., 1]))


__all__ = [
    "AntDir2DEnv",
    "AntDirEnv",
    "AntGoalEnv",
    "AntVelEnv",
    "Direction2DTask",
    "DirectionTask",
    "GoalTask",
    "HalfCheetahDirEnv",
    "HalfCheetahVelEnv",
    "VelocityTask",
]
