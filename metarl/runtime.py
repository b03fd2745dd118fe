"""What a run sets up from its config before it starts: device, torch threads, seeds, the policy.

One home for these, used by training, evaluation, the benchmark and the scripts alike.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch

from metarl.config import TrainConfig
from metarl.errors import ConfigError
from metarl.policies import Policy, make_policy
from metarl.ray_sampler import RaySampler
from metarl.sampler import Sampler


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA GPU; use device=cpu or device=auto.")
    return torch.device(name)


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), or ``range(cpu_count)`` where unknown."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def default_threads() -> int:
    """``torch_threads: 0`` on a quiet machine: one per usable core, at most 4."""
    return max(1, min(4, len(usable_cpus())))


def configure_threads(requested: int) -> int:
    """Set torch's intra-op threads deliberately (oversubscription on small machines costs ~3x)."""
    n = requested or default_threads()
    torch.set_num_threads(n)
    return n


def busy_cpu_seconds(cpus: list[int], stat: str = "/proc/stat") -> float | None:
    """CPU seconds spent busy (not idle or waiting on I/O) on ``cpus`` since boot, by every process.

    ``None`` where ``/proc/stat`` cannot be read (not Linux).
    """
    try:
        with open(stat) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cpus}
    busy = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in wanted:
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
            values = [int(v) for v in fields[1:9]]
            busy += sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


class LoadAwareThreads:
    """``torch_threads: 0``: as many torch threads as the other processes leave cores idle.

    On a quiet 2-core machine 2 threads are 1.7x faster than 1, but next to one busy core
    they are 2x slower than 1 (OpenMP's threads wait on each other while one is descheduled;
    ``benchmarks/results/threads_under_load.md``). ``update()``, called between
    meta-iterations, measures the CPU time other processes used on this process's cores
    since the previous call (all busy time there minus this process's own) and sets torch's
    thread count to the cores left, between 1 and ``max_threads``. The thread count changes
    only the speed: on this machine runs with 1 and 2 threads are bit-identical (torch does
    not promise that everywhere; set ``torch_threads`` to a number for a fixed count).

    Args:
        max_threads: The most threads (default: ``default_threads()``).
        min_interval: Seconds between measurements below which ``update`` keeps the count.
    """

    def __init__(self, max_threads: int | None = None, min_interval: float = 0.05) -> None:
        self.cpus = usable_cpus()
        self.max_threads = max_threads or default_threads()
        self.min_interval = min_interval
        self.threads = self.max_threads
        self.others = 0.0
        torch.set_num_threads(self.threads)
        self._last = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float] | None:
        busy = busy_cpu_seconds(self.cpus)
        return None if busy is None else (time.monotonic(), busy, time.process_time())

    def update(self) -> int:
        """Measure the load since the last call and set (and return) torch's thread count."""
        now = self._snapshot()
        if now is None or self._last is None:
            return self.threads
        wall = now[0] - self._last[0]
        if wall < self.min_interval:
            return self.threads
        own = now[2] - self._last[2]
        self.others = max(0.0, (now[1] - self._last[1] - own) / wall)
        free = len(self.cpus) - self.others
        # A core counts as free when others used at most a quarter of it: an OpenMP thread
        # that shares its core with a busy process slows every other thread down.
        self.threads = int(min(self.max_threads, max(1, math.floor(free + 0.25))))
        self._last = now
        torch.set_num_threads(self.threads)
        return self.threads


def seed_streams(seed: int) -> dict[str, int]:
    """Independent seeds for each random stream of a run, derived from ``seed``."""
    names = ("init", "tasks", "sampler", "eval")
    return {name: int(s.generate_state(1)[0]) for name, s in zip(names, np.random.SeedSequence(seed).spawn(len(names)))}


def build_policy(config: TrainConfig, env: Any) -> Policy:
    """The policy the config describes, for the family's spaces."""
    return make_policy(
        env.observation_space, env.action_space, tuple(config.hidden_sizes), config.activation, config.init_std
    )


def build_sampler(config: TrainConfig, policy: Policy, seed: int) -> Sampler | RaySampler:
    """The sampler the config asks for (``sampler: local | ray``), seeded with ``seed``.

    Both sample the same episodes for the same seed; the Ray one starts its workers on its
    first ``sample`` (and Ray itself, unless ``ray_address`` names a cluster).
    """
    if config.sampler == "ray":
        return RaySampler(
            config.family,
            policy,
            config.horizon,
            seed,
            config.env_kwargs,
            num_workers=config.num_workers,
            address=config.ray_address,
            timeout_s=config.sampler_timeout_s,
        )
    return Sampler(config.family, policy, config.horizon, seed, config.env_kwargs)


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
