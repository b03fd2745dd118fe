"""Closed-loop env-steps per second of the MuJoCo sampler, against the simulator's ceiling.

For HalfCheetahVel and AntVel on a full meta-batch (40 tasks x 20 episodes), each at the
families' default ``action_scale`` 1 and at the packaged configs' 10 (the policy acts in
``[-10, 10]``, the simulator gets the action / 10), measured in one
process in ``--repeats`` interleaved rounds (one call of each variant per round, so that the
load of other processes hits all alike; ratios are medians of the per-round ratios):

* **batched sampler**: ``metarl.sampler.Sampler`` with the Gaussian 64-64 tanh MLP policy in
  the loop, on the native batched backend (``metarl.envs.mujoco.batch``: ``mujoco.batch``
  with every CPU core, torch on one thread during the rollout);
* **(a) ceiling**: the same episodes' initial states stepped open-loop with random controls
  (``clip(N(0, 1)) / action_scale`` per env step, distributed like the untrained policy's
  actions as the simulator gets them) by
  MuJoCo's own multithreaded ``mujoco.rollout`` (same threads), no policy, no
  observations, rewards or Python per step;
* **(b) SyncVectorEnv**: the same sampler through its Gymnasium fallback
  (``gymnasium.vector.SyncVectorEnv`` over 800 env copies), torch on one thread as well;
* for Ant, also the batched sampler with every episode live for the whole horizon
  (``terminate_when_unhealthy=False``, as the ceiling), with and without contact forces
  (an Ant that neither observes nor pays for them): the cost of computing Gymnasium's
  ``cfrc_ext`` exactly.

Env-steps count the steps of live episodes (the sampler's mask): Ant episodes that fall
stop early, and the batched backend stops stepping them. The ceiling steps every episode
for the whole horizon.

Also: the peak resident memory (``VmHWM``) of a fresh process that runs an 800-env
HalfCheetahVel sampler at the family's 200-step horizon (target < 1.5 GB), and the thread
settings.

Writes ``benchmarks/results/mujoco_sampler.json`` and ``mujoco_sampler.md``.

    python benchmarks/bench_mujoco_sampler.py [--horizon 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout

import metarl
import metarl.sampler as sampler_module
from metarl.envs.action_scale import to_control
from metarl.envs.mujoco.batch import BatchedMujocoEnv, available_cpus
from metarl.families import make_family
from metarl.policies import make_policy
from metarl.sampler import Sampler
from metarl.task_api import seed_family

RESULTS = Path(__file__).parent / "results"
ROBOTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("HalfCheetahVel", "HalfCheetahVel", {}),
    ("AntVel", "AntVel", {}),
    ("HalfCheetahVel, action_scale 10", "HalfCheetahVel", {"action_scale": 10.0}),
    ("AntVel, action_scale 10", "AntVel", {"action_scale": 10.0}),
)
"""(row label, family, env kwargs): the families' defaults, then the packaged configs' action scale."""
NO_TERMINATION = {"terminate_when_unhealthy": False}
NO_CONTACT_FORCES = {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0}
TARGET_CEILING_RATIO, TARGET_SYNC_RATIO, TARGET_MEMORY_MB = 0.9, 2.5, 1536


def tasks_for(family: str, k: int) -> list[Any]:
    env: Any = make_family(family).unwrapped
    seed_family(env, 0)
    return env.sample_tasks(k)


class SamplerRun:
    """One ``Sampler.sample`` per call, on the batched backend or (``fallback``) through the
    Gymnasium vector env, as for a family without ``make_batched``."""

    def __init__(
        self, family: str, k: int, n: int, horizon: int, fallback: bool = False, env_kwargs: dict | None = None
    ) -> None:
        env_kwargs = env_kwargs or {}
        env = make_family(family, **env_kwargs)
        torch.manual_seed(0)
        self.policy = make_policy(env.observation_space, env.action_space, (64, 64), "tanh")
        self.params = self.policy.get_params()
        self.tasks, self.n, self.horizon, self.fallback = tasks_for(family, k), n, horizon, fallback
        self.sampler = Sampler(family, self.policy, horizon=horizon, seed=0, env_kwargs=env_kwargs)
        self.sampler.horizon = 1
        self()  # warm-up: builds the batch, or the vector env's copies
        self.sampler.horizon = horizon

    def __call__(self) -> dict:
        original = sampler_module.make_batched
        if self.fallback:
            sampler_module.make_batched = lambda *args: None  # type: ignore[assignment]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the batched path sets this itself; the fallback gets the same
        try:
            start = time.perf_counter()
            episodes = self.sampler.sample(self.params, self.tasks, self.n)
            elapsed = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
            sampler_module.make_batched = original  # type: ignore[assignment]
        live = float(episodes.mask.sum())
        return {
            "env_steps_per_second": live / elapsed,
            # every env of every step the sampler ran: what the vector-env path simulates
            # (it keeps stepping, and auto-resetting, ended episodes)
            "stepped_env_steps_per_second": episodes.mask.numel() / elapsed,
            "seconds_per_sample": elapsed,
            "live_step_fraction": live / (len(self.tasks) * self.n * self.horizon),
        }

    def close(self) -> None:
        self.sampler.close()


class CeilingRun:
    """MuJoCo's open-loop ``mujoco.rollout`` over the same initial states, one call per call."""

    def __init__(self, family: str, k: int, n: int, horizon: int, nthread: int, env_kwargs: dict | None = None) -> None:
        env: Any = make_family(family, **(env_kwargs or {})).unwrapped
        batched = env.make_batched(tasks_for(family, k), n)
        assert isinstance(batched, BatchedMujocoEnv)
        qpos, qvel = batched.initial_states(seed=0)
        self.model, self.steps = env.model, k * n * horizon
        spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self.states = np.zeros((k * n, mujoco.mj_stateSize(self.model, spec)))
        data = mujoco.MjData(self.model)
        for b in range(k * n):
            mujoco.mj_resetData(self.model, data)
            data.qpos[:], data.qvel[:] = qpos[b], qvel[b]
            mujoco.mj_forward(self.model, data)
            mujoco.mj_getState(self.model, data, self.states[b], spec)
        # Random controls distributed like the untrained Gaussian policy's actions (mean ~0,
        # std 1, clipped to the action box) as the simulator gets them (divided by the action
        # scale), one per env step: the physics' cost depends on the motion.
        rng = np.random.default_rng(0)
        low, high = env.action_space.low, env.action_space.high
        actions = to_control(rng.standard_normal(size=(k * n, horizon, len(low))), low, high, env.action_scale)
        self.controls = np.repeat(actions, env.frame_skip, axis=1)
        self.out = np.zeros((k * n, horizon * env.frame_skip, self.states.shape[1]))
        self.datas = [mujoco.MjData(self.model) for _ in range(nthread)]
        self.pool = mj_rollout.Rollout(nthread=nthread)

    def __call__(self) -> dict:
        start = time.perf_counter()
        self.pool.rollout(self.model, self.datas, self.states, self.controls, state=self.out)
        return {"env_steps_per_second": self.steps / (time.perf_counter() - start)}

    def close(self) -> None:
        self.pool.close()


def contact_copy_costs(family: str, env_kwargs: dict, k: int, n: int, repeats: int = 5) -> dict:
    """Microseconds per episode of the exact contact-force pass's parts, on a stepped batch.

    ``Batch.get_data`` (the copy of one simulation's ``MjData`` out of the persistent batch),
    ``mujoco.mj_copyData`` of that same ``MjData`` (what the copy costs in C), and
    ``mj_rnePostConstraint`` on the copy; medians of ``repeats`` passes over every episode.
    """
    env: Any = make_family(family, **env_kwargs).unwrapped
    batched = env.make_batched(tasks_for(family, k), n)
    batched.reset(seed=0)
    for _ in range(5):
        batched.step(torch.zeros(k * n, env.action_space.shape[0]))
    batch, model, m = batched.batch, batched._models, env.model
    scratch, copy = mujoco.MjData(m), mujoco.MjData(m)
    batch.get_data(0, scratch)
    passes: dict[str, list[float]] = {"get_data": [], "mj_copyData": [], "mj_rnePostConstraint": []}
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(k * n):
            batch.get_data(i, scratch)
        passes["get_data"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(k * n):
            mujoco.mj_copyData(copy, m, scratch)
        passes["mj_copyData"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(k * n):
            mujoco.mj_rnePostConstraint(model[i], scratch)
        passes["mj_rnePostConstraint"].append(time.perf_counter() - start)
    del batched  # its batch goes back to the family's pool
    return {name: statistics.median(t) * 1e6 / (k * n) for name, t in passes.items()}


def interleaved(runs: dict[str, Any], repeats: int) -> dict[str, list[dict]]:
    """``repeats`` rounds of one call of every run, so that load changes hit all of them alike."""
    results: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    for run in runs.values():
        run.close()
    return results


def summary(rounds: list[dict]) -> dict:
    out = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    out["all_env_steps_per_second"] = [round(r["env_steps_per_second"]) for r in rounds]
    return out


def ratio(a: list[dict], b: list[dict]) -> float:
    """Median over rounds of the env-steps/s ratio of ``a`` to ``b`` measured in the same round."""
    return statistics.median(x["env_steps_per_second"] / y["env_steps_per_second"] for x, y in zip(a, b))


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` where ``/proc`` has it (``ru_maxrss``
    survives ``exec`` on Linux, so in a child it would include the parent's pages)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - no /proc
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2)


def memory_child(num_envs: int) -> None:
    """Run one 200-step HalfCheetahVel sample over ``num_envs`` episodes; print peak RSS (MB)."""
    before = peak_rss_mb()
    k = max(1, num_envs // 20)
    n = num_envs // k
    env = make_family("HalfCheetahVel")
    policy = make_policy(env.observation_space, env.action_space, (64, 64), "tanh")
    sampler = Sampler("HalfCheetahVel", policy, seed=0)
    episodes = sampler.sample(policy.get_params(), tasks_for("HalfCheetahVel", k), n)
    peak = peak_rss_mb()
    print(
        json.dumps(
            {
                "num_envs": k * n,
                "horizon": sampler.horizon,
                "steps": int(episodes.mask.sum()),
                "rss_after_imports_mb": before,
                "peak_rss_mb": peak,
            }
        )
    )


def measure_memory(num_envs: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(num_envs)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["target_mb"] = TARGET_MEMORY_MB
    result["meets_target"] = result["peak_rss_mb"] < TARGET_MEMORY_MB
    return result


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# MuJoCo sampler: closed-loop env-steps/s vs the simulator's ceiling",
        "",
        f"{report['tasks']} tasks x {report['episodes_per_task']} episodes = {report['num_envs']} envs, horizon "
        f"{report['horizon']}, "
        f"Gaussian 64-64 tanh MLP policy, medians of {report['repeats']} interleaved rounds (ratios: medians of "
        f"per-round ratios). {report['machine']}; "
        f"MuJoCo threads {report['threads']['mujoco_threads']}, torch threads in the rollout "
        f"{report['threads']['torch_threads_in_rollout']}. "
        f"Load average (1 min) {report['load_average_start'][0]:.2f} at the start, {report['load_average_end'][0]:.2f} "
        "at the end.",
        "",
        "| robot | batched sampler | (a) ceiling: open-loop rollout | (b) SyncVectorEnv sampler | vs ceiling | vs "
        "SyncVectorEnv | live steps |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["robots"].items():
        lines.append(
            f"| {name} | {r['batched_sampler']['env_steps_per_second']:,.0f} | "
            f"{r['ceiling_open_loop_rollout']['env_steps_per_second']:,.0f} | "
            f"{r['sync_vector_env_sampler']['env_steps_per_second']:,.0f} | {r['ratio_to_ceiling']:.2f}x | "
            f"{r['ratio_to_sync_vector_env']:.2f}x | "
            f"{r['batched_sampler']['live_step_fraction']:.0%} |"
        )
    for name, ant in report["robots"].items():
        if "batched_sampler_no_termination" not in ant:
            continue
        sync = ant["sync_vector_env_sampler"]
        lines += [
            "",
            f"{name}: the untrained policy's live steps {ant['batched_sampler']['live_step_fraction']:.0%} (an "
            "episode that falls ends); the batched backend "
            f"stops stepping ended episodes, the SyncVectorEnv path keeps stepping (and auto-resetting) every env: "
            f"{sync['stepped_env_steps_per_second']:,.0f} env-steps/s simulated there, of which "
            f"{sync['env_steps_per_second']:,.0f} live. "
            "With every episode live for the whole horizon, as in the ceiling (`terminate_when_unhealthy=False`), the "
            "batched sampler runs "
            f"{ant['batched_sampler_no_termination']['env_steps_per_second']:,.0f} env-steps/s = "
            f"{ant['ratio_to_ceiling_no_termination']:.2f}x the ceiling.",
            "",
            "Ant's exact contact forces (persistent batch, `get_data` + `mj_rnePostConstraint` per live episode and "
            "step that had a contact; `cfrc_ext = 0` for the others), same run without "
            f"termination: {ant['batched_sampler_no_termination']['env_steps_per_second']:,.0f} env-steps/s with them, "
            f"{ant['batched_sampler_no_termination_no_contact_forces']['env_steps_per_second']:,.0f} for an Ant that "
            "neither observes nor pays for them "
            f"({ant['contact_force_cost']:.0%} slower). Per episode and step that pass costs "
            f"{ant['contact_pass_us_per_episode']['get_data']:.1f} us for `Batch.get_data` (the copy out of the "
            f"batch; `mj_copyData` of the same `MjData` takes {ant['contact_pass_us_per_episode']['mj_copyData']:.1f} "
            f"us) and {ant['contact_pass_us_per_episode']['mj_rnePostConstraint']:.1f} us for "
            "`mj_rnePostConstraint`, run serially while MuJoCo's threads wait.",
        ]
    m = report["memory"]
    lines += [
        "",
        f"Peak resident memory of a process sampling {m['num_envs']} HalfCheetahVel envs x {m['horizon']} steps: "
        f"{m['peak_rss_mb']:,.0f} MB ({m['rss_after_imports_mb']:,.0f} MB after imports), target < {m['target_mb']} "
        "MB.",
        "",
        f"Targets: >= {TARGET_CEILING_RATIO}x the ceiling and >= {TARGET_SYNC_RATIO}x SyncVectorEnv. Env-steps count "
        "live episodes' steps; "
        "the ceiling's random controls are clip(N(0, 1)) / action_scale per env step, like the untrained policy's "
        "actions as the simulator gets them. The packaged locomotion configs train at action_scale 10.",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task")
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-envs", type=int, default=800)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    k, n, horizon, repeats = args.tasks, args.episodes, args.horizon, args.repeats
    nthread = available_cpus()
    report: dict[str, Any] = {
        "tasks": k,
        "episodes_per_task": n,
        "num_envs": k * n,
        "horizon": horizon,
        "repeats": repeats,
        "machine": (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, torch {torch.__version__}, mujoco {mujoco.__version__}"
        ),
        "metarl": getattr(metarl, "__version__", None),
        "load_average_start": list(os.getloadavg()),
        "threads": {
            "mujoco_threads": nthread,
            "torch_threads_in_rollout": BatchedMujocoEnv.torch_threads,
            "torch_threads_sync_vector_env": 1,
            "ceiling_rollout_threads": nthread,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        },
        "robots": {},
    }
    report["memory"] = measure_memory(args.memory_envs)  # first, in a child process: nothing else runs meanwhile
    for label, family, kwargs in ROBOTS:
        runs: dict[str, Any] = {
            "batched_sampler": SamplerRun(family, k, n, horizon, env_kwargs=kwargs),
            "ceiling_open_loop_rollout": CeilingRun(family, k, n, horizon, nthread, env_kwargs=kwargs),
            "sync_vector_env_sampler": SamplerRun(family, k, n, horizon, fallback=True, env_kwargs=kwargs),
        }
        if family.startswith("Ant"):
            # Every episode live for the whole horizon, as in the ceiling; with and without the
            # exact contact forces (same episode count, so their ratio is their cost).
            live = {**kwargs, **NO_TERMINATION}
            runs["batched_sampler_no_termination"] = SamplerRun(family, k, n, horizon, env_kwargs=live)
            runs["batched_sampler_no_termination_no_contact_forces"] = SamplerRun(
                family, k, n, horizon, env_kwargs={**live, **NO_CONTACT_FORCES}
            )
        rounds = interleaved(runs, repeats)
        r: dict[str, Any] = {"family": family, "env_kwargs": kwargs, "num_envs": k * n}
        r |= {name: summary(rows) for name, rows in rounds.items()}
        r["ratio_to_ceiling"] = ratio(rounds["batched_sampler"], rounds["ceiling_open_loop_rollout"])
        r["ratio_to_sync_vector_env"] = ratio(rounds["batched_sampler"], rounds["sync_vector_env_sampler"])
        r["meets_targets"] = (
            r["ratio_to_ceiling"] >= TARGET_CEILING_RATIO and r["ratio_to_sync_vector_env"] >= TARGET_SYNC_RATIO
        )
        if family.startswith("Ant"):
            r["ratio_to_ceiling_no_termination"] = ratio(
                rounds["batched_sampler_no_termination"], rounds["ceiling_open_loop_rollout"]
            )
            r["contact_force_cost"] = 1 - ratio(
                rounds["batched_sampler_no_termination"], rounds["batched_sampler_no_termination_no_contact_forces"]
            )
            r["contact_pass_us_per_episode"] = contact_copy_costs(family, kwargs, k, n)
        report["robots"][label] = r
        print(json.dumps({label: r}, indent=1), flush=True)
    report["load_average_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mujoco_sampler.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / "mujoco_sampler.md")
    print((args.out / "mujoco_sampler.md").read_text())


if __name__ == "__main__":
    main()
