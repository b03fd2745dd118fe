"""Meta-gradient estimators against the exact MAML gradient on tabular families.

For each family and estimator (``plain``, ``lvc``, ``dice``): ``--batches`` independent
meta-batches of ``--tasks`` fixed tasks x ``--episodes`` episodes, each giving MAML-TRPO's
meta-gradient (``metarl.exact.sample_meta_gradients``, the library's sampler and learner);
compared with the exact gradient of ``mean_k Jbar_k(theta + alpha grad Jbar_k(theta))``
(``metarl.exact``). Reported per estimator:

* ``cosine`` and ``relative_error`` (``|mean - exact| / |exact|``) of the averaged estimate;
* ``mean_z2``: mean over parameters of ``((mean - exact) / SE)^2`` with ``SE`` the standard
  error of the mean (about 1 when unbiased; ``max_abs_z`` its largest component);
* ``per_batch_variance``: ``mean_b |g_b - mean|^2`` (the spread of one batch's estimate);
* ``relative_error_single_batch``: ``sqrt(mean_b |g_b - exact|^2) / |exact|``.

Usage::

    python benchmarks/bench_estimators.py --batches 2000 --episodes 100 --out benchmarks/results

(the committed results add ``--families TabularMDP --episodes 400 --batches 500``: the same
standard error with 4x the episodes per batch, which separates an estimator's own bias from
the O(1/N) bias every estimator has because the adapted parameters are nonlinear in the
sampled episodes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metarl.exact import maml_objective_and_grad, sample_meta_gradients
from metarl.families import make_family
from metarl.policies import CategoricalMLPPolicy
from metarl.task_api import seed_family

ESTIMATORS = ("plain", "lvc", "dice")


def summarize(grads: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Bias and spread of ``grads [B, P]`` against ``exact [P]``."""
    b = grads.shape[0]
    mean = grads.mean(0)
    se = grads.std(0) / b**0.5
    keep = se > 1e-12 * float(exact.norm())  # components that never vary (e.g. unreachable) are exact
    z = (mean - exact)[keep] / se[keep]
    return {
        "cosine": float(mean @ exact / (mean.norm() * exact.norm())),
        "relative_error": float((mean - exact).norm() / exact.norm()),
        "mean_z2": float((z**2).mean()),
        "max_abs_z": float(z.abs().max()),
        "per_batch_variance": float(((grads - mean) ** 2).sum(1).mean()),
        "relative_error_single_batch": float(((grads - exact) ** 2).sum(1).mean().sqrt() / exact.norm()),
    }


def run(family: str, num_tasks: int, episodes: int, batches: int, fast_lr: float, seed: int) -> dict:
    """Measure every estimator on ``num_tasks`` tasks of ``family``."""
    env = make_family(family)
    seed_family(env, seed)
    tasks = env.unwrapped.sample_tasks(num_tasks)
    torch.manual_seed(seed)
    policy = CategoricalMLPPolicy(env.observation_space.shape[0], int(env.action_space.n), hidden_sizes=()).double()
    with torch.no_grad():  # away from the uniform policy, so the curvature terms matter
        for p in policy.parameters():
            p.add_(0.5 * torch.randn_like(p))
    horizon = env.spec.max_episode_steps
    value, exact = maml_objective_and_grad(policy.get_params(), [t.model() for t in tasks], fast_lr, horizon)
    result: dict = {
        "family": family,
        "tasks": num_tasks,
        "episodes_per_task": episodes,
        "batches": batches,
        "fast_lr": fast_lr,
        "horizon": horizon,
    }
    result.update(exact_objective=value, exact_grad_norm=float(exact.norm()), estimators={})
    for estimator in ESTIMATORS:
        t0 = time.perf_counter()
        grads = sample_meta_gradients(family, tasks, policy, fast_lr, estimator, episodes, batches, seed=seed + 1)
        result["estimators"][estimator] = summarize(grads, exact) | {"seconds": time.perf_counter() - t0}
    return result


def to_markdown(results: list[dict]) -> str:
    lines = ["# Meta-gradient estimators vs the exact MAML gradient", ""]
    lines.append("mean_z2 = mean over parameters of ((average - exact) / standard error)^2: about 1 if unbiased.")
    lines.append("")
    for r in results:
        lines.append(
            f"## {r['family']}: {r['tasks']} tasks x {r['episodes_per_task']} episodes x {r['batches']} batches, "
            f"fast_lr {r['fast_lr']}, |exact grad| {r['exact_grad_norm']:.4g}"
        )
        lines.append("")
        lines.append(
            "| estimator | cosine | relative error | mean z^2 | max abs z | per-batch variance | single-batch rel. "
            "error |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for name, s in r["estimators"].items():
            lines.append(
                f"| {name} | {s['cosine']:.5f} | {s['relative_error']:.4f} | {s['mean_z2']:.2f} | {s['max_abs_z']:.1f} "
                f"| {s['per_batch_variance']:.3e} | {s['relative_error_single_batch']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["TabularMDP", "Bandit"])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument(
        "--episodes",
        type=int,
        nargs="+",
        default=[100],
        help="episodes per task and phase in one meta-batch (one run per value)",
    )
    parser.add_argument("--batches", type=int, default=1000, help="independent meta-batches per estimator")
    parser.add_argument("--fast-lr", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [
        run(f, args.tasks, n, args.batches, args.fast_lr, args.seed) for f in args.families for n in args.episodes
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "estimators.json").write_text(json.dumps(results, indent=2))
    (args.out / "estimators.md").write_text(to_markdown(results))
    print(to_markdown(results))


if __name__ == "__main__":
    main()
