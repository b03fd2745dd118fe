"""Action normalization, the published MAML setting for continuous-control families.

A family built with ``action_scale = S`` gives the policy the action space ``[-S, S]`` times
its native box and simulates ``clip(action, -S * box, S * box) / S``: with the Gaussian
policy's initial std of 1 the exploration noise is then ``1 / S`` of the native range
instead of saturating a third of the actions. pytorch-maml-rl (``normalization_scale: 10``),
garage (``normalize(env, expected_action_scale=10.)``, in its MuJoCo and Meta-World MAML
examples alike) and ProMP (``NormalizedEnv``) all use ``S = 10``. The MuJoCo families
(``metarl.envs.mujoco.family``) and the Meta-World families (``metarl.envs.metaworld``) share
these functions, so the option means the same everywhere (the batched MuJoCo backend calls
``to_control`` on a whole meta-batch of actions).

Example:
    >>> import gymnasium as gym
    >>> space = scaled_box(gym.spaces.Box(-1.0, 1.0, shape=(2,)), check_action_scale(10.0))
    >>> float(space.high[0])
    10.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces


def check_action_scale(value: Any) -> float:
    """``value`` as a float ``S``, or ValueError saying what ``action_scale`` takes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(
            "action_scale must be a finite number > 0 (10 is the published MAML setting, 1 acts on the controls "
            f"directly), got {value!r}."
        )
    return float(value)


def scaled_box(native: spaces.Box, scale: float) -> spaces.Box:
    """The policy's action space: ``native`` (the simulator's box) times ``scale`` (float32)."""
    if scale == 1.0:
        return native
    s = np.float32(scale)
    return spaces.Box(native.low * s, native.high * s, dtype=np.float32)


def to_control(action: Any, low: np.ndarray, high: np.ndarray, scale: float) -> np.ndarray:
    """What the simulator gets: ``clip(action, low, high) / scale`` (``low``, ``high``: the policy's box;
    any leading batch dimensions)."""
    return np.clip(action, low, high) / scale


__all__ = ["check_action_scale", "scaled_box", "to_control"]
