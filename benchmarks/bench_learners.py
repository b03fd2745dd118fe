"""Compare the meta-learners on 2D navigation at the same number of environment steps.

Every method meta-trains ``--iterations`` iterations from its packaged config (each
iteration samples the same 2 x meta_batch_size x episodes_per_task episodes), for every
seed; then each trained policy is evaluated on the same held-out tasks (fixed seed) with
``metarl.evaluate``: return before and after one adaptation step. Aggregates over seeds
and tasks with ``metarl.stats`` (mean and IQM with stratified-bootstrap 95% intervals, and
a t interval over the per-seed means). Writes ``learners.json``, ``learners.md`` and
``learners.png`` into ``--out``.

    python benchmarks/bench_learners.py --iterations 200 --seeds 0 1 2 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"

# name -> (packaged config, overrides)
METHODS: dict[str, tuple[str, list[str]]] = {
    "maml-trpo (plain)": ("2d-navigation", ["estimator=plain"]),
    "maml-trpo (dice)": ("2d-navigation", ["estimator=dice"]),
    "maml-trpo (lvc)": ("2d-navigation", ["estimator=lvc"]),
    "promp": ("2d-navigation-promp", []),
    "maml-ppo": ("2d-navigation-maml-ppo", []),
    "reptile": ("2d-navigation-reptile", []),
}
EVAL_SEED = 424242


def run_one(
    method: str, seed: int, iterations: int, work: str, eval_tasks: int, episodes: int, extra: list[str]
) -> dict[str, Any]:
    """Train one (method, seed) and evaluate it; runs in a worker process."""
    import torch

    torch.set_num_threads(1)
    from metarl.config import load_config
    from metarl.evaluate import evaluate_run
    from metarl.trainer import Trainer

    config_name, overrides = METHODS[method]
    cfg = load_config(
        config_name,
        [
            *overrides,
            f"num_iterations={iterations}",
            f"seed={seed}",
            "torch_threads=1",
            "tensorboard=false",
            f"checkpoint_every={iterations}",
            *extra,
        ],
    )
    run_dir = Path(work) / f"{method.replace(' ', '').replace('(', '-').replace(')', '')}-s{seed}"
    t0 = time.perf_counter()
    rows = Trainer(cfg, run_dir, progress=False).train()
    train_seconds = time.perf_counter() - t0
    report = evaluate_run(run_dir, num_tasks=eval_tasks, episodes_per_task=episodes, max_steps=1, seed=EVAL_SEED)
    return {
        "method": method,
        "seed": seed,
        "train_seconds": train_seconds,
        "seconds_per_iteration": float(np.mean([r["sample_seconds"] + r["update_seconds"] for r in rows])),
        "update_seconds_per_iteration": float(np.mean([r["update_seconds"] for r in rows])),
        "total_env_steps": rows[-1]["total_env_steps"],
        "pre_return": [r["pre_return"] for r in rows],
        "post_return": [r["post_return"] for r in rows],
        "eval_returns": report["per_task_returns"],  # [2, tasks]: before, after one step
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: aggregates of the held-out returns before and after one step."""
    from metarl.stats import aggregate

    out: dict[str, Any] = {}
    for method in METHODS:
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        if not mine:
            continue
        scores = np.array([r["eval_returns"] for r in mine])  # [seeds, 2, tasks]
        out[method] = {
            "before": asdict(aggregate(scores[:, 0])),
            "after": asdict(aggregate(scores[:, 1])),
            "seconds_per_iteration": float(np.mean([r["seconds_per_iteration"] for r in mine])),
            "total_env_steps": int(np.mean([r["total_env_steps"] for r in mine])),
        }
    return out


def table(summary: dict[str, Any], iterations: int, seeds: list[int], eval_tasks: int) -> str:
    """The markdown report."""
    lines = [
        "# Meta-learners on 2D navigation",
        "",
        f"{iterations} meta-iterations per run (same environment steps for every method), seeds {seeds}; "
        f"evaluated on the same {eval_tasks} held-out tasks (seed {EVAL_SEED}) before and after one adaptation step. "
        "Mean and IQM over seeds x tasks with stratified-bootstrap 95% CIs; 'seed means' are the per-seed means "
        "with a 95% t interval over seeds.",
        "",
        "| method | before: mean [95% CI] | after 1 step: mean [95% CI] | after: IQM [95% CI] | after: seed means (t "
        "95%) | env steps |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, s in summary.items():
        b, a = s["before"], s["after"]
        seeds_txt = ", ".join(f"{m:.1f}" for m in a["seed_means"]) + (
            f" (+-{a['seed_t_halfwidth']:.1f})" if np.isfinite(a["seed_t_halfwidth"]) else ""
        )
        lines.append(
            f"| {method} | {b['mean']:.2f} [{b['mean_ci'][0]:.2f}, {b['mean_ci'][1]:.2f}] | **{a['mean']:.2f}** "
            f"[{a['mean_ci'][0]:.2f}, {a['mean_ci'][1]:.2f}] "
            f"| {a['iqm']:.2f} [{a['iqm_ci'][0]:.2f}, {a['iqm_ci'][1]:.2f}] | {seeds_txt} | {s['total_env_steps']:,} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> bool:
    """Learning curves (post-adaptation return, mean and range over seeds) and the held-out result."""
    from metarl.plots import pyplot

    plt = pyplot()
    if plt is None:
        print("matplotlib is missing (pip install 'metarl[plot]'): no plot written.")
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, method in enumerate(summary):
        curves = np.array([r["post_return"] for r in runs if r["method"] == method])
        window = max(1, curves.shape[1] // 25)
        kernel = np.ones(window) / window
        smooth = np.array([np.convolve(c, kernel, mode="valid") for c in curves])
        x = np.arange(smooth.shape[1]) + window
        (line,) = ax1.plot(x, smooth.mean(0), label=method)
        ax1.fill_between(x, smooth.min(0), smooth.max(0), color=line.get_color(), alpha=0.15)
        for j, phase in enumerate(("before", "after")):
            s = summary[method][phase]
            ax2.errorbar(
                i + (j - 0.5) * 0.3,
                s["mean"],
                yerr=[[s["mean"] - s["mean_ci"][0]], [s["mean_ci"][1] - s["mean"]]],
                fmt="o" if j else "s",
                color=line.get_color(),
                capsize=3,
                alpha=1.0 if j else 0.5,
            )
    ax1.set_xlabel("meta-iteration")
    ax1.set_ylabel("post-adaptation return (training tasks)")
    ax1.set_title("learning curves (mean, range over seeds)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.set_xticks(range(len(summary)), list(summary), rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("return on held-out tasks")
    ax2.set_title("before (square) and after one step (circle), 95% CI")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--eval-tasks", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task and step in the evaluation")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs in parallel, one torch thread each"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path("runs/bench_learners"), help="run directories (not committed)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="extra config overrides for every run (smoke tests)"
    )
    args = parser.parse_args()
    if args.iterations < 1 or args.eval_tasks < 1 or args.episodes < 1 or args.jobs < 1:
        parser.error("--iterations, --eval-tasks, --episodes and --jobs must be >= 1.")
    if args.work_dir.exists() and any(args.work_dir.iterdir()):
        parser.error(
            f"{args.work_dir} is not empty; remove it or pass another --work-dir (runs are never overwritten)."
        )
    jobs = [(m, s) for m in args.methods for s in args.seeds]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [
            pool.submit(
                run_one, m, s, args.iterations, str(args.work_dir), args.eval_tasks, args.episodes, args.overrides
            )
            for m, s in jobs
        ]
        runs = []
        for f in futures:
            runs.append(f.result())
            r = runs[-1]
            after = np.mean(r["eval_returns"][1])
            print(
                f"{r['method']:>18} seed {r['seed']}: held-out return after one step {after:.2f} "
                f"({r['train_seconds']:.0f} s)",
                flush=True,
            )
    summary = summarize(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    meta = {"iterations": args.iterations, "seeds": args.seeds, "eval_tasks": args.eval_tasks,
            "eval_episodes": args.episodes, "eval_seed": EVAL_SEED, "jobs": args.jobs, "torch_threads_per_job": 1,
            "overrides": args.overrides, "wall_seconds": time.perf_counter() - t0,
            "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count()}  # fmt: skip
    (args.out / "learners.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
    (args.out / "learners.md").write_text(table(summary, args.iterations, args.seeds, args.eval_tasks))
    plot(runs, summary, args.out / "learners.png")
    print(table(summary, args.iterations, args.seeds, args.eval_tasks))


if __name__ == "__main__":
    main()
