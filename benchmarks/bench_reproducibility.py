"""Reproducibility: two runs of the default 2D-navigation config with the same seed.

pytorch-maml-rl assigns tasks to sampler workers through a race, so the same seed gives
different returns. metarl samples in one process from seeded streams; this script runs
the default config twice for ``--iterations`` meta-iterations with the same seed (and
once with another seed) and compares every logged value except the timings.

Writes ``benchmarks/results/reproducibility.json``.

    python benchmarks/bench_reproducibility.py [--iterations 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from metarl.config import load_config
from metarl.logger import TIMING_COLUMNS, read_csv
from metarl.trainer import Trainer

RESULTS = Path(__file__).parent / "results"


def logged_rows(overrides: list[str], run_dir: Path) -> list[dict[str, str]]:
    """Train and return the progress rows without timing columns."""
    Trainer(load_config("2d-navigation", ["tensorboard=false", *overrides]), run_dir, progress=False).train()
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_csv(run_dir / "progress.csv")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra config overrides (smoke tests)")
    args = parser.parse_args()
    base = [f"num_iterations={args.iterations}", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        a = logged_rows([*base, "seed=0"], Path(tmp) / "a")
        b = logged_rows([*base, "seed=0"], Path(tmp) / "b")
        c = logged_rows([*base, "seed=1"], Path(tmp) / "c")
    report = {
        "iterations": args.iterations,
        "overrides": args.overrides,
        "same_seed_identical_logs": a == b,
        "other_seed_differs": a != c,
        "compared_columns": sorted(a[0]) if a else [],
        "post_return_seed0_run1": [float(r["post_return"]) for r in a],
        "post_return_seed0_run2": [float(r["post_return"]) for r in b],
        "post_return_seed1": [float(r["post_return"]) for r in c],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reproducibility.json").write_text(json.dumps(report, indent=1))
    print(
        f"same seed -> identical logs: {report['same_seed_identical_logs']}; another seed differs: "
        f"{report['other_seed_differs']}"
    )


if __name__ == "__main__":
    main()
