"""Seconds per meta-iteration, quiet and next to one busy core, for each torch thread count.

A laptop or a shared server is rarely idle. This runs the default 2D-navigation config
(20 tasks x 20 episodes x 100 steps, the real trainer) with ``torch_threads`` 1 and 2 (and
0, the default: ``LoadAwareThreads`` picks, between iterations, as many threads as cores
the other processes leave idle), each once on a quiet machine and once while another process
keeps one core busy (a pure-Python spin loop, like a second training or a browser tab), in
alternation, and reports medians and the ratio loaded / quiet. The goal it measures: one
competing busy core should cost at most about 1.5x, without giving up more than 10% of
the quiet speed.

Writes ``benchmarks/results/threads_under_load.json`` and ``.md``.

    python benchmarks/bench_threads_under_load.py [--iterations 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from metarl.config import load_config
from metarl.trainer import Trainer

RESULTS = Path(__file__).parent / "results"


def seconds_per_iteration(threads: int, iterations: int, warmup: int, overrides: list[str]) -> float:
    """Median wall seconds of ``iterations`` meta-iterations after ``warmup``."""
    cfg = load_config("2d-navigation", ["tensorboard=false", "seed=0", f"torch_threads={threads}", *overrides])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        rows = [trainer.run_iteration() for _ in range(warmup + iterations)][warmup:]
    return statistics.median(r["sample_seconds"] + r["update_seconds"] for r in rows)


def measure(threads: int, loaded: bool, args: argparse.Namespace) -> float:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        return seconds_per_iteration(threads, args.iterations, args.warmup, args.overrides)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of quiet and loaded per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0], help="torch_threads values (0 = auto)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides (smoke tests)")
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    for threads in args.threads:
        quiet, loaded = [], []
        for _ in range(args.rounds):
            quiet.append(measure(threads, False, args))
            loaded.append(measure(threads, True, args))
        q, lo = statistics.median(quiet), statistics.median(loaded)
        results[str(threads)] = {
            "quiet": quiet,
            "loaded": loaded,
            "quiet_median": q,
            "loaded_median": lo,
            "ratio": lo / q,
        }
    report = {
        "config": "2d-navigation",
        "overrides": args.overrides,
        "iterations": args.iterations,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads_under_load.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Seconds per meta-iteration, quiet and next to one busy core (2D navigation, default config)",
        "",
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; medians of {args.rounds} alternations of "
        f"{args.iterations} iterations after {args.warmup} warm-up; one core kept busy by a spin loop.",
        "",
        "| torch_threads | quiet (s) | one busy core (s) | busy / quiet |",
        "|---|---:|---:|---:|",
    ]
    for threads, r in results.items():
        name = "0 (auto: load-aware)" if threads == "0" else threads
        lines.append(f"| {name} | {r['quiet_median']:.3f} | {r['loaded_median']:.3f} | {r['ratio']:.2f} |")
    text = "\n".join(lines) + "\n"
    (args.out / "threads_under_load.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
