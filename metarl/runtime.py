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


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def estimate_memory(config: TrainConfig, env: Any) -> int:
    """A rough upper estimate, in bytes, of one meta-iteration's peak memory.

    Episodes of every phase (``meta_batch_size x episodes_per_task x horizon`` steps of
    observation, action, reward, mask) with the learner's processed copies, the policy's
    activations on all of them through a second-order graph, and the parameters stacked per
    task along the adaptation. It errs high on purpose (0.25 GiB for the packaged 2D
    navigation config, 0.8 GiB for Ant's): it is there to refuse, before anything is
    allocated, a config that cannot fit, not to size a machine.
    """
    obs = int(np.prod(env.observation_space.shape or (1,))) if env.observation_space.shape else 1
    act = int(np.prod(env.action_space.shape)) if env.action_space.shape else int(getattr(env.action_space, "n", 1))
    horizon = config.horizon or getattr(env.spec, "max_episode_steps", None) or 1000
    steps = config.meta_batch_size * config.episodes_per_task * horizon
    phases = config.num_steps + 1
    dims = [obs, *config.hidden_sizes, act]
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:])) + act
    episodes = steps * (obs + act + 3) * 4 * phases * 4
    activations = steps * (sum(config.hidden_sizes) + act) * 4 * phases * 6
    stacked = params * config.meta_batch_size * 4 * (config.num_steps + 3) * 4
    return int(episodes + activations + stacked)


def check_memory(config: TrainConfig, env: Any) -> None:
    """Refuse a config whose meta-iteration cannot fit in this machine's memory.

    Raises:
        ConfigError: The estimate exceeds the available memory, with both figures.
    """
    need, have = estimate_memory(config, env), available_memory()
    if have is not None and need > have:
        raise ConfigError(
            f"This config needs about {need / 2**30:.1f} GiB per meta-iteration (meta_batch_size "
            f"{config.meta_batch_size} x episodes_per_task {config.episodes_per_task} x horizon {config.horizon} "
            f"steps, hidden_sizes {config.hidden_sizes}); this machine has {have / 2**30:.1f} GiB available. "
            "Lower meta_batch_size, episodes_per_task, horizon or hidden_sizes."
        )
