"""Sinusoid regression (Finn et al. 2017, section 5.1): MAML vs a pretrained baseline.

Trains both methods (``examples/sinusoid.py``: ``train_maml`` / ``train_pretrained``: same
initialization, same training tasks, same iterations), then fine-tunes each on the K-shot
support sets of ``--eval-tasks`` held-out tasks (a separate seed) with plain gradient steps of
size alpha (``metarl.adaptation.gradient_step``) and reports the query MSE (100 points on a grid)
after 0..10 steps, mean and 95% confidence interval over tasks.

Writes ``sinusoid.json``, ``sinusoid.md`` and, with matplotlib installed, ``sinusoid.png``.

Usage::

    python benchmarks/bench_sinusoid.py --iterations 30000 --shots 10 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from metarl.plots import pyplot
from metarl.policies import stack_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from sinusoid import (  # noqa: E402  (examples/sinusoid.py)
    SinusoidBatch,
    SinusoidConfig,
    TrainResult,
    eval_generator,
    evaluate,
    fine_tune,
    mean_ci,
    predict,
    sample_batch,
    train_maml,
    train_pretrained,
)

REPORTED_STEPS = (0, 1, 10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--iterations", type=int, default=30_000, help="training iterations of each method (the paper: 70,000)"
    )
    parser.add_argument("--shots", type=int, default=10, help="K: support points per task (5 or 10 in the paper)")
    parser.add_argument("--meta-batch-size", type=int, default=25, help="tasks per iteration")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialization and the training tasks")
    parser.add_argument("--eval-seed", type=int, default=1_000_003, help="seeds the held-out tasks")
    parser.add_argument("--eval-tasks", type=int, default=600, help="held-out tasks")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--log-every",
        type=int,
        default=5_000,
        help="print the mean training loss every this many iterations (0: never)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    return parser.parse_args(argv)


def summarize(mse: torch.Tensor, train: TrainResult) -> dict:
    """Per-step mean and 95% CI of ``mse [steps + 1, K]``, plus the training summary."""
    stats = [mean_ci(row) for row in mse]
    tail = train.losses[-100:]
    return {
        "mse": {str(s): {"mean": stats[s][0], "ci95": stats[s][1]} for s in REPORTED_STEPS if s < len(stats)},
        "curve_mean": [m for m, _ in stats],
        "curve_ci95": [c for _, c in stats],
        "train_seconds": train.seconds,
        "final_train_loss_last100": sum(tail) / len(tail) if tail else None,
    }


def example_curves(results: dict[str, TrainResult], batch: SinusoidBatch, cfg: SinusoidConfig, task: int = 0) -> dict:
    """Fitted curves of one held-out task on a dense grid after 0, 1 and ``eval_steps`` steps."""
    grid = torch.linspace(*cfg.input_range, 200, dtype=cfg.torch_dtype).reshape(1, -1, 1)
    x, y = batch.x_support[task : task + 1], batch.y_support[task : task + 1]
    out: dict = {
        "x": grid.flatten().tolist(),
        "truth": (batch.amplitude[task] * torch.sin(grid.flatten() - batch.phase[task])).tolist(),
        "support_x": x.flatten().tolist(),
        "support_y": y.flatten().tolist(),
        "amplitude": float(batch.amplitude[task]),
        "phase": float(batch.phase[task]),
        "fits": {},
    }
    for name, result in results.items():
        reg = result.regressor
        path = fine_tune(stack_params(reg.get_params(), 1), x, y, reg.num_layers, cfg.inner_lr, cfg.eval_steps)
        with torch.no_grad():
            out["fits"][name] = {
                str(s): predict(path[s], grid, reg.num_layers).flatten().tolist() for s in (0, 1, cfg.eval_steps)
            }
    return out


def to_markdown(out: dict) -> str:
    cfg = out["config"]
    lines = [
        "# Sinusoid regression: MAML vs pretrained (Finn et al. 2017, section 5.1)",
        "",
        (
            f"{cfg['shots']}-shot, {cfg['iterations']} iterations x {cfg['meta_batch_size']} tasks, "
            f"1-{'-'.join(map(str, cfg['hidden_sizes']))}-1 ReLU MLP, alpha = {cfg['inner_lr']}, Adam "
            f"{cfg['outer_lr']}. "
            f"Query MSE on {cfg['eval_tasks']} held-out tasks ({cfg['eval_points']} grid points each) after "
            "fine-tuning "
            f"with gradient steps of size alpha on the {cfg['shots']} support points; mean +- 95% CI."
        ),
        "",
        "| method | " + " | ".join(f"{s} step{'s' if s != 1 else ''}" for s in REPORTED_STEPS) + " | train time (s) |",
        "|---|" + "---:|" * (len(REPORTED_STEPS) + 1),
    ]
    for name, m in out["methods"].items():
        cells = [f"{m['mse'][str(s)]['mean']:.3f} +- {m['mse'][str(s)]['ci95']:.3f}" for s in REPORTED_STEPS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m['train_seconds']:.1f} |")
    lines += [
        "",
        f"Total wall time {out['wall_seconds']:.1f} s ({out['threads']} torch thread(s), {out['machine']}, torch "
        f"{out['torch']}).",
        "",
    ]
    lines.append("The paper (70,000 iterations) reports MAML at about 0.3-0.6 after one step for K = 10.")
    return "\n".join(lines) + "\n"


def plot(out: dict, path: Path) -> bool:
    """Write the figure; ``False`` (and nothing written) without matplotlib (``pip install metarl[plot]``)."""
    plt = pyplot()
    if plt is None:
        return False
    fig, (ax, ex) = plt.subplots(1, 2, figsize=(11, 4))
    for name, m in out["methods"].items():
        steps = list(range(len(m["curve_mean"])))
        mean, ci = torch.tensor(m["curve_mean"]), torch.tensor(m["curve_ci95"])
        line = ax.plot(steps, mean, marker="o", label=name)[0]
        ax.fill_between(steps, mean - ci, mean + ci, color=line.get_color(), alpha=0.25)
    ax.set_xlabel("gradient steps on the K-shot support set")
    ax.set_ylabel("query MSE (mean, 95% CI)")
    ax.set_title(f"{out['config']['shots']}-shot, {out['config']['eval_tasks']} held-out tasks")
    ax.legend()
    ax.grid(alpha=0.3)
    e = out["example"]
    ex.plot(e["x"], e["truth"], color="black", label="ground truth")
    ex.scatter(e["support_x"], e["support_y"], color="black", marker="^", zorder=3, label="support points")
    styles = {"0": ":", "1": "-", str(out["config"]["eval_steps"]): "--"}
    colors = {"maml": "C0", "pretrained": "C1"}
    for name, fits in e["fits"].items():
        for step, ys in fits.items():
            ex.plot(e["x"], ys, linestyle=styles[step], color=colors.get(name), label=f"{name}, {step} steps")
    ex.set_title(f"example task: A = {e['amplitude']:.2f}, phase = {e['phase']:.2f}")
    ex.legend(fontsize=7)
    ex.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = SinusoidConfig(
        iterations=args.iterations,
        shots=args.shots,
        meta_batch_size=args.meta_batch_size,
        seed=args.seed,
        eval_seed=args.eval_seed,
        eval_tasks=args.eval_tasks,
    )
    start = time.perf_counter()
    log = print if args.log_every > 0 else None
    results = {"maml": train_maml(cfg, args.log_every, log), "pretrained": train_pretrained(cfg, args.log_every, log)}
    batch = sample_batch(cfg.eval_tasks, cfg.shots, cfg.eval_points, eval_generator(cfg), cfg, query_grid=True)
    methods = {
        name: summarize(evaluate(r.regressor, batch, cfg.inner_lr, cfg.eval_steps), r) for name, r in results.items()
    }
    example = example_curves(results, batch, cfg)
    wall = time.perf_counter() - start
    out = {
        "benchmark": "sinusoid regression (Finn et al. 2017)",
        "config": cfg.to_dict(),
        "methods": methods,
        "example": example,
        "wall_seconds": wall,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sinusoid.json").write_text(json.dumps(out, indent=1))
    (args.out / "sinusoid.md").write_text(to_markdown(out))
    if not plot(out, args.out / "sinusoid.png"):
        print("matplotlib not installed (pip install metarl[plot]): skipped sinusoid.png")
    for name, m in methods.items():
        print(
            name
            + ": "
            + ", ".join(
                f"{s} steps {m['mse'][str(s)]['mean']:.3f} +- {m['mse'][str(s)]['ci95']:.3f}" for s in REPORTED_STEPS
            )
        )
    print(
        f"wall time {wall:.1f} s; wrote "
        f"{args.out}/sinusoid.{{json,md{',png' if (args.out / 'sinusoid.png').exists() else ''}}}"
    )


if __name__ == "__main__":
    main()
