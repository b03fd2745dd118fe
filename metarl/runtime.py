"""What a run sets up from its config before it starts: device, torch threads, seeds, the policy.

One home for these, used by training, evaluation, the benchmark and the scripts alike.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from metarl.config import TrainConfig
from metarl.errors import ConfigError
from metarl.policies import Policy, make_policy


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA GPU; use device=cpu or device=auto.")
    return torch.device(name)


def configure_threads(requested: int) -> int:
    """Set torch's intra-op threads deliberately (oversubscription on small machines costs ~3x)."""
    n = requested or max(
        1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    )
    torch.set_num_threads(n)
    return n


def seed_streams(seed: int) -> dict[str, int]:
    """Independent seeds for each random stream of a run, derived from ``seed``."""
    names = ("init", "tasks", "sampler", "eval")
    return {name: int(s.generate_state(1)[0]) for name, s in zip(names, np.random.SeedSequence(seed).spawn(len(names)))}


def build_policy(config: TrainConfig, env: Any) -> Policy:
    """The policy the config describes, for the family's spaces."""
    return make_policy(
        env.observation_space, env.action_space, tuple(config.hidden_sizes), config.activation, config.init_std
    )
