"""Seconds per MAML-TRPO meta-iteration on the default 2D-navigation config, and where they go.

Runs the real trainer (20 tasks x 20 episodes x 100 steps, both phases, full meta-update)
for each variant, in one process, and reports medians over the measured iterations:

* metarl with the fast exact KL Hessian-vector product, curvature on every s-th episode
  (s = 1: exact on all data; 5 and 10: subsampled, as OpenAI Baselines' TRPO);
* the reference in the same run: the same learner with the textbook Hessian-vector product
  (double backward of the KL through the inner step, third order: what pytorch-maml-rl does);
* thread settings (torch intra-op threads 1 and 2).

pytorch-maml-rl itself (2 sampler workers, one thread each) was measured at 3.48 s per
meta-iteration on this machine type when the work was planned; it cannot run here on
current torch, so that figure is quoted, not re-measured.

Writes ``benchmarks/results/meta_iteration.json`` and ``meta_iteration.md``.

    python benchmarks/bench_meta_iteration.py [--iterations 10]

With ``--config NAME --default-only`` it times just that packaged config as it is (e.g.
``halfcheetah-vel --set horizon=100``, pytorch-maml-rl's HalfCheetahVel setting; pytorch-maml-rl
took 11.2 s per meta-iteration there) and writes ``meta_iteration_<NAME>.json/.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from metarl.config import load_config
from metarl.trainer import Trainer

RESULTS = Path(__file__).parent / "results"
PYTORCH_MAML_RL_SECONDS = 3.48
CONFIG = ["2d-navigation"]  # the packaged config every variant starts from (--config)
EXTRA: list[str] = []  # config overrides for every variant (--set), e.g. a tiny problem for smoke tests
PARTS = ("sample_seconds", "adapt_seconds", "grad_seconds", "cg_seconds", "line_search_seconds")


def measure(overrides: list[str], iterations: int, warmup: int, exact_hvp: bool = False) -> dict:
    """Median seconds per part over ``iterations`` meta-iterations after ``warmup``."""
    cfg = load_config(CONFIG[0], ["tensorboard=false", "seed=0", *EXTRA, *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        trainer.learner.settings = dataclasses.replace(trainer.learner.settings, exact_hvp=exact_hvp)
        rows = [trainer.run_iteration() for _ in range(warmup + iterations)][warmup:]
    total = [r["sample_seconds"] + r["update_seconds"] for r in rows]
    out = {part: statistics.median(r[part] for r in rows) for part in PARTS}
    out["update_seconds"] = statistics.median(r["update_seconds"] for r in rows)
    out["seconds_per_iteration"] = statistics.median(total)
    out["env_steps_per_second_end_to_end"] = statistics.median(r["env_steps"] / t for r, t in zip(rows, total))
    out["sampler_env_steps_per_second"] = statistics.median(r["env_steps_per_second"] for r in rows)
    out["mean_backtracks"] = statistics.mean(r["ls_backtracks"] for r in rows)
    return out


def top_ops(overrides: list[str], n: int = 8) -> list[dict]:
    """The torch operators that take the most time in two meta-iterations."""
    from torch.profiler import profile

    cfg = load_config(CONFIG[0], ["tensorboard=false", "seed=0", *EXTRA, *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        trainer.run_iteration()
        with profile() as prof:
            for _ in range(2):
                trainer.run_iteration()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events]


def time_config_only(args: argparse.Namespace) -> None:
    """Seconds per meta-iteration of one config as it is; writes meta_iteration_<config>.*."""
    r = measure([], args.iterations, args.warmup)
    report = {
        "config": args.config,
        "overrides": args.overrides,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "torch": torch.__version__,
        **r,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"meta_iteration_{args.config}.json").write_text(json.dumps(report, indent=1))
    parts = ", ".join(f"{p.removesuffix('_seconds').replace('_', ' ')} {r[p]:.3f}" for p in PARTS)
    text = (
        f"# Seconds per meta-iteration, {args.config} {' '.join(args.overrides)}\n\n"
        f"torch {torch.__version__}, medians of {args.iterations} iterations after {args.warmup} warm-up.\n\n"
        f"{r['seconds_per_iteration']:.2f} s per meta-iteration ({parts}); "
        f"sampler {r['sampler_env_steps_per_second']:,.0f} env-steps/s, end to end "
        f"{r['env_steps_per_second_end_to_end']:,.0f} env-steps/s.\n"
    )
    (args.out / f"meta_iteration_{args.config}.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="config overrides for every variant (smoke tests)"
    )
    parser.add_argument("--config", default="2d-navigation", help="packaged config to time (default 2d-navigation)")
    parser.add_argument(
        "--default-only", action="store_true", help="time only the config as it is (no variants, no reference)"
    )
    args = parser.parse_args()
    EXTRA[:] = args.overrides
    CONFIG[0] = args.config
    if args.default_only:
        return time_config_only(args)
    variants = [
        ("metarl, curvature every 5th episode, 2 threads", ["curvature_subsample=5", "torch_threads=2"], False),
        ("metarl, curvature every 10th episode, 2 threads", ["curvature_subsample=10", "torch_threads=2"], False),
        ("metarl, curvature on all episodes (exact), 2 threads", ["curvature_subsample=1", "torch_threads=2"], False),
        ("metarl, curvature every 5th episode, 1 thread", ["curvature_subsample=5", "torch_threads=1"], False),
        (
            "reference: textbook third-order HVP, all episodes, 2 threads",
            ["curvature_subsample=1", "torch_threads=2"],
            True,
        ),
    ]
    results = {}
    for name, overrides, exact in variants:
        results[name] = {
            "overrides": overrides,
            "exact_hvp": exact,
            **measure(overrides, args.iterations, args.warmup, exact),
        }
        r = results[name]
        print(
            f"{name}: {r['seconds_per_iteration']:.3f} s/it (sampling {r['sample_seconds']:.3f}, update "
            f"{r['update_seconds']:.3f})",
            flush=True,
        )
    ref = results[variants[-1][0]]["seconds_per_iteration"]
    for r in results.values():
        r["speedup_vs_textbook_hvp"] = ref / r["seconds_per_iteration"]
        r["speedup_vs_pytorch_maml_rl_quoted"] = PYTORCH_MAML_RL_SECONDS / r["seconds_per_iteration"]
    torch.set_num_threads(2)
    report = {
        "benchmark": "2D navigation, default config (20 tasks x 20 episodes x 100 steps), medians",
        "iterations": args.iterations,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": torch.get_num_threads(),
        "pytorch_maml_rl_seconds_quoted": PYTORCH_MAML_RL_SECONDS,
        "target_seconds": 0.35,
        "overrides": args.overrides,
        "variants": results,
        "profile_top_ops_subsample5": top_ops(["curvature_subsample=5", "torch_threads=2"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "meta_iteration.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Seconds per meta-iteration, 2D navigation default config",
        "",
        f"torch {torch.__version__}, medians of {args.iterations} iterations after {args.warmup} warm-up. "
        f"pytorch-maml-rl: {PYTORCH_MAML_RL_SECONDS} s (quoted, measured on this machine type while planning). Target: "
        "0.35 s.",
        "",
        "| variant | s / iteration | sampling | adapt | meta-gradient | CG + HVPs | line search | x textbook HVP | x "
        "pytorch-maml-rl |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['seconds_per_iteration']:.3f} | {r['sample_seconds']:.3f} | {r['adapt_seconds']:.3f} | "
            f"{r['grad_seconds']:.3f} | "
            f"{r['cg_seconds']:.3f} | {r['line_search_seconds']:.3f} | {r['speedup_vs_textbook_hvp']:.1f} | "
            f"{r['speedup_vs_pytorch_maml_rl_quoted']:.1f} |"
        )
    lines += ["", "Top operators (self CPU time), curvature every 5th episode:", ""]
    lines += [
        f"- {o['op']}: {100 * o['share']:.1f}% ({o['calls']} calls)" for o in report["profile_top_ops_subsample5"]
    ]
    (args.out / "meta_iteration.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
