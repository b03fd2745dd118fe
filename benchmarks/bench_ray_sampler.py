"""Sampling speed of the Ray sampler against the local sampler, in one run, and the episodes-identical check.

For (a) a pure-Python family plugged in as ``module:Class`` (``tests/user_families.py``'s
``GoodFamily``, a point on a line: it goes through a Gymnasium ``SyncVectorEnv`` in one
process), (b) HalfCheetahVel (the batched ``mujoco.batch`` backend) and (c) Meta-World ML1
``reach-v3`` (Python observation and reward code around MuJoCo, through a ``SyncVectorEnv``;
its success flags are compared too): one sampling phase of a meta-batch, local and on Ray
with 1 and 2 workers, and, as the reference for the 2-worker figure, two plain processes (no
Ray) sampling half the meta-batch each; the settings take turns, one phase each per round
(this machine's speed drifts by tens of percent between runs, and a drift then falls on all
of them). Env-steps per second and seconds per phase (medians over rounds after a warm-up
round), speedups as medians of per-round ratios, the Ray overhead per phase (driver wall time
minus the slowest worker's own sampling time), bytes sent and received per phase, and whether
every phase's episodes equal the local sampler's.

The local sampler and each Ray worker run torch on one thread; MuJoCo's batch uses every
core locally and one thread per Ray worker (``batch_threads``). Writes
``benchmarks/results/ray_sampler.json`` and ``.md``.

    python benchmarks/bench_ray_sampler.py [--phases 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # user_families, as a user's own module

from metarl.config import load_config  # noqa: E402
from metarl.families import make_family  # noqa: E402
from metarl.ray_sampler import RaySampler  # noqa: E402
from metarl.runtime import build_policy  # noqa: E402
from metarl.sampler import Sampler  # noqa: E402
from metarl.task_api import sample_tasks, seed_family  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CASES = {
    "python-family": {
        "family": "user_families:GoodFamily",
        "tasks": 20,
        "episodes": 20,
        "horizon": 100,
        "local_kwargs": {},
        "worker_kwargs": {},
    },
    "HalfCheetahVel": {
        "family": "HalfCheetahVel",
        "tasks": 40,
        "episodes": 20,
        "horizon": 100,
        "local_kwargs": {"action_scale": 10.0},
        "worker_kwargs": {"action_scale": 10.0, "batch_threads": 1},
    },
    "MetaWorld-ML1": {
        "family": "MetaWorld-ML1",
        "tasks": 10,
        "episodes": 5,
        "horizon": 150,
        "local_kwargs": {"env_name": "reach-v3"},
        "worker_kwargs": {"env_name": "reach-v3"},
    },
}
FIELDS = ("observations", "actions", "rewards", "mask")


def _plain_process(
    case: dict[str, Any], tasks: list[Any], params: dict[str, torch.Tensor], commands: Any, spans: Any
) -> None:
    """One of the no-Ray reference's processes: samples its half of the meta-batch with a local sampler
    whenever ``commands`` says so (``None``: stop) and puts its (start, end) clock readings on ``spans``."""
    torch.set_num_threads(1)
    config = load_config("2d-navigation", [f"family={case['family']}"])
    policy = build_policy(config, make_family(case["family"], **case["worker_kwargs"]))
    sampler = Sampler(case["family"], policy, case["horizon"], seed=3, env_kwargs=case["worker_kwargs"])
    while commands.get() is not None:
        start = time.monotonic()
        sampler.sample(params, tasks, case["episodes"])
        spans.put((start, time.monotonic()))
    sampler.close()


class PlainProcesses:
    """The meta-batch split over two plain processes without Ray, each a local sampler on one thread over
    half the tasks (not the same episodes): what two processes can do on this machine, the reference the
    Ray sampler's two workers are measured against. ``sample()`` times one phase of both."""

    def __init__(self, case: dict[str, Any], tasks: list[Any], params: dict[str, torch.Tensor]) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        half = len(tasks) // 2
        self.pipes = [(ctx.Queue(), ctx.Queue()) for _ in range(2)]
        self.procs = [
            ctx.Process(target=_plain_process, args=(case, part, params, *pipe))
            for part, pipe in zip((tasks[:half], tasks[half:]), self.pipes)
        ]
        for proc in self.procs:
            proc.start()

    def sample(self) -> float:
        """Seconds from the first process's start to the last one's end of one phase."""
        for commands, _ in self.pipes:
            commands.put(True)
        spans = [out.get(timeout=600) for _, out in self.pipes]
        return max(end for _, end in spans) - min(start for start, _ in spans)

    def close(self) -> None:
        for commands, _ in self.pipes:
            commands.put(None)
        for proc in self.procs:
            proc.join(timeout=60)


def measure(case: dict[str, Any], phases: int, workers: list[int]) -> dict[str, Any]:
    """Seconds per phase local, in two plain processes and on Ray, the overhead, bytes, and the identical check.

    Every setting is started first and warmed up with one phase; then each round times one
    phase of every setting in turn (local, two plain processes, Ray with each worker count),
    so a slow spell of the machine falls on all of them, and the ratios are medians of the
    per-round ratios (paired).
    """
    family = case["family"]
    config = load_config("2d-navigation", [f"family={family}"])
    env = make_family(family, **case["local_kwargs"])
    seed_family(env, 0)
    torch.manual_seed(0)
    policy = build_policy(config, env)
    params = policy.get_params()
    tasks = sample_tasks(env, case["tasks"])
    n, horizon = case["episodes"], case["horizon"]
    steps = case["tasks"] * n * horizon

    local = Sampler(family, policy, horizon, seed=3, env_kwargs=case["local_kwargs"])
    plain = PlainProcesses(case, tasks, {k: v.detach().clone() for k, v in params.items()})
    rays: dict[int, RaySampler] = {}
    startup: dict[int, float] = {}
    seconds: dict[str, list[float]] = {"local": [], "plain": [], **{f"ray_{w}": [] for w in workers}}
    overheads: dict[int, list[float]] = {w: [] for w in workers}
    identical = dict.fromkeys(workers, True)
    phase: dict[int, dict[str, Any]] = {}
    try:
        for w in workers:
            rays[w] = RaySampler(family, policy, horizon, seed=3, env_kwargs=case["worker_kwargs"], num_workers=w)
            start = time.perf_counter()
            rays[w].worker_pids()
            startup[w] = time.perf_counter() - start
        for _ in range(phases + 1):  # round 0 warms every setting up
            start = time.perf_counter()
            reference = local.sample(params, tasks, n)
            seconds["local"].append(time.perf_counter() - start)
            seconds["plain"].append(plain.sample())
            for w, sampler in rays.items():
                start = time.perf_counter()
                got = sampler.sample(params, tasks, n)
                seconds[f"ray_{w}"].append(time.perf_counter() - start)
                ok = all(torch.equal(getattr(got, f), getattr(reference, f)) for f in FIELDS)
                ok &= (got.success is None) == (reference.success is None)
                identical[w] &= ok and (got.success is None or torch.equal(got.success, reference.success))
                phase[w] = sampler.last_phase
                overheads[w].append(seconds[f"ray_{w}"][-1] - max(phase[w]["worker_seconds"]))
    finally:
        local.close()
        plain.close()
        for sampler in rays.values():
            sampler.close()
    timed = {key: values[1:] for key, values in seconds.items()}

    def paired(a: str, b: str) -> float:
        """Median over rounds of (a's seconds / b's seconds)."""
        return statistics.median(x / y for x, y in zip(timed[a], timed[b]))

    out: dict[str, Any] = {
        "family": family,
        "tasks": case["tasks"],
        "episodes_per_task": n,
        "horizon": horizon,
        "env_steps_per_phase": steps,
        "local": {"seconds": timed["local"], "median_s": statistics.median(timed["local"])},
        "two_processes": {
            "seconds": timed["plain"],
            "median_s": statistics.median(timed["plain"]),
            "speedup_vs_local": paired("local", "plain"),
        },
    }
    out["local"]["env_steps_per_s"] = steps / out["local"]["median_s"]
    for w in workers:
        median = statistics.median(timed[f"ray_{w}"])
        out[f"ray_{w}"] = {
            "workers": w,
            "startup_s": startup[w],
            "seconds": timed[f"ray_{w}"],
            "median_s": median,
            "env_steps_per_s": steps / median,
            "speedup_vs_local": paired("local", f"ray_{w}"),
            "vs_two_processes": paired("plain", f"ray_{w}"),
            "overhead_ms": 1000 * statistics.median(overheads[w][1:]),
            "bytes_sent": phase[w]["bytes_sent"],
            "bytes_received": phase[w]["bytes_received"],
            "identical_to_local": bool(identical[w]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    import ray

    # One local Ray for every case, with a logical CPU per worker of all the Ray samplers that are alive
    # together (each takes turns with the others, so only one setting is busy at a time).
    ray.init(num_cpus=sum(args.workers), include_dashboard=False, log_to_driver=False)
    try:
        results = {name: measure(CASES[name], args.phases, args.workers) for name in args.cases}
    finally:
        ray.shutdown()
    report = {
        "phases": args.phases,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_sampler.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Ray sampler vs local sampler: one sampling phase of a meta-batch",
        "",
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; {args.phases} rounds after one warm-up, each timing "
        "one phase of every setting in turn; seconds are medians over rounds, ratios (`vs`) medians of the "
        "per-round ratios; torch on one thread in the driver and in each worker.",
        "",
        "| family | batch (tasks x episodes x steps) | sampler | s / phase | env-steps / s | vs local | "
        "vs two plain processes | Ray overhead / phase (ms) | sent / received per phase | episodes = local |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results.values():
        batch = f"{r['tasks']} x {r['episodes_per_task']} x {r['horizon']}"
        lines.append(
            f"| {r['family']} | {batch} | local | {r['local']['median_s']:.3f} | {r['local']['env_steps_per_s']:,.0f} "
            "| 1.00 | | | | |"
        )
        two = r["two_processes"]
        lines.append(
            f"| {r['family']} | {batch} | two plain processes, no Ray (reference) | {two['median_s']:.3f} | "
            f"{r['env_steps_per_phase'] / two['median_s']:,.0f} | {two['speedup_vs_local']:.2f} | 1.00 | | | |"
        )
        for key in (k for k in r if k.startswith("ray_")):
            x = r[key]
            lines.append(
                f"| {r['family']} | {batch} | ray, {x['workers']} worker(s) | {x['median_s']:.3f} | "
                f"{x['env_steps_per_s']:,.0f} | {x['speedup_vs_local']:.2f} | {x['vs_two_processes']:.2f} | "
                f"{x['overhead_ms']:.0f} | "
                f"{x['bytes_sent'] / 1e3:.0f} kB / {x['bytes_received'] / 1e6:.1f} MB | "
                f"{'yes' if x['identical_to_local'] else 'NO'} |"
            )
    lines += [
        "",
        "Worker start-up (first contact, imports of torch and the family) is not in the phase times: "
        + "; ".join(
            f"{r['family']} {r[k]['workers']} worker(s) {r[k]['startup_s']:.1f} s"
            for r in results.values()
            for k in r
            if k.startswith("ray_")
        )
        + ".",
        "",
        "The two plain processes (multiprocessing, no Ray) each sample half the tasks with a local sampler on one "
        "thread, every phase started together: what two processes reach on this machine, so `vs two plain "
        "processes` is the share of it the Ray sampler's workers keep.",
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "ray_sampler.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
