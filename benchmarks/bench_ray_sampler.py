"""Sampling speed of the Ray sampler against the local sampler, in one run, and the episodes-identical check.

For (a) a pure-Python family plugged in as ``module:Class`` (``tests/user_families.py``'s
``GoodFamily``, a point on a line: it goes through a Gymnasium ``SyncVectorEnv`` in one
process), (b) HalfCheetahVel (the batched ``mujoco.batch`` backend) and (c) Meta-World ML1
``reach-v3`` (Python observation and reward code around MuJoCo, through a ``SyncVectorEnv``;
its success flags are compared too): one sampling phase of a meta-batch, local and on Ray
with 1 and 2 workers; env-steps per second and seconds per
phase (medians over phases after a warm-up phase), the Ray overhead per phase (driver wall
time minus the slowest worker's own sampling time), bytes sent and received per phase, and
whether every phase's episodes equal the local sampler's.

The local sampler and each Ray worker run torch on one thread; MuJoCo's batch uses every
core locally and one thread per Ray worker (``batch_threads``). Writes
``benchmarks/results/ray_sampler.json`` and ``.md``.

    python benchmarks/bench_ray_sampler.py [--phases 3]
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


def measure(case: dict[str, Any], phases: int, workers: list[int]) -> dict[str, Any]:
    """Seconds per phase local and on Ray, the overhead, bytes, and the identical check."""
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
    reference, local_seconds = [], []
    for _ in range(phases + 1):
        start = time.perf_counter()
        reference.append(local.sample(params, tasks, n))
        local_seconds.append(time.perf_counter() - start)
    local.close()
    out: dict[str, Any] = {
        "family": family,
        "tasks": case["tasks"],
        "episodes_per_task": n,
        "horizon": horizon,
        "env_steps_per_phase": steps,
        "local": {"seconds": local_seconds[1:], "median_s": statistics.median(local_seconds[1:])},
    }
    out["local"]["env_steps_per_s"] = steps / out["local"]["median_s"]
    for w in workers:
        sampler = RaySampler(family, policy, horizon, seed=3, env_kwargs=case["worker_kwargs"], num_workers=w)
        try:
            start = time.perf_counter()
            sampler.worker_pids()
            startup = time.perf_counter() - start
            walls, overheads, identical, phase = [], [], True, {}
            for i in range(phases + 1):
                start = time.perf_counter()
                got = sampler.sample(params, tasks, n)
                wall = time.perf_counter() - start
                identical &= all(torch.equal(getattr(got, f), getattr(reference[i], f)) for f in FIELDS)
                identical &= (got.success is None) == (reference[i].success is None)
                identical &= got.success is None or torch.equal(got.success, reference[i].success)
                phase = sampler.last_phase
                if i > 0:
                    walls.append(wall)
                    overheads.append(wall - max(phase["worker_seconds"]))
        finally:
            sampler.close()
        median = statistics.median(walls)
        out[f"ray_{w}"] = {
            "workers": w,
            "startup_s": startup,
            "seconds": walls,
            "median_s": median,
            "env_steps_per_s": steps / median,
            "speedup_vs_local": out["local"]["median_s"] / median,
            "overhead_ms": 1000 * statistics.median(overheads),
            "bytes_sent": phase["bytes_sent"],
            "bytes_received": phase["bytes_received"],
            "identical_to_local": bool(identical),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=3, help="timed phases per setting (after one warm-up)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    results = {name: measure(CASES[name], args.phases, args.workers) for name in args.cases}
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
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; medians of {args.phases} phases after one warm-up; "
        "torch on one thread in the driver and in each worker.",
        "",
        "| family | batch (tasks x episodes x steps) | sampler | s / phase | env-steps / s | vs local | "
        "Ray overhead / phase (ms) | sent / received per phase | episodes = local |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results.values():
        batch = f"{r['tasks']} x {r['episodes_per_task']} x {r['horizon']}"
        lines.append(
            f"| {r['family']} | {batch} | local | {r['local']['median_s']:.3f} | {r['local']['env_steps_per_s']:,.0f} "
            "| 1.00 | | | |"
        )
        for key in (k for k in r if k.startswith("ray_")):
            x = r[key]
            lines.append(
                f"| {r['family']} | {batch} | ray, {x['workers']} worker(s) | {x['median_s']:.3f} | "
                f"{x['env_steps_per_s']:,.0f} | {x['speedup_vs_local']:.2f} | {x['overhead_ms']:.0f} | "
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
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "ray_sampler.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
