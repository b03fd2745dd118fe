"""Evaluate a trained run: return on fresh tasks after 0..K adaptation steps.

For each held-out task (drawn with a seed disjoint from training; from the family's
meta-test split when it has one, as Meta-World's), sample episodes with the meta-learned
parameters, adapt with one policy-gradient step, sample again, and so on up to K steps.
Report the mean return over tasks and its 95% confidence interval (normal approximation
over per-task means), and the success rate the same way for a family that reports success,
as a table, ``eval.json`` and ``eval.png``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.adaptation import Adaptation, InnerLoop
from metarl.checkpoint import load_checkpoint
from metarl.config import config_from_dict
from metarl.errors import CheckpointError
from metarl.families import make_family
from metarl.learners import make_learner
from metarl.learners.base import MetaLearner
from metarl.plots import plot_adaptation
from metarl.policies import Params, Policy
from metarl.runtime import build_policy, configure_threads, seed_streams
from metarl.sampler import Sampler
from metarl.stats import normal_interval
from metarl.task_api import make_batched, sample_test_tasks, seed_family

VECTOR_ENV_COPIES = 100
"""At most this many env copies per sampling call for a family without a batched backend, whose
episodes each need a full simulator copy (a Meta-World env holds ~19 MB: 400 copies, 40 tasks x
10 episodes, took 8.3 GB). Families with a batched backend are evaluated ``chunk`` tasks at a time."""


@dataclass
class StepResult:
    """Return after ``steps`` adaptation steps, over tasks."""

    steps: int
    mean: float
    ci95: float
    std: float
    num_tasks: int


def adaptation_returns(
    policy: Policy,
    learner: MetaLearner | InnerLoop,
    sampler: Sampler,
    tasks: list[Any],
    episodes_per_task: int,
    max_steps: int,
    chunk: int = 50,
) -> np.ndarray:
    """Per-task mean return after 0..``max_steps`` inner steps -> ``[max_steps + 1, len(tasks)]``
    (the returns of ``adaptation_scores``, whose arguments it takes)."""
    return adaptation_scores(policy, learner, sampler, tasks, episodes_per_task, max_steps, chunk)[0]


def adaptation_scores(
    policy: Policy,
    learner: MetaLearner | InnerLoop,
    sampler: Sampler,
    tasks: list[Any],
    episodes_per_task: int,
    max_steps: int,
    chunk: int = 50,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-task mean return and success rate after 0..``max_steps`` inner steps.

    Args:
        policy: The policy whose parameters are adapted (``learner``'s).
        learner: A learner, or just its ``InnerLoop``: what adapts (every learner adapts alike).
        sampler: Samples the episodes (its policy's functions, with the given parameters).
        tasks: The tasks, evaluated ``chunk`` at a time.
        episodes_per_task: Episodes per task and step.
        max_steps: The largest number of inner steps.
        chunk: Tasks per batch (memory); fewer for a family without a batched backend, so
            that a batch holds at most ``VECTOR_ENV_COPIES`` env copies.

    Returns:
        ``(returns, success)``, both ``[max_steps + 1, len(tasks)]``: per task, the mean return
        and the fraction of episodes that succeeded at any step; ``success`` is ``None`` for a
        family that reports no success.
    """
    inner = learner.inner if isinstance(learner, MetaLearner) else learner
    if make_batched(sampler.env, tasks[:1], 1) is None:  # one simulator copy per episode
        chunk = min(chunk, max(1, VECTOR_ENV_COPIES // episodes_per_task))
    returns = np.zeros((max_steps + 1, len(tasks)))
    success: np.ndarray | None = None
    for start in range(0, len(tasks), chunk):
        part = tasks[start : start + chunk]
        params: Params = inner.initial_params()
        adaptation: Adaptation | None = None
        for step in range(max_steps + 1):
            episodes = sampler.sample(params, part, episodes_per_task)
            returns[step, start : start + len(part)] = episodes.episode_returns().mean(1).numpy()
            episode_success = episodes.episode_success()
            if episode_success is not None:
                if success is None:
                    success = np.zeros_like(returns)
                success[step, start : start + len(part)] = episode_success.mean(1).numpy()
            if step < max_steps:
                adaptation = inner.adapt(episodes, adaptation, keep_graph=False)
                params = adaptation.params
    return returns, success


def summarize(returns: np.ndarray) -> list[StepResult]:
    """Mean and 95% CI per adaptation step from ``[steps, tasks]`` per-task returns."""
    results = []
    for step, r in enumerate(returns):
        mean, half, std = normal_interval(r)
        results.append(StepResult(step, mean, half, std, int(r.size)))
    return results


def format_table(results: list[StepResult], success: list[StepResult] | None = None) -> str:
    """A plain-text table of the results (with success rates beside them when given)."""
    head = f"{'adaptation steps':>16}  {'mean return':>12}  {'95% CI':>10}"
    lines = [head + (f"  {'success':>8}  {'95% CI':>9}" if success else "") + f"  {'tasks':>6}"]
    for i, r in enumerate(results):
        line = f"{r.steps:>16d}  {r.mean:>12.2f}  {'+/- ' + format(r.ci95, '.2f'):>10}"
        if success:
            line += f"  {success[i].mean:>8.1%}  {'+/- ' + format(success[i].ci95, '.1%'):>9}"
        lines.append(line + f"  {r.num_tasks:>6d}")
    return "\n".join(lines)


def evaluate_run(
    run_dir: str | Path,
    num_tasks: int = 400,
    episodes_per_task: int | None = None,
    max_steps: int = 3,
    seed: int | None = None,
    checkpoint: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a run's policy on fresh tasks; writes ``eval.json`` and ``eval.png`` into ``run_dir``.

    Args:
        run_dir: A run directory made by ``metarl train``.
        num_tasks: Held-out tasks.
        episodes_per_task: Episodes per task and step (default: the run's).
        max_steps: Evaluate after 0..max_steps adaptation steps.
        seed: Task seed (default: a stream derived from the run's seed, disjoint from training).
        checkpoint: A checkpoint file (default: ``checkpoints/last.pt``).

    Returns:
        The JSON-able report.
    """
    if num_tasks < 1 or max_steps < 0 or (episodes_per_task is not None and episodes_per_task < 1):
        raise ValueError("evaluate needs num_tasks >= 1, episodes_per_task >= 1 and max_steps >= 0.")
    run_dir = Path(run_dir)
    ckpt_path = Path(checkpoint) if checkpoint else run_dir / "checkpoints" / "last.pt"
    if not checkpoint and not run_dir.is_dir():
        raise CheckpointError(f"No run directory {run_dir}; train one with `metarl train --run-dir {run_dir}`.")
    state = load_checkpoint(ckpt_path)
    config = config_from_dict(state["config"])
    configure_threads(config.torch_threads)
    family = make_family(config.family, **config.env_kwargs)
    task_seed = seed if seed is not None else seed_streams(config.seed)["eval"]
    seed_family(family, task_seed)
    policy = build_policy(config, family)
    try:
        policy.load_state_dict(state["policy"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt_path} does not match the policy of its config: {e}") from e
    learner = make_learner(config, policy, "cpu")  # every learner adapts with the same inner step
    sampler = Sampler(config.family, policy, config.horizon, task_seed + 1, config.env_kwargs)
    tasks = sample_test_tasks(family, num_tasks)
    n = episodes_per_task or config.episodes_per_task
    with torch.no_grad():
        returns, success = adaptation_scores(policy, learner, sampler, tasks, n, max_steps)
    results = summarize(returns)
    report = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "iteration": int(state["iteration"]),
        "family": config.family,
        "learner": config.learner,
        "task_seed": task_seed,
        "num_tasks": num_tasks,
        "episodes_per_task": n,
        "results": [asdict(r) for r in results],
        "per_task_returns": returns.tolist(),
    }
    if success is not None:
        report["success"] = [asdict(r) for r in summarize(success)]
        report["per_task_success"] = success.tolist()
    (run_dir / "eval.json").write_text(json.dumps(report, indent=2))
    plot_adaptation(results, run_dir / "eval.png", f"{config.family}, iteration {report['iteration']}")
    return report
