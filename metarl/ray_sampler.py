"""Sample a meta-batch on Ray workers: the same episodes as the local ``Sampler``, on many cores or machines.

``RaySampler.sample(params, tasks, episodes_per_task) -> Episodes`` splits the tasks into
contiguous slices, one per long-lived actor (``SamplerWorker``), and concatenates the
slices' episodes in task order. Each actor holds a local ``Sampler`` of the family (its
batched env when it has one, else a vector env) on one torch thread.

The episodes equal the local sampler's for the same seed, whatever the number of workers:
the driver draws the reset seed from the sampler's RNG as ``Sampler.sample`` does and sends
every worker the state of the action-noise generator; a worker draws each step's noise for
the whole meta-batch and uses its slice's part (``Sampler.sample_part``), steps to the
horizon, and the driver cuts the batch where the last episode of any slice ended and then
advances its own generator by that many steps. Workers never hold a seed of their own, so
``progress.csv`` of a run is the same sampled locally or on 1, 2 or 3 workers.

Per phase the driver sends the parameters once (``ray.put``) and the tasks of each slice;
episodes come back as numpy arrays. Faults become a ``SamplerError`` naming the worker and
its tasks: an env that raises inside a worker, a worker process that dies (Ray reports it at
once), or a phase that takes longer than ``timeout_s``. Needs the ``ray`` extra.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from metarl.episodes import Episodes
from metarl.errors import ConfigError, SamplerError
from metarl.policies import Params, Policy
from metarl.sampler import Sampler


def require_ray() -> Any:
    """Import ray or say which extra to install."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("sampler: ray needs Ray: pip install 'metarl[ray]' (or use sampler: local).") from e
    return ray


def family_module_dir(family: str) -> str | None:
    """The folder of a ``module:Class`` family's module when it lies outside the installed packages.

    Ray workers on other machines (and, without it, on this one) cannot import a module that
    lives only in the user's working directory; the Ray sampler ships this folder to them
    (``runtime_env`` ``py_modules`` for a package, ``working_dir`` for a single-file module).
    """
    if ":" not in family or family.startswith(("metarl", "gymnasium")):
        return None
    module = family.split(":", 1)[0]
    top = module.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    if any(part in ("site-packages", "dist-packages") for part in origin.parts):
        return None
    return str(origin.parent)


class SamplerWorker:
    """One Ray actor: a local ``Sampler`` of the family that samples slices of meta-batches."""

    def __init__(
        self, family: str, policy: Policy, horizon: int, env_kwargs: dict[str, Any], torch_threads: int = 1
    ) -> None:
        torch.set_num_threads(torch_threads)
        self.sampler = Sampler(family, policy, horizon, 0, env_kwargs)

    def pid(self) -> tuple[int, str]:
        """The worker's process id and Ray node id (for tests and the cluster check)."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def sample(
        self,
        params: dict[str, np.ndarray],
        tasks: list[Any],
        episodes_per_task: int,
        seed: int,
        generator_state: torch.Tensor,
        offset: int,
        total_tasks: int,
    ) -> tuple[dict[str, np.ndarray], int, float]:
        """Sample one slice (``Sampler.sample_part`` to the horizon) -> ``(arrays, steps, seconds)``."""
        start = time.perf_counter()
        own: Params = {name: torch.from_numpy(value).clone() for name, value in params.items()}  # aligned, writable
        generator = torch.Generator()
        generator.set_state(generator_state)
        episodes, steps = self.sampler.sample_part(
            own, tasks, episodes_per_task, seed, generator, offset, total_tasks, to_horizon=True
        )
        arrays = {
            "observations": episodes.observations.numpy(),
            "actions": episodes.actions.numpy(),
            "rewards": episodes.rewards.numpy(),
            "mask": episodes.mask.numpy(),
        }
        if episodes.success is not None:
            arrays["success"] = episodes.success.numpy()
        return arrays, steps, time.perf_counter() - start


class RaySampler:
    """``Sampler``'s interface on Ray actors (see the module docstring).

    Args:
        family: The family id or ``module:Class`` spec (an id: workers build their own copy).
        policy: The policy (sent to the workers once; only its functions are used).
        horizon: Maximum steps per episode (``None``: the env's ``max_episode_steps``).
        seed: Seed of the action noise and reset seeds (the local sampler's).
        env_kwargs: Keyword arguments of the family.
        num_workers: Actors; a meta-batch of K tasks uses ``min(num_workers, K)`` of them.
        address: An existing Ray cluster (``ray start --head``'s address, or ``auto``);
            ``None`` starts a local Ray with ``num_workers`` CPUs for this process.
        timeout_s: Longest wait for one phase's episodes before a ``SamplerError``.
    """

    def __init__(
        self,
        family: str,
        policy: Policy,
        horizon: int | None = None,
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        num_workers: int = 2,
        address: str | None = None,
        timeout_s: float = 600.0,
    ) -> None:
        if not isinstance(family, str):
            raise ConfigError("sampler: ray needs the family as an id or 'module:Class' string, not an env object.")
        if num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers}.")
        self.ray = require_ray()
        self.local = Sampler(family, policy, horizon, seed, env_kwargs)  # the RNGs, the horizon, the split check
        self.family = family
        self.policy = policy
        self.horizon = self.local.horizon
        self.env_kwargs = dict(env_kwargs or {})
        self.num_workers = num_workers
        self.address = address
        self.timeout_s = timeout_s
        self.workers: list[Any] = []
        self._started_ray = False
        self._checked_split = False
        self.last_phase: dict[str, Any] = {}
        """The last ``sample``'s wall seconds, each worker's seconds, bytes sent (parameters, once) and received."""

    @property
    def generator(self) -> torch.Generator:
        """The action-noise generator (checkpointed like the local sampler's)."""
        return self.local.generator

    @property
    def np_rng(self) -> np.random.Generator:
        """The reset-seed RNG (checkpointed like the local sampler's)."""
        return self.local.np_rng

    def _job_runtime_env(self) -> dict[str, Any]:
        """For a cluster: ship the folder of a ``module:Class`` family to every node (Ray allows it per job only)."""
        folder = family_module_dir(self.family)
        if folder is None or self.address is None:
            return {}
        if (Path(folder) / "__init__.py").is_file():
            return {"py_modules": [folder]}
        return {"working_dir": folder}

    def _actor_runtime_env(self) -> dict[str, Any]:
        """On this machine: the folder of a ``module:Class`` family on the workers' ``PYTHONPATH``."""
        folder = family_module_dir(self.family)
        if folder is None or self.address is not None:
            return {}
        return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)}}

    def start(self) -> None:
        """Connect to (or start) Ray and start the workers, if not yet: a training calls it before writing its run.

        Raises:
            SamplerError: ``ray_address`` cannot be reached, or the workers did not start.
        """
        if not self.workers:
            self.worker_pids()

    def _check_address(self) -> None:
        """Fail in seconds, not minutes, when nothing listens at ``ray_address`` (Ray itself retries for long)."""
        if self.address is None or self.address == "auto" or "://" in self.address:
            return
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise SamplerError(
                f"ray_address must be HOST:PORT (as `ray start --head` prints it), or auto; got {self.address!r}."
            )
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise SamplerError(
                f"Cannot reach a Ray head at ray_address={self.address} ({e.strerror or e}). Start one with "
                f"`ray start --head --port={port}` there, check the address with `ray status`, or leave ray_address "
                "unset for a local Ray."
            ) from e

    def _start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            self._check_address()
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "runtime_env": self._job_runtime_env(),
            }
            if self.address is None:
                kwargs["num_cpus"] = self.num_workers
            try:
                ray.init(address=self.address, **kwargs)
            except Exception as e:  # noqa: BLE001 - connecting is the user's first contact with Ray
                raise SamplerError(
                    f"Could not start or reach Ray (ray_address={self.address!r}): {type(e).__name__}: {e}. "
                    "Check the address (`ray status` on the head node) or leave ray_address unset for a local Ray."
                ) from e
            self._started_ray = True
        actor = ray.remote(num_cpus=1, max_restarts=0)(SamplerWorker).options(runtime_env=self._actor_runtime_env())
        policy_ref = ray.put(self.policy)
        self.workers = [
            actor.remote(self.family, policy_ref, self.horizon, self.env_kwargs) for _ in range(self.num_workers)
        ]

    def worker_pids(self, timeout_s: float = 300.0) -> list[tuple[int, str]]:
        """``(pid, Ray node id)`` of every worker: starts them and waits until each has imported the family.

        Raises:
            SamplerError: A worker did not start within ``timeout_s``.
        """
        if not self.workers:
            self._start()
        try:
            return self.ray.get([w.pid.remote() for w in self.workers], timeout=timeout_s)
        except (self.ray.exceptions.GetTimeoutError, self.ray.exceptions.RayError) as e:
            self.close()
            raise SamplerError(f"The Ray workers did not start within {timeout_s:g} s: {_first_line(e)}") from e

    @torch.no_grad()
    def sample(self, params: Params, tasks: Sequence[Any], episodes_per_task: int) -> Episodes:
        """Roll out ``episodes_per_task`` episodes of every task on the workers (``Sampler.sample``'s contract).

        Raises:
            SamplerError: An env raised in a worker, a worker died, the phase timed out, or the
                family's batched env is not split-invariant.
            NonFiniteBatchError: The episodes hold NaN or inf.
        """
        k, n = len(tasks), episodes_per_task
        if k < 1 or n < 1:
            raise ValueError(f"Need at least one task and one episode per task, got {k} tasks x {n} episodes.")
        if not self._checked_split:
            if not self.local.split_invariant(tasks):
                raise SamplerError(
                    f"{self.family}'s batched env draws one random stream for a whole meta-batch, so workers could not "
                    "reproduce the local sampler's episodes; use sampler: local for it (it is a tensor program "
                    "that gains nothing from workers)."
                )
            self._checked_split = True
        if not self.workers:
            self._start()
        ray = self.ray
        seed = self.local.draw_reset_seed(k * n)
        state = self.generator.get_state()
        params_ref = ray.put({name: p.detach().cpu().numpy() for name, p in params.items()})
        bounds = np.array_split(np.arange(k), min(self.num_workers, len(self.workers), k))
        futures, slices = [], []
        for worker, (index, part) in zip(self.workers, enumerate(bounds)):
            a, b = int(part[0]), int(part[-1]) + 1
            slices.append((index, a, b))
            futures.append(worker.sample.remote(params_ref, list(tasks[a:b]), n, seed, state, a, k))
        start = time.perf_counter()
        results = self._gather(futures, slices)
        steps = max(r[1] for r in results)
        for _ in range(steps):  # the driver's generator advances as the local sampler's would
            self.policy.noise((k, n), self.generator)

        def cat(key: str) -> torch.Tensor:
            # a torch allocation (aligned as the local sampler's): MKL may round unaligned inputs differently
            return torch.from_numpy(np.concatenate([r[0][key][:, :, :steps] for r in results], axis=0)).clone()

        success = cat("success") if all("success" in r[0] for r in results) else None
        episodes = Episodes(cat("observations"), cat("actions"), cat("rewards"), cat("mask"), success)
        self.last_phase = {
            "seconds": time.perf_counter() - start,
            "worker_seconds": [r[2] for r in results],
            "bytes_sent": sum(int(p.nelement() * p.element_size()) for p in params.values()),
            "bytes_received": sum(int(a.nbytes) for r in results for a in r[0].values()),
        }
        episodes.check_finite()
        return episodes

    def _gather(self, futures: list[Any], slices: list[tuple[int, int, int]]) -> list[Any]:
        """Every slice's result, in order; any fault is a ``SamplerError`` naming the worker and tasks."""
        ray = self.ray
        results: list[Any] = [None] * len(futures)
        pending = dict(zip(futures, range(len(futures))))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout_s)
                if not done:
                    i = next(iter(pending.values()))
                    raise SamplerError(
                        f"Ray worker {slices[i][0]} (tasks {slices[i][1]}..{slices[i][2] - 1}) sent no episodes within "
                        f"timeout {self.timeout_s:g} s; raise sampler_timeout_s for slow families, or check the "
                        "cluster (`ray status`)."
                    )
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayActorError as e:
                        raise SamplerError(
                            f"Ray worker {slices[i][0]} (tasks {slices[i][1]}..{slices[i][2] - 1}) died: "
                            f"{_first_line(e)}. Its process ended (killed, out of memory, or a crash in the env's "
                            "native code); the run is intact: resume it with `metarl train --resume RUN_DIR`."
                        ) from e
                    except ray.exceptions.RayTaskError as e:
                        cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else e
                        raise SamplerError(
                            f"Ray worker {slices[i][0]} (tasks {slices[i][1]}..{slices[i][2] - 1}): "
                            f"{type(cause).__name__}: {_first_line(cause)}"
                        ) from e
        except SamplerError:
            self.close()  # a broken worker set is not reused; the next sample starts fresh ones
            raise
        return results

    def close(self) -> None:
        """Stop the workers, and Ray itself if this sampler started it (no processes stay behind)."""
        for worker in self.workers:
            try:
                self.ray.kill(worker)
            except Exception:  # noqa: BLE001, S110 - already dead
                pass
        self.workers = []
        if self._started_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._started_ray = False
        self.local.close()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
