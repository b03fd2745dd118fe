"""MuJoCo dynamics families: the same robot and reward, different physical parameters per task.

After ProMP's ``RandomEnv`` (rand_param_envs, Rothfuss et al. 2019): a task multiplies
the model's default parameters element-wise by random factors,

=================  =======================  ===================================
parameter          multiplier               shape
=================  =======================  ===================================
``body_mass``      ``1.5 ** U(-3, 3)``      ``(nbody,)``
``body_inertia``   ``1.5 ** U(-3, 3)``      ``(nbody, 3)``
``dof_damping``    ``1.3 ** U(-3, 3)``      ``(nv,)``
``geom_friction``  ``1.5 ** U(-3, 3)``      ``(ngeom, 3)`` (sliding, torsional, rolling)
=================  =======================  ===================================

one independent draw per element (the world body and the floor included, as ProMP), in
that order, from ``self.np_random``. ``rand_params`` chooses which parameters vary (the
others keep their defaults) and ``log_scale_limit`` the exponent's range (default 3).

``set_task`` writes ``default * multiplier`` into the ``MjModel`` from defaults stored at
construction (never compounding), then ``mj_setConst`` recomputes the constants that
depend on masses and inertias (subtree masses, ``*_invweight0`` used by the constraint
solver, ``actuator_acc0``), which ProMP's mujoco-py code left stale. A task takes effect
at the next step; the sampler sets tasks before resetting. The batched backend
(``make_batched``, ``metarl.envs.mujoco.batch``) runs each task on its own copy of the
model, made by the same code (``task_models``), shared by that task's episodes.

Reward, observation, action space, reset noise and termination are those of the
Gymnasium v5 env (the plain forward-running reward), with an action ``a`` turned into the
control ``u = clip(a, -S, S) / S`` first as in ``metarl.envs.mujoco.locomotion`` (``S =
action_scale``, default 1; MuJoCo clamps the controls to the same box, so with ``S = 1`` only
the control cost of out-of-range actions changes; ``a`` below stands for ``u``):

* ``HalfCheetahRandParams``: ``v_x - 0.1 * ||a||^2``, 17 obs, 6 actions, never terminates;
* ``AntRandParams``: ``v_x + 1[healthy] - 0.5 * ||a||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
  105 obs, 8 actions, terminates when the torso height leaves [0.2, 1.0];
* ``HopperRandParams``: ``v_x + 1[healthy] - 1e-3 * ||a||^2``, 11 obs, 3 actions, terminates
  when unhealthy (height <= 0.7, |angle| >= 0.2 or a state beyond 100);
* ``Walker2dRandParams``: ``v_x + 1[healthy] - 1e-3 * ||a||^2``, 17 obs, 6 actions, terminates
  when the height leaves (0.8, 2) or |angle| >= 1;

with ``v_x`` Gymnasium's finite difference over one env step (``qpos[0]`` for HalfCheetah,
Hopper and Walker2d, the torso's ``xpos[0]`` for Ant; ``dt`` = 0.05, 0.05, 0.008, 0.008 s).
Horizon 200 (set by the registration). Actions lie in ``[-S, S]^d``; the controls in
``[-1, 1]^d``, scaled by the motor gears of the Gymnasium models.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import utils

# metarl.envs.mujoco.base first: without mujoco it raises the ImportError that names the extra.
from metarl.envs.mujoco.base import coerce_task, mujoco  # isort: skip
from metarl.envs.mujoco.family import MujocoTaskFamily  # isort: skip
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

RAND_PARAMS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
LOG_BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


def _nested_tuple(a: np.ndarray) -> Any:
    """A float array as (nested) tuples of Python floats: hashable, comparable, exact."""
    return tuple(_nested_tuple(row) for row in a) if a.ndim > 1 else tuple(float(x) for x in a)


@dataclass(frozen=True)
class DynamicsTask:
    """Multipliers on the model's default parameters; ``None`` leaves a parameter at its default.

    Attributes:
        body_mass: ``(nbody,)`` multipliers of ``model.body_mass``.
        body_inertia: ``(nbody, 3)`` multipliers of ``model.body_inertia``.
        dof_damping: ``(nv,)`` multipliers of ``model.dof_damping``.
        geom_friction: ``(ngeom, 3)`` multipliers of ``model.geom_friction``.
    """

    body_mass: tuple[float, ...] | None = None
    body_inertia: tuple[tuple[float, ...], ...] | None = None
    dof_damping: tuple[float, ...] | None = None
    geom_friction: tuple[tuple[float, ...], ...] | None = None

    def multiplier(self, name: str) -> np.ndarray | None:
        """The multipliers of parameter ``name`` as a float64 array (``None`` if unchanged)."""
        value = getattr(self, name)
        return None if value is None else np.asarray(value, dtype=np.float64)


class RandParamsFamily(MujocoTaskFamily):
    """Per-task physical parameters on a Gymnasium v5 MuJoCo env (see the module docstring).

    Args:
        rand_params: Which of ``RAND_PARAMS`` vary across tasks.
        log_scale_limit: Exponents are drawn from ``U(-log_scale_limit, log_scale_limit)``.
        **kwargs: Passed to ``MujocoTaskFamily`` (``action_scale``, ``batch_threads``) and the Gymnasium env.

    Raises:
        ValueError: An unknown name in ``rand_params`` or a negative ``log_scale_limit``.
    """

    def __init__(self, rand_params: Sequence[str] = RAND_PARAMS, log_scale_limit: float = 3.0, **kwargs: Any) -> None:
        unknown = [p for p in rand_params if p not in RAND_PARAMS]
        if unknown:
            raise ValueError(f"Unknown rand_params {unknown}; choose from {list(RAND_PARAMS)}.")
        if not log_scale_limit >= 0:
            raise ValueError(f"log_scale_limit must be >= 0, got {log_scale_limit}.")
        super().__init__(**kwargs)
        utils.EzPickle.__init__(self, rand_params=tuple(rand_params), log_scale_limit=log_scale_limit, **kwargs)
        self.rand_params = tuple(p for p in RAND_PARAMS if p in rand_params)  # canonical order
        self.log_scale_limit = float(log_scale_limit)
        self.default_params = {name: getattr(self.model, name).copy() for name in RAND_PARAMS}

    def sample_tasks(self, n: int) -> list[DynamicsTask]:
        """Draw ``n`` tasks with ``self.np_random``: for each task, each parameter of
        ``rand_params`` in turn gets ``base ** U(-limit, limit)`` per element."""
        self._check_n(n)
        tasks = []
        for _ in range(n):
            multipliers = {}
            for name in self.rand_params:
                exponents = self.np_random.uniform(
                    -self.log_scale_limit, self.log_scale_limit, size=self.default_params[name].shape
                )
                multipliers[name] = _nested_tuple(np.power(LOG_BASES[name], exponents))
            tasks.append(DynamicsTask(**multipliers))
        return tasks

    def validate_task(self, task: Any) -> DynamicsTask:
        if isinstance(task, Mapping):
            task = _task_from_mapping(task)
        task = coerce_task(task, DynamicsTask, type(self).__name__)
        for name in RAND_PARAMS:
            default = self.default_params[name]
            multiplier = task.multiplier(name)
            if multiplier is None:
                continue
            if multiplier.shape != default.shape:
                raise ValueError(
                    f"{type(self).__name__}: {name} multipliers have shape {multiplier.shape}, the model needs "
                    f"{default.shape}."
                )
            if not np.all(np.isfinite(multiplier) & (multiplier > 0)):
                raise ValueError(f"{type(self).__name__}: {name} multipliers must be finite and positive.")
        return task

    def task_parameters(self, task: DynamicsTask) -> dict[str, np.ndarray]:
        """The model parameters of a validated ``task``: ``default * multiplier`` per name of
        ``RAND_PARAMS`` (the default where the task leaves a parameter unchanged)."""
        values = {}
        for name in RAND_PARAMS:
            multiplier = task.multiplier(name)
            values[name] = self.default_params[name] if multiplier is None else self.default_params[name] * multiplier
        return values

    def write_task(self, model: mujoco.MjModel, task: DynamicsTask) -> None:
        """Write a validated ``task``'s parameters into ``model`` (a model of this robot) and
        recompute its derived constants; ``set_task`` and the batched backend's per-task
        models both go through here."""
        for name, value in self.task_parameters(task).items():
            getattr(model, name)[:] = value
        # A scratch MjData: mj_setConst runs kinematics at qpos0, which would clobber self.data.
        mujoco.mj_setConst(model, mujoco.MjData(model))

    def task_models(self, tasks: Sequence[DynamicsTask]) -> list[mujoco.MjModel]:
        """One ``MjModel`` per task (copies of this env's model), as ``set_task`` would make it.

        Raises:
            TypeError, ValueError: A task is invalid (as ``set_task``).
        """
        models = []
        for task in tasks:
            model = copy.copy(self.model)
            self.write_task(model, self.validate_task(task))
            models.append(model)
        return models

    def _apply_task(self, task: DynamicsTask) -> None:
        self.write_task(self.model, task)


def _task_from_mapping(task: Mapping[str, Any]) -> DynamicsTask:
    """A ``DynamicsTask`` from a mapping of (some of) its fields to array-likes."""
    names = {f.name for f in fields(DynamicsTask)}
    if not set(task) <= names:
        raise TypeError(f"set_task got a mapping with keys {sorted(task)}; DynamicsTask fields are {sorted(names)}.")
    return DynamicsTask(
        **{k: None if v is None else _nested_tuple(np.asarray(v, dtype=np.float64)) for k, v in task.items()}
    )


class HalfCheetahRandParamsEnv(RandParamsFamily, HalfCheetahEnv):
    """HalfCheetah-v5 with per-task masses, inertias, damping and friction.

    Reward ``v_x - 0.1 * ||u||^2`` (Gymnasium's), ``v_x`` from ``qpos[0]`` over
    ``dt = 0.05``; 17 observations; actions in ``[-1, 1]^6``; never terminates; horizon 200.
    Tasks: ``DynamicsTask`` with 8 body, 9 dof and 9 geom multipliers (module docstring).
    """


class AntRandParamsEnv(RandParamsFamily, AntEnv):
    """Ant-v5 with per-task masses, inertias, damping and friction.

    Reward Gymnasium's ``v_x + 1[healthy] - 0.5 * ||u||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2``,
    ``v_x`` from the torso's ``xpos[0]`` over ``dt = 0.05``; 105 observations; actions in
    ``[-1, 1]^8``; terminates when the torso height leaves [0.2, 1.0]; horizon 200.
    Tasks: ``DynamicsTask`` with 14 body, 14 dof and 14 geom multipliers.
    """


class HopperRandParamsEnv(RandParamsFamily, HopperEnv):
    """Hopper-v5 with per-task masses, inertias, damping and friction.

    Reward Gymnasium's ``v_x + 1[healthy] - 1e-3 * ||u||^2``, ``v_x`` from ``qpos[0]``
    over ``dt = 0.008``; 11 observations (velocities clipped to +-10); actions in
    ``[-1, 1]^3``; terminates when unhealthy; horizon 200.
    Tasks: ``DynamicsTask`` with 5 body, 6 dof and 5 geom multipliers.
    """


class Walker2dRandParamsEnv(RandParamsFamily, Walker2dEnv):
    """Walker2d-v5 with per-task masses, inertias, damping and friction.

    Reward Gymnasium's ``v_x + 1[healthy] - 1e-3 * ||u||^2``, ``v_x`` from ``qpos[0]``
    over ``dt = 0.008``; 17 observations (velocities clipped to +-10); actions in
    ``[-1, 1]^6``; terminates when unhealthy; horizon 200.
    Tasks: ``DynamicsTask`` with 8 body, 9 dof and 8 geom multipliers.
    """


__all__ = [
    "AntRandParamsEnv",
    "DynamicsTask",
    "HalfCheetahRandParamsEnv",
    "HopperRandParamsEnv",
    "LOG_BASES",
    "RAND_PARAMS",
    "RandParamsFamily",
    "Walker2dRandParamsEnv",
]
