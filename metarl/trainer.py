"""Meta-training loop: sample, adapt, meta-update; log, checkpoint, show progress, resume.

A run directory holds::

    config.yaml          the validated config (``init_from``: the run it continues, if any)
    progress.csv         one row per meta-iteration (see metarl.logger.COLUMNS)
    tb/                  TensorBoard events (with the tensorboard extra)
    checkpoints/         iter_000050.pt ..., last.pt (the newest)
    learning_curve.png   pre- and post-adaptation return per iteration (with the plot extra)
"""

from __future__ import annotations

import errno
import math
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from metarl.callbacks import Callback, CheckpointEvery, ProgressBar, RowFunction, as_callbacks
from metarl.checkpoint import capture_global_rng, load_checkpoint, restore_global_rng, save_checkpoint
from metarl.config import TrainConfig, config_from_dict, load_config
from metarl.errors import CheckpointError, ConfigError, MetarlError, RunDirError, RunExistsError, TrainingDivergedError
from metarl.families import make_family
from metarl.learners import make_learner
from metarl.logger import SUCCESS_COLUMNS, IterationRow, RunLogger, columns_for, repair_log
from metarl.plots import plot_learning_curve
from metarl.run_lock import RunLock
from metarl.runtime import (
    LoadAwareThreads,
    build_policy,
    build_sampler,
    check_memory,
    configure_threads,
    resolve_device,
    seed_streams,
)
from metarl.task_api import reports_success, sample_tasks, seed_family


class Trainer:
    """Runs meta-training (any learner of ``metarl.learners``) into a run directory.

    Args:
        config: The validated config.
        run_dir: Where config, logs and checkpoints go (created if missing).
        progress: Show a progress bar.
        callbacks: ``metarl.callbacks.Callback`` objects or functions ``f(iteration, row)``,
            called after every iteration (after the progress bar and the checkpoint); one
            returning ``False`` stops the run (resumable: a checkpoint is written).

    Example:
        >>> trainer = Trainer(load_config("2d-navigation", ["num_iterations=5"]), "runs/demo")
        >>> rows = trainer.train()
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        progress: bool = True,
        callbacks: Sequence[Callback | RowFunction] | None = None,
    ) -> None:
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.callbacks = as_callbacks(callbacks)
        self.threads = configure_threads(config.torch_threads)
        self.load_aware = LoadAwareThreads() if config.torch_threads == 0 else None
        self.owns_run_dir = False
        """The run directory holds this run (set by ``resume``, or once ``train`` has written it)."""
        self.device = resolve_device(config.device)
        seeds = seed_streams(config.seed)
        self.family = make_family(config.family, **config.env_kwargs)
        seed_family(self.family, seeds["tasks"])
        task_rng = self.family.unwrapped.np_random.bit_generator.state
        sample_tasks(self.family, config.meta_batch_size)  # a broken sample_tasks fails before anything is written
        self.family.unwrapped.np_random.bit_generator.state = task_rng
        check_memory(config, self.family)
        self.columns = columns_for(reports_success(self.family))
        """The columns of ``progress.csv`` (with success rates for a family that reports success)."""
        torch.manual_seed(seeds["init"])
        self.policy = build_policy(config, self.family).to(self.device)
        self.sampler_policy = build_policy(config, self.family)  # CPU twin used only for its functions
        self.sampler = build_sampler(config, self.sampler_policy, seeds["sampler"])
        self.learner = make_learner(config, self.policy, self.device)
        self.iteration = 0
        self.total_env_steps = 0
        self.run_id: str | None = None
        """Identifies the run in its checkpoints and in ``run_dir/run_id`` (set when training starts)."""
        self.log_notes: list[str] = []
        """What resuming found wrong with ``progress.csv`` and repaired (``logger.repair_log``)."""

    # -- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly."""
        return {
            "iteration": self.iteration,
            "run_id": self.run_id,
            "total_env_steps": self.total_env_steps,
            "config": self.config.to_dict(),
            "policy": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            # TRPO keeps no optimizer state between iterations; ProMP / MAML-PPO keep Adam's.
            "learner": self.learner.state_dict(),
            "rng": {
                "global": capture_global_rng(),
                "tasks": self.family.unwrapped.np_random.bit_generator.state,
                "sampler_torch": self.sampler.generator.get_state(),
                "sampler_numpy": self.sampler.np_rng.bit_generator.state,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict`` (policy, counters, every RNG)."""
        try:
            self.policy.load_state_dict(state["policy"])
            self.iteration = int(state["iteration"])
            self.run_id = state.get("run_id") or self.run_id
            self.total_env_steps = int(state.get("total_env_steps", 0))
            self.learner.load_state_dict(state.get("learner", {}))
            rng = state["rng"]
            restore_global_rng(rng["global"])
            self.family.unwrapped.np_random.bit_generator.state = rng["tasks"]
            self.sampler.generator.set_state(rng["sampler_torch"])
            self.sampler.np_rng.bit_generator.state = rng["sampler_numpy"]
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"The checkpoint does not match this run's policy or is incomplete: {e}") from e

    def save(self) -> Path:
        """Write ``iter_XXXXXX.pt`` and ``last.pt`` under ``checkpoints/``."""
        state = self.state_dict()
        folder = self.run_dir / "checkpoints"
        path = folder / f"iter_{self.iteration:06d}.pt"
        save_checkpoint(path, state)
        save_checkpoint(folder / "last.pt", state)
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True, num_iterations: int | None = None) -> Trainer:
        """Continue a run from ``run_dir/checkpoints/last.pt``.

        Args:
            run_dir: An existing run directory.
            progress: Show a progress bar.
            num_iterations: Raise the iteration budget (default: the saved config's).

        Raises:
            CheckpointError: No run there, its checkpoint is missing, corrupt or another run's,
                or ``config.yaml`` was edited since.
            ConfigError: ``num_iterations`` is not above the run's iteration.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise CheckpointError(
                f"{run_dir} is not a metarl run directory (no config.yaml); start one with `metarl train`."
            )
        state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        config = config_from_dict(state["config"])
        _check_run_id(run_dir, state)
        _check_saved_config(run_dir, config)
        if num_iterations is not None:
            done = int(state["iteration"])
            if num_iterations <= done:
                raise ConfigError(
                    f"{run_dir} is at iteration {done}; --iterations {num_iterations} would not train at all: "
                    f"give a budget above {done} (the saved one is {config.num_iterations})."
                )
            config.num_iterations = num_iterations
            config.validate()
        trainer = cls(config, run_dir, progress)
        trainer.load_state_dict(state)
        trainer.owns_run_dir = True
        return trainer

    def _warm_start(self, source: Path) -> None:
        """Take ``source``'s last checkpoint as this new run's start (``config.init_from``).

        The policy, iteration count, env-step count and every RNG state are the source's; the
        learner's state (ProMP / MAML-PPO's Adam moments) starts fresh, as the settings differ.

        Raises:
            ConfigError: ``source`` is not a run, trains another family or policy shape, or is
                already at ``num_iterations``.
            CheckpointError: Its checkpoint is missing or corrupt.
        """
        if not (source / "config.yaml").is_file():
            raise ConfigError(
                f"init_from: {source} is not a metarl run directory (no config.yaml); give the folder of a run "
                "that `metarl train` wrote, or null to start from a fresh policy."
            )
        state = load_checkpoint(source / "checkpoints" / "last.pt")
        theirs, mine = config_from_dict(state["config"]).to_dict(), self.config.to_dict()
        differ = [k for k in ("family", "hidden_sizes", "activation") if theirs[k] != mine[k]]
        if differ:
            diff = ", ".join(f"{k} ({theirs[k]!r} there, {mine[k]!r} here)" for k in differ)
            raise ConfigError(
                f"init_from: {source} trained another policy: {diff}. A warm start continues the same family "
                "and policy shape; set these as the source's, or start a fresh run."
            )
        done = int(state["iteration"])
        if self.config.num_iterations <= done:
            raise ConfigError(
                f"init_from: {source} is at iteration {done}, and num_iterations counts its iterations too: "
                f"set num_iterations above {done} (e.g. {done + 100})."
            )
        self.load_state_dict({**state, "learner": {}})
        self.run_id = None

    # -- training ------------------------------------------------------------------------
    def run_iteration(self) -> dict[str, Any]:
        """One meta-iteration: sample tasks, sample + adapt, sample post-adaptation, meta-update."""
        cfg = self.config
        if self.load_aware is not None:
            self.threads = self.load_aware.update()
        tasks = sample_tasks(self.family, cfg.meta_batch_size)
        t0 = time.perf_counter()
        sample_time = 0.0
        params = self.learner.initial_params()
        adaptation = None
        for _ in range(cfg.num_steps):
            ts = time.perf_counter()
            episodes = self.sampler.sample(params, tasks, cfg.episodes_per_task)
            sample_time += time.perf_counter() - ts
            adaptation = self.learner.adapt(episodes, adaptation)
            params = adaptation.params
        assert adaptation is not None  # num_steps >= 1 (validated)
        inner_episodes = adaptation.episodes
        ts = time.perf_counter()
        post_episodes = self.sampler.sample(params, tasks, cfg.episodes_per_task)
        sample_time += time.perf_counter() - ts
        tu = time.perf_counter()
        stats = self.learner.step(adaptation, post_episodes)
        update_time = time.perf_counter() - tu
        adapt_time = (tu - t0) - sample_time
        env_steps = sum(e.num_steps for e in inner_episodes) + post_episodes.num_steps
        self.iteration += 1
        self.total_env_steps += env_steps
        row = IterationRow(
            iteration=self.iteration,
            pre_return=float(inner_episodes[0].episode_returns().mean()),
            post_return=float(post_episodes.episode_returns().mean()),
            loss_before=stats.loss_before,
            loss_after=stats.loss_after,
            kl=stats.kl_after,
            step_accepted=int(stats.accepted),
            step_fraction=stats.step_fraction,
            ls_backtracks=stats.backtracks,
            grad_norm=stats.grad_norm,
            env_steps=env_steps,
            total_env_steps=self.total_env_steps,
            sample_seconds=sample_time,
            update_seconds=update_time + adapt_time,
            adapt_seconds=adapt_time,
            grad_seconds=stats.grad_seconds,
            cg_seconds=stats.cg_seconds,
            line_search_seconds=stats.line_search_seconds,
            env_steps_per_second=env_steps / max(sample_time, 1e-9),
        ).as_dict()
        if SUCCESS_COLUMNS[0] in self.columns:
            row["pre_success"] = inner_episodes[0].success_rate()
            row["post_success"] = post_episodes.success_rate()
        return row

    def train(self) -> list[dict[str, Any]]:
        """Train up to ``config.num_iterations``; returns the rows logged by this call.

        Logs and checkpoints are written as the run goes, so an exception (an env that
        raises, a NaN batch, Ctrl-C) leaves the last checkpoint and every logged row intact.
        The run directory is locked meanwhile (``metarl.run_lock``).

        Raises:
            RunLockedError: Another process is writing to the run directory.
            RunExistsError: A new run would overwrite an existing one.
        """
        try:
            with RunLock(self.run_dir, "training"):
                return self._train()
        except OSError as e:
            if isinstance(e, MetarlError) or not (e.filename or e.errno in _FILE_SYSTEM_ERRNOS):
                raise
            where = f" ({e.filename})" if e.filename else ""
            problem = f"Cannot write the run directory {self.run_dir}: {e.strerror or e}{where}."
            try:
                resumable = (self.run_dir / "checkpoints" / "last.pt").is_file()
            except OSError:
                resumable = False
            if resumable:
                advice = (
                    " Every logged row and the last checkpoint are intact; free space (or fix the permissions) "
                    f"and continue with `metarl train --resume {self.run_dir}`."
                )
            else:
                advice = " Pick a writable --run-dir."
            raise RunDirError(problem + advice) from e

    def _train(self) -> list[dict[str, Any]]:
        if not self.owns_run_dir and (
            (self.run_dir / "progress.csv").exists() or (self.run_dir / "checkpoints").exists()
        ):
            raise RunExistsError(
                f"{self.run_dir} already holds a run; training there would overwrite its logs and checkpoints. "
                f"Continue it with `metarl train --resume {self.run_dir}` (in Python: Trainer.resume(run_dir)), "
                "pick another --run-dir, or delete the folder."
            )
        source = Path(self.config.init_from) if self.config.init_from is not None else None
        if not self.owns_run_dir and source is not None:
            self._warm_start(source)
        self.sampler.start()  # the Ray sampler's connection and workers fail before the run is written
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.owns_run_dir:
            self.run_id = uuid.uuid4().hex
            if source is not None and (source / "progress.csv").is_file():
                # The source's rows up to its checkpoint open this run's log (RunLogger drops later ones).
                shutil.copyfile(source / "progress.csv", self.run_dir / "progress.csv")
        else:  # at iteration 0 too: a run that failed in its first iteration resumes from its start
            self.log_notes = repair_log(self.run_dir / "progress.csv", self.iteration, self.columns)
            for note in self.log_notes:
                print(f"note: repaired {self.run_dir / 'progress.csv'}: {note}", file=sys.stderr)
            self.run_id = self.run_id or uuid.uuid4().hex  # a run from before run ids
        (self.run_dir / RUN_ID_FILE).write_text(self.run_id + "\n")
        self.owns_run_dir = True
        self.config.save(self.run_dir / "config.yaml")
        logger = RunLogger(
            self.run_dir,
            self.config.tensorboard,
            resume_from=self.iteration if self.iteration > 0 else None,
            columns=self.columns,
        )
        rows: list[dict[str, Any]] = []
        callbacks = [
            *([ProgressBar()] if self.progress else []),
            CheckpointEvery(self.config.checkpoint_every),
            *self.callbacks,
        ]
        try:
            for callback in callbacks:
                callback.on_train_start(self)
            while self.iteration < self.config.num_iterations:
                row = self.run_iteration()
                for key in ("pre_return", "post_return"):
                    if not math.isfinite(row[key]):
                        raise TrainingDivergedError(
                            f"{key} is {row[key]} at iteration {self.iteration}: the policy diverged."
                        )
                logger.log(row)
                rows.append(row)
                go_on = [callback.on_iteration(self, row) for callback in callbacks]  # every callback sees every row
                if not all(go_on):
                    break
            for callback in callbacks:
                callback.on_train_end(self)
        finally:
            for callback in callbacks:
                callback.close()
            logger.close()
            self.sampler.close()  # the Ray sampler stops its workers (and a Ray it started); both restart on use
        plot_learning_curve(self.run_dir, f"{self.config.family} ({self.config.learner}), {self.run_dir.name}")
        return rows


RUN_ID_FILE = "run_id"
_FILE_SYSTEM_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def _check_run_id(run_dir: Path, state: dict[str, Any]) -> None:
    """Refuse a checkpoint written by another run (one copied into this directory)."""
    saved = state.get("run_id")
    path = run_dir / RUN_ID_FILE
    mine = path.read_text().strip() if path.is_file() else None
    if saved and mine and saved != mine:
        raise CheckpointError(
            f"{run_dir}/checkpoints/last.pt belongs to another run (run id {saved}; this directory's is {mine}): "
            "resuming it would replace this run's log. Put back this run's checkpoint, or resume the other run "
            "in its own directory."
        )


def _check_saved_config(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume when ``config.yaml`` no longer matches the checkpoint's config (it was edited)."""
    try:
        on_disk = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    except (ConfigError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{run_dir}/config.yaml is not a valid config any more ({' '.join(str(e).split())}); a resumed run "
            "continues with its checkpoint's config: restore the file, or delete it to have it rewritten."
        ) from e
    mine, theirs = on_disk.to_dict(), config.to_dict()
    changed = [k for k in mine if k != "num_iterations" and mine[k] != theirs[k]]
    if changed:
        diff = ", ".join(f"{k} ({mine[k]!r} in the file, {theirs[k]!r} in the checkpoint)" for k in changed)
        raise CheckpointError(
            f"{run_dir}/config.yaml was edited since the checkpoint: {diff}. A resumed run continues with its "
            "checkpoint's config (use --iterations to raise the budget): restore the file, or start a new run "
            "with the new settings."
        )


def train(
    config: TrainConfig | str, run_dir: str | Path, overrides: list[str] | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Convenience: load a config (name, path or object) and train into ``run_dir``."""
    cfg = config if isinstance(config, TrainConfig) else load_config(config, overrides)
    return Trainer(cfg, run_dir, progress).train()
