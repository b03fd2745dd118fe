"""Command line: ``metarl train``, ``metarl evaluate``, ``metarl benchmark``, ``metarl check-env``, ``metarl configs``.

The CLI only parses arguments, calls the library and prints. Expected failures (bad
config, unknown family, missing checkpoint, env errors, NaN batches) print one clear
``error:`` line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Callable

import yaml

from metarl.benchmark import BUDGETS, run_benchmark
from metarl.check_env import check_family, format_results
from metarl.config import config_text, load_config, packaged_configs
from metarl.errors import ConfigError, MetarlError
from metarl.evaluate import StepResult, evaluate_run, format_table
from metarl.learners import LEARNERS
from metarl.logger import read_csv
from metarl.trainer import Trainer

USER_ERRORS = (MetarlError, FloatingPointError)
"""What the CLI prints as one ``error:`` line: every metarl error, and a diverged computation."""


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (bad values exit 2 with an ``error:`` line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metarl", description="Meta-reinforcement learning: MAML-TRPO on task families."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="meta-train a policy (or resume a run)")
    train.add_argument("--config", help=f"packaged config name ({', '.join(packaged_configs())}) or a YAML file")
    train.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config values, e.g. --set num_iterations=50 seed=1",
    )
    train.add_argument(
        "--learner",
        choices=LEARNERS,
        help="meta-learner (default: the config's, maml-trpo); same as --set learner=NAME",
    )
    train.add_argument("--run-dir", help="output directory (default: runs/<config>-<timestamp>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--iterations", type=_count(1), help="with --resume: raise the iteration budget")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    ev = sub.add_parser("evaluate", help="return on fresh tasks after 0..K adaptation steps")
    ev.add_argument("run_dir", help="a run directory made by `metarl train`")
    ev.add_argument("--tasks", type=_count(1), default=400, help="held-out tasks (default 400)")
    ev.add_argument("--episodes", type=_count(1), help="episodes per task and step (default: the run's)")
    ev.add_argument("--steps", type=_count(0), default=3, help="largest number of adaptation steps (default 3)")
    ev.add_argument(
        "--seed", type=_count(0), help="task seed (default: derived from the run's seed, disjoint from training)"
    )
    ev.add_argument("--checkpoint", help="checkpoint file (default: RUN_DIR/checkpoints/last.pt)")

    bench = sub.add_parser("benchmark", help="MAML vs pretrained / oracle / random on held-out tasks, over seeds")
    bench.add_argument(
        "--config", default="2d-navigation", help="packaged config name or YAML file (default 2d-navigation)"
    )
    bench.add_argument(
        "--budget",
        choices=list(BUDGETS),
        default="smoke",
        help="smoke: CI-sized (< 1 min); full: the published protocol; metaworld-ml1 / metaworld-ml10: Meta-World's "
        "evaluation (40 test goals per test class)",
    )
    bench.add_argument("--seeds", type=_count(0), nargs="+", default=[0], help="training seeds (default 0)")
    bench.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. family=mymodule:MyFamily horizon=50",
    )
    bench.add_argument("--out", help="output folder (default: runs/benchmark-<config>-<budget>-<timestamp>)")
    bench.add_argument(
        "--maml-runs",
        nargs="+",
        metavar="RUN_DIR",
        help="evaluate these runs (one per seed, any meta-learner) instead of training",
    )
    bench.add_argument(
        "--ppo-timesteps", type=_count(1), help="PPO baselines' environment steps (default: the budget's)"
    )
    bench.add_argument(
        "--oracle-timesteps",
        type=_count(1),
        help="the oracle's PPO environment steps, when it needs more than the pretrained baseline (default: "
        "--ppo-timesteps)",
    )
    bench.add_argument(
        "--ppo-recipe",
        choices=("normalized", "plain"),
        help="the PPO baselines' recipe: normalized observations and rewards with minibatch 256 (the budgets' "
        "default) or plain SB3 defaults (benchmarks written before 2026-12-02)",
    )
    bench.add_argument("--jobs", type=_count(1), default=1, help="seeds in parallel processes (one torch thread each)")
    bench.add_argument(
        "--baselines-from",
        metavar="BENCHMARK",
        help="reuse the PPO baselines of an earlier benchmark with the same settings (its folder) instead of training "
        "them (seeds it lacks are trained)",
    )
    bench.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished benchmark in --out (the same command plus --resume): the seeds it finished are "
        "kept, the PPO baselines it trained are loaded, its MAML runs continue from their last checkpoint",
    )

    check = sub.add_parser("check-env", help="check that a task family is ready for meta-training")
    check.add_argument("target", help="a family id (Navigation2D), a Gymnasium id, or package.module:ClassName")
    check.add_argument(
        "--kwargs",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="constructor arguments (YAML values), e.g. --kwargs goal_scale=3.0",
    )
    check.add_argument(
        "--seed", type=_count(0), default=0, help="seed of the checks' task sampling, resets and actions (default 0)"
    )

    configs = sub.add_parser("configs", help="list the packaged configs, or show one")
    configs.add_argument("name", nargs="?", help="a packaged config to print (its YAML)")
    return parser


def _train(args: argparse.Namespace) -> None:
    if args.resume:
        if args.config or args.overrides or args.learner:
            raise ConfigError(
                "--resume continues a run with its saved config; do not pass --config, --set or --learner with it."
            )
        trainer = Trainer.resume(args.resume, progress=not args.no_progress, num_iterations=args.iterations)
        print(f"Resuming {args.resume} at iteration {trainer.iteration} of {trainer.config.num_iterations}")
    else:
        if args.iterations is not None:
            raise ConfigError(
                "--iterations raises the budget of a resumed run (with --resume RUN_DIR); "
                "for a new run use --set num_iterations=N."
            )
        config = load_config(args.config, [*args.overrides, *([f"learner={args.learner}"] if args.learner else [])])
        name = Path(args.config).stem if args.config else "default"
        run_dir = args.run_dir or f"runs/{name}-{datetime.now():%Y%m%d-%H%M%S}"
        trainer = Trainer(config, run_dir, progress=not args.no_progress)
        print(
            f"Training {config.learner} on {config.family} for {config.num_iterations} meta-iterations into {run_dir} "
            f"(device {trainer.device}, {trainer.threads} torch threads)"
            + (f", continuing {config.init_from} from its last checkpoint" if config.init_from else "")
        )
    args.training_run_dir = trainer.run_dir  # for the Ctrl-C message
    trainer.train()
    rows = read_csv(trainer.run_dir / "progress.csv")
    if rows:
        last = rows[-10:]
        pre = sum(float(r["pre_return"]) for r in last) / len(last)
        post = sum(float(r["post_return"]) for r in last) / len(last)
        success = ""
        if "post_success" in rows[-1]:
            pre_s = sum(float(r["pre_success"]) for r in last) / len(last)
            post_s = sum(float(r["post_success"]) for r in last) / len(last)
            success = f" Success rate {pre_s:.0%} before, {post_s:.0%} after."
        print(
            f"Done: iteration {rows[-1]['iteration']}; mean return over the last {len(last)} iterations: {pre:.2f} "
            f"before adaptation, {post:.2f} after.{success}"
        )
    print(
        f"Logs, checkpoints and learning_curve.png are in {trainer.run_dir}; "
        f"evaluate with `metarl evaluate {trainer.run_dir}`."
    )


def _evaluate(args: argparse.Namespace) -> None:
    report = evaluate_run(
        args.run_dir,
        num_tasks=args.tasks,
        episodes_per_task=args.episodes,
        max_steps=args.steps,
        seed=args.seed,
        checkpoint=args.checkpoint,
    )
    results = [StepResult(**r) for r in report["results"]]
    success = [StepResult(**r) for r in report["success"]] if "success" in report else None
    print(
        f"{report['family']} at iteration {report['iteration']}: {report['num_tasks']} held-out tasks "
        f"(seed {report['task_seed']}), {report['episodes_per_task']} episodes each"
    )
    print(format_table(results, success))
    print(f"Saved {Path(args.run_dir) / 'eval.json'} and eval.png")


def _benchmark(args: argparse.Namespace) -> None:
    name = Path(args.config).stem
    if args.resume and not args.out:
        raise ConfigError("--resume continues the benchmark in --out: pass its folder with --out.")
    out = Path(args.out or f"runs/benchmark-{name}-{args.budget}-{datetime.now():%Y%m%d-%H%M%S}")
    args.resume_hint = "continue with the same command plus " + ("--resume" if args.out else f"--out {out} --resume")
    try:
        report = run_benchmark(
            args.config,
            args.budget,
            args.seeds,
            out,
            args.overrides,
            args.maml_runs,
            args.jobs,
            args.ppo_timesteps,
            baselines_from=args.baselines_from,
            oracle_timesteps=args.oracle_timesteps,
            ppo_recipe=args.ppo_recipe,
            resume=args.resume,
        )
    except (ValueError, FileExistsError) as e:
        if isinstance(e, USER_ERRORS):
            raise
        raise ConfigError(str(e)) from e
    print((out / "benchmark.md").read_text())
    print(f"Raw returns, plots and MAML runs are in {out} ({report['wall_seconds']:.0f} s).")


def _check_env(args: argparse.Namespace) -> int:
    """Print one line per check; 1 if any failed, else 0."""
    kwargs = {}
    for item in args.kwargs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--kwargs takes KEY=VALUE pairs, got {item!r}.")
        try:
            kwargs[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--kwargs {item!r}: the value is not valid YAML ({' '.join(str(e).split())}).") from e
    results = check_family(args.target, kwargs, seed=args.seed)
    print(format_results(results))
    return 1 if any(r.failed for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``metarl`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "check-env":
            return _check_env(args)
        elif args.command == "benchmark":
            _benchmark(args)
        elif args.command == "configs":
            if args.name is None:
                print("\n".join(packaged_configs()))
            else:
                print(config_text(args.name), end="")
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "training_run_dir", None)
        train_hint = f"continue with `metarl train --resume {run_dir}`" if run_dir is not None else None
        hint = getattr(args, "resume_hint", None) or train_hint  # a benchmark's, or a training run's
        print(
            f"interrupted: the last checkpoint and the logs are intact{'; ' + hint if hint else ''}.", file=sys.stderr
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
