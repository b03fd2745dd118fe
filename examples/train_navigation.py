"""Meta-train MAML-TRPO on 2D navigation from a script, with a callback, then evaluate.

    python examples/train_navigation.py [--iterations 50] [--run-dir runs/example-navigation]

The same run as ``metarl train --config 2d-navigation``, through the Python API: a typed
config with overrides, a ``Trainer`` with a callback that prints every 10th iteration and
stops the run early once the post-adaptation return is good enough (a callback returning
``False`` stops training after that iteration's checkpoint and log row), and the held-out
evaluation of ``metarl evaluate``.
"""

from __future__ import annotations

import argparse
from typing import Any

import metarl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50, help="meta-iterations (the packaged config: 500)")
    parser.add_argument("--run-dir", default="runs/example-navigation", help="a new run directory")
    parser.add_argument(
        "--stop-at", type=float, default=-10.0, help="stop once the post-adaptation return exceeds this"
    )
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides"
    )
    args = parser.parse_args(argv)

    config = metarl.load_config(
        "2d-navigation", [f"num_iterations={args.iterations}", "tensorboard=false", *args.overrides]
    )

    def report(iteration: int, row: dict[str, Any]) -> bool:
        if iteration % 10 == 0:
            print(
                f"iteration {iteration}: return {row['pre_return']:.1f} before, {row['post_return']:.1f} after one step"
            )
        return row["post_return"] < args.stop_at  # False stops the run

    trainer = metarl.Trainer(config, args.run_dir, progress=False, callbacks=[report])
    rows = trainer.train()
    print(f"trained {len(rows)} iterations into {args.run_dir}")
    result = metarl.evaluate_run(args.run_dir, num_tasks=40, max_steps=1)
    for step in result["results"]:
        print(f"held-out return after {step['steps']} step(s): {step['mean']:.2f} +- {step['ci95']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
