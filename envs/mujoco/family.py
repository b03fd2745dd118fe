"""``MujocoTaskFamily``: the task bookkeeping, action normalization and pickling of every MuJoCo family.

Mixed in before a Gymnasium ``MujocoEnv`` by the goal families (``locomotion``) and the
dynamics families (``dynamics``); ``make_batched`` hands a meta-batch to the native batched
backend (``batch``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from gymnasium import utils

from metarl.envs.action_scale import check_action_scale, scaled_box, to_control
from metarl.envs.mujoco.base import mujoco, quiet_model_compiler
from metarl.errors import TaskNotSetError

if TYPE_CHECKING:
    from metarl.envs.mujoco.batch import BatchedMujocoEnv


class MujocoTaskFamily:
    """Task bookkeeping shared by the MuJoCo families; mix in before a Gymnasium ``MujocoEnv``.

    Adds ``get_task``, the ``TaskNotSetError`` checks, action normalization (clip to the
    action space ``[-S, S]^n``, divide by ``S = action_scale``), quiet model loading,
    pickling that keeps the task, the full ``MjData`` and the RNG (Gymnasium's
    ``EzPickle`` alone would rebuild a fresh env without them), and the
    native batched backend (``make_batched``). Subclasses implement ``sample_tasks`` and
    ``validate_task``, and ``_apply_task`` if a task changes the env itself. A goal family
    (the task is only in the reward) also has a static ``task_term``, its reward's task
    term vectorized over leading dimensions, which the single env and the batched backend
    both call: HalfCheetah ``task_term(task [..., p], x_velocity [...])``, Ant
    ``task_term(task [..., p], xy_position [..., 2], xy_velocity [..., 2])``, with ``task``
    from ``task_vector``. Families without one (dynamics) keep Gymnasium's forward reward.

    Args:
        action_scale: ``S``: the action space is the actuators' ``ctrlrange`` times ``S``, and
            an action is clipped to it and divided by ``S`` before it is simulated (the
            published MAML setting is 10; 1 acts on the controls directly).
        batch_threads: MuJoCo threads of the batched backend (``None``: every CPU core).
        **kwargs: Passed to the Gymnasium env.

    Raises:
        ValueError: ``action_scale`` is not a finite number > 0, or ``batch_threads`` < 1.
    """

    _task: Any = None
    # Provided by the Gymnasium MujocoEnv this class is mixed into.
    model: Any
    data: Any
    action_space: Any

    def __init__(self, action_scale: float = 1.0, batch_threads: int | None = None, **kwargs: Any) -> None:
        action_scale = check_action_scale(action_scale)
        if batch_threads is not None and batch_threads < 1:
            raise ValueError(f"batch_threads must be >= 1 (or None for every CPU core), got {batch_threads}.")
        super().__init__(**kwargs)
        self.action_scale = action_scale
        self.action_space = scaled_box(self.action_space, action_scale)  # Gymnasium's is the ctrlrange
        self.batch_threads = batch_threads
        # Unpickling calls type(self)(**kwargs); a subclass that takes more arguments records them again.
        utils.EzPickle.__init__(self, action_scale=action_scale, batch_threads=batch_threads, **kwargs)  # type: ignore[arg-type]

    def _initialize_simulation(self) -> tuple[Any, Any]:
        with quiet_model_compiler():
            return super()._initialize_simulation()  # type: ignore[misc]

    def sample_tasks(self, n: int) -> list[Any]:
        """Draw ``n`` tasks from ``self.np_random``."""
        raise NotImplementedError

    def set_task(self, task: Any) -> None:
        """Make the env behave as ``task`` (from ``sample_tasks``, or a mapping of its fields)."""
        task = self.validate_task(task)
        self._apply_task(task)
        self._task = task

    def validate_task(self, task: Any) -> Any:
        """``task`` as this family's task type, checked (nothing else changes).

        Raises:
            TypeError: ``task`` is not a task of this family (nor a mapping of its fields).
            ValueError: A field is out of its domain.
        """
        raise NotImplementedError

    def _apply_task(self, task: Any) -> None:
        """Apply a validated task to the env (goal families keep it in ``self._task`` only)."""

    def task_models(self, tasks: Sequence[Any]) -> list[Any] | None:
        """One ``MjModel`` per task for the batched backend, or ``None`` when every task runs on
        this env's model (goal families; dynamics families override this)."""
        return None

    def make_batched(self, tasks: Sequence[Any], episodes_per_task: int) -> BatchedMujocoEnv:
        """The native batched backend for ``tasks`` x ``episodes_per_task`` episodes.

        Episode ``b`` runs ``tasks[b // episodes_per_task]``; this env is not changed.
        See ``metarl.envs.mujoco.batch``. Imported here, not at the top: the backend needs
        mujoco >= 4 (``mujoco.batch``) while the single env runs on older releases too.
        """
        from metarl.envs.mujoco.batch import BatchedMujocoEnv

        return BatchedMujocoEnv(self, tasks, episodes_per_task, nthread=self.batch_threads)

    def get_task(self) -> Any:
        """The current task."""
        self._require_task()
        return self._task

    def _require_task(self) -> None:
        if self._task is None:
            raise TaskNotSetError(
                f"{type(self).__name__} has no task: call env.set_task(task) (tasks come from env.sample_tasks(n)) "
                "before reset/step."
            )

    def _check_n(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"sample_tasks needs n >= 1, got {n}.")

    def _to_control(self, action: Any) -> np.ndarray:
        """The control ``clip(action, -S, S) / S`` that is simulated and pays the control cost."""
        return to_control(action, self.action_space.low, self.action_space.high, self.action_scale)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options and "task" in options:
            self.set_task(options["task"])
        self._require_task()
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        return obs, {**info, "task": self._task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.float64, bool, bool, dict[str, Any]]:
        self._require_task()
        obs, reward, terminated, truncated, info = super().step(self._to_control(action))  # type: ignore[misc]
        return obs, np.float64(reward), bool(terminated), truncated, {**info, "task": self._task}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(utils.EzPickle.__getstate__(self))  # type: ignore[arg-type]
        state["metarl_task"] = self._task
        state["metarl_data"] = self.data  # MjData pickles (with a copy of its model)
        state["metarl_rng"] = (getattr(self, "_np_random", None), getattr(self, "_np_random_seed", None))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        task, data, (rng, rng_seed) = state.pop("metarl_task"), state.pop("metarl_data"), state.pop("metarl_rng")
        utils.EzPickle.__setstate__(self, state)  # type: ignore[arg-type]  # rebuilds the env from its constructor arguments
        if task is not None:
            self.set_task(task)
        mujoco.mj_copyData(self.data, self.model, data)
        self._np_random, self._np_random_seed = rng, rng_seed
