"""What every MuJoCo family and the batched backend share: the import guard, task helpers, quiet model loading.

Importing ``metarl.envs.mujoco`` without the ``mujoco`` extra raises an ``ImportError`` that
names it.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import astuple, fields
from typing import Any, Callable, Iterator, Mapping

import numpy as np

try:
    import mujoco  # noqa: F401  (re-exported for the families)
    from gymnasium.envs.mujoco.ant_v5 import AntEnv  # noqa: F401
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "The MuJoCo task families need the `mujoco` package: pip install 'metarl[mujoco]' (or 'gymnasium[mujoco]')."
    ) from e

_SETTOTALMASS = "compiler attribute 'settotalmass' is deprecated"


@contextlib.contextmanager
def quiet_model_compiler() -> Iterator[None]:
    """Swallow MuJoCo's ``settotalmass`` deprecation warning while a model compiles.

    mujoco 4 prints it from C and appends it to ``MUJOCO_LOG.TXT`` in the working directory
    on every load of Gymnasium's ``half_cheetah.xml``. A Python warning handler
    (``mujoco.set_mju_user_warning``) replaces both the print and the log file. Any other
    warning goes to the previous handler, or becomes a Python ``UserWarning``. The handler
    is process-wide, so it is installed only for the duration of the ``with`` block.
    """
    previous: Callable[[str], None] | None = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if _SETTOTALMASS in message:
            return
        if previous is not None:
            previous(message)
        else:
            warnings.warn(f"MuJoCo: {message}", UserWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def coerce_task(task: Any, task_type: type, family: str) -> Any:
    """``task`` as a ``task_type`` instance; a mapping of its fields is also accepted.

    Raises:
        TypeError: ``task`` is neither.
    """
    if isinstance(task, Mapping):
        names = {f.name for f in fields(task_type)}
        if set(task) != names:
            raise TypeError(
                f"{family}.set_task got a mapping with keys {sorted(task)}; a {task_type.__name__} has {sorted(names)}."
            )
        task = task_type(**task)
    if not isinstance(task, task_type):
        raise TypeError(f"{family}.set_task expects a {task_type.__name__} (from sample_tasks), got {task!r}.")
    return task


def task_vector(task: Any) -> np.ndarray:
    """A goal-family task as a flat float64 vector of its fields, in declaration order:
    ``VelocityTask(v)`` -> ``[v]``, ``Direction2DTask((u_x, u_y))`` -> ``[u_x, u_y]``, ..."""
    return np.asarray(astuple(task), dtype=np.float64).reshape(-1)
