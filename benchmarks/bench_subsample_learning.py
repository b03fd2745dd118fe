"""Effect of ``curvature_subsample`` on learning: 2D navigation learning curves per setting.

Trains the default 2D-navigation config for ``--iterations`` meta-iterations with each
subsampling factor (same seed), and writes the per-iteration pre/post-adaptation returns
and seconds per iteration to ``benchmarks/results/subsample_learning.json`` and a plot.

    python benchmarks/bench_subsample_learning.py --iterations 150 --subsample 1 5 10
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from metarl.config import load_config
from metarl.plots import pyplot
from metarl.trainer import Trainer

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--subsample", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra config overrides (smoke tests)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    curves = {}
    for s in args.subsample:
        cfg = load_config(
            "2d-navigation",
            [
                f"num_iterations={args.iterations}",
                f"curvature_subsample={s}",
                f"seed={args.seed}",
                f"torch_threads={args.threads}",
                "tensorboard=false",
                *args.overrides,
            ],
        )
        with tempfile.TemporaryDirectory() as tmp:
            rows = Trainer(cfg, tmp, progress=not args.no_progress).train()
        curves[str(s)] = {
            "pre_return": [r["pre_return"] for r in rows],
            "post_return": [r["post_return"] for r in rows],
            "seconds_per_iteration": [r["sample_seconds"] + r["update_seconds"] for r in rows],
        }
        last = rows[-20:]
        print(
            f"subsample {s}: last-20 mean pre {sum(r['pre_return'] for r in last) / len(last):.2f}, post "
            f"{sum(r['post_return'] for r in last) / len(last):.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "iterations": args.iterations,
        "seed": args.seed,
        "threads": args.threads,
        "overrides": args.overrides,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "curves": curves,
    }
    (args.out / "subsample_learning.json").write_text(json.dumps(out, indent=1))
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, c in curves.items():
        line = ax.plot(c["post_return"], label=f"after adaptation, subsample {s}")[0]
        ax.plot(c["pre_return"], color=line.get_color(), alpha=0.4, linestyle="--")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel("mean return (dashed: before adaptation)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "subsample_learning.png", dpi=100)


if __name__ == "__main__":
    main()
