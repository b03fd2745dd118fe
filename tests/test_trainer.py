"""Trainer: learning is shown, runs are reproducible, and resume equals an uninterrupted run."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from helpers import TINY

from metarl.config import load_config
from metarl.errors import ConfigError
from metarl.evaluate import adaptation_returns
from metarl.logger import TIMING_COLUMNS, read_csv
from metarl.trainer import Trainer


def _rows_without_timing(run_dir):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_csv(run_dir / "progress.csv")]


def test_same_seed_gives_identical_logs(tmp_path):
    cfg = load_config("2d-navigation", TINY + ["num_iterations=3", "seed=7"])
    Trainer(cfg, tmp_path / "a", progress=False).train()
    Trainer(cfg, tmp_path / "b", progress=False).train()
    a, b = _rows_without_timing(tmp_path / "a"), _rows_without_timing(tmp_path / "b")
    assert len(a) == 3
    assert a == b
    other = load_config("2d-navigation", TINY + ["num_iterations=3", "seed=8"])
    Trainer(other, tmp_path / "c", progress=False).train()
    assert _rows_without_timing(tmp_path / "c") != a


def test_resume_equals_uninterrupted_run(tmp_path):
    full = load_config("2d-navigation", TINY + ["num_iterations=4", "checkpoint_every=2", "seed=3"])
    whole = Trainer(full, tmp_path / "whole", progress=False)
    whole.train()

    first = load_config("2d-navigation", TINY + ["num_iterations=2", "checkpoint_every=2", "seed=3"])
    Trainer(first, tmp_path / "split", progress=False).train()
    resumed = Trainer.resume(tmp_path / "split", progress=False, num_iterations=4)
    assert resumed.iteration == 2
    resumed.train()

    assert _rows_without_timing(tmp_path / "split") == _rows_without_timing(tmp_path / "whole")
    for name, p in whole.policy.state_dict().items():
        assert torch.equal(p, resumed.policy.state_dict()[name]), name


def test_resume_drops_log_rows_past_the_checkpoint(tmp_path):
    cfg = load_config("2d-navigation", TINY + ["num_iterations=3", "checkpoint_every=2"])
    Trainer(cfg, tmp_path / "run", progress=False).train()
    # Simulate a crash after iteration 3 was logged but before its checkpoint: restore last.pt to iteration 2.
    ckpts = tmp_path / "run" / "checkpoints"
    (ckpts / "last.pt").write_bytes((ckpts / "iter_000002.pt").read_bytes())
    resumed = Trainer.resume(tmp_path / "run", progress=False)
    resumed.train()
    rows = read_csv(tmp_path / "run" / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]


def test_meta_training_learns_to_adapt_on_2d_navigation(tmp_path):
    """A short seeded run: adapted return clearly beats un-adapted and the untrained policy."""
    cfg = load_config(
        "2d-navigation",
        [
            "meta_batch_size=10",
            "episodes_per_task=10",
            "num_iterations=25",
            "tensorboard=false",
            "torch_threads=1",
            "seed=0",
            "curvature_subsample=2",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.sampler.generator.manual_seed(123)
    from metarl.task_api import seed_family

    seed_family(trainer.family, 10_000)  # held-out tasks for the untrained baseline
    eval_tasks = trainer.family.unwrapped.sample_tasks(20)
    with torch.no_grad():
        untrained = adaptation_returns(trainer.policy, trainer.learner, trainer.sampler, eval_tasks, 10, max_steps=1)
    seed_family(trainer.family, 0)
    trainer.train()
    with torch.no_grad():
        trained = adaptation_returns(trainer.policy, trainer.learner, trainer.sampler, eval_tasks, 10, max_steps=1)
    before, after = trained.mean(1)
    untrained_before = untrained.mean(1)[0]
    # Per-task standard errors here are ~1; margins are several of them.
    assert after > before + 5.0, (before, after)
    assert after > untrained_before + 20.0, (untrained_before, after)
    assert np.isfinite(trained).all()


def test_training_into_an_existing_run_refuses_and_keeps_its_files(tmp_path):
    from metarl.cli import main

    cfg = load_config("2d-navigation", TINY + ["num_iterations=1"])
    Trainer(cfg, tmp_path / "run", progress=False).train()
    before = (tmp_path / "run" / "progress.csv").read_bytes()
    last = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    import pytest

    from metarl.errors import RunExistsError

    with pytest.raises(RunExistsError, match="--resume"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    assert (
        main(
            ["train", "--config", "2d-navigation", "--run-dir", str(tmp_path / "run"), "--no-progress", "--set", *TINY]
        )
        == 2
    )
    assert (tmp_path / "run" / "progress.csv").read_bytes() == before
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == last


def test_a_callback_that_returns_false_stops_a_resumable_run(tmp_path):
    """SB3-style: the row is logged and a checkpoint written, and --resume continues bit-identically."""
    seen = []

    def stop_after_two(iteration, row):
        seen.append((iteration, row["iteration"]))
        return iteration < 2

    cfg = load_config("2d-navigation", TINY + ["num_iterations=4", "checkpoint_every=10", "seed=5"])
    rows = Trainer(cfg, tmp_path / "stopped", progress=False, callbacks=[stop_after_two]).train()
    assert [r["iteration"] for r in rows] == [1, 2] and seen == [(1, 1), (2, 2)]
    assert len(read_csv(tmp_path / "stopped" / "progress.csv")) == 2
    assert (tmp_path / "stopped" / "checkpoints" / "iter_000002.pt").is_file()  # between checkpoint_every marks
    resumed = Trainer.resume(tmp_path / "stopped", progress=False)
    assert resumed.iteration == 2
    resumed.train()
    Trainer(cfg, tmp_path / "full", progress=False).train()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]  # noqa: E731
    assert strip(read_csv(tmp_path / "stopped" / "progress.csv")) == strip(read_csv(tmp_path / "full" / "progress.csv"))


def test_callback_objects_see_start_every_row_and_end(tmp_path):
    from metarl.callbacks import Callback

    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_train_start(self, trainer):
            self.events.append(("start", trainer.iteration))

        def on_iteration(self, trainer, row):
            self.events.append(("row", row["iteration"]))
            return True

        def on_train_end(self, trainer):
            self.events.append(("end", trainer.iteration))

    recorder = Recorder()
    Trainer(
        load_config("2d-navigation", TINY + ["num_iterations=2"]),
        tmp_path / "run",
        progress=False,
        callbacks=[recorder],
    ).train()
    assert recorder.events == [("start", 0), ("row", 1), ("row", 2), ("end", 2)]
    with __import__("pytest").raises(TypeError, match="a metarl.callbacks.Callback or a function"):
        Trainer(load_config("2d-navigation", TINY), tmp_path / "bad", progress=False, callbacks=[42])


def test_a_warm_start_with_the_same_settings_equals_resuming(tmp_path):
    """init_from continues the source's policy, iteration, RNG states and log rows into a new run."""
    first = load_config("2d-navigation", TINY + ["num_iterations=2", "checkpoint_every=2", "seed=3"])
    Trainer(first, tmp_path / "source", progress=False).train()
    whole = load_config("2d-navigation", TINY + ["num_iterations=4", "checkpoint_every=2", "seed=3"])
    Trainer(whole, tmp_path / "whole", progress=False).train()
    warm = load_config(
        "2d-navigation", TINY + ["num_iterations=4", "checkpoint_every=2", "seed=3", f"init_from={tmp_path / 'source'}"]
    )
    trainer = Trainer(warm, tmp_path / "warm", progress=False)
    rows = trainer.train()
    assert [r["iteration"] for r in rows] == [3, 4]
    assert _rows_without_timing(tmp_path / "warm") == _rows_without_timing(tmp_path / "whole")
    assert len(read_csv(tmp_path / "source" / "progress.csv")) == 2  # the source is left as it was
    assert load_config(str(tmp_path / "warm" / "config.yaml")).init_from == str(tmp_path / "source")

    # The warm-started run resumes from its own checkpoint, without its source.
    shutil.rmtree(tmp_path / "source")
    resumed = Trainer.resume(tmp_path / "warm", progress=False, num_iterations=5)
    assert resumed.iteration == 4
    assert [r["iteration"] for r in resumed.train()] == [5]


def test_a_warm_start_changes_the_settings_from_the_source_on(tmp_path):
    source = load_config("2d-navigation", TINY + ["num_iterations=2", "seed=1"])
    Trainer(source, tmp_path / "src", progress=False).train()
    cfg = load_config(
        "2d-navigation", TINY + ["num_iterations=3", "seed=1", "estimator=lvc", f"init_from={tmp_path / 'src'}"]
    )
    Trainer(cfg, tmp_path / "lvc", progress=False).train()
    src, lvc = _rows_without_timing(tmp_path / "src"), _rows_without_timing(tmp_path / "lvc")
    assert lvc[:2] == src and lvc[2]["iteration"] == "3"


def test_a_warm_start_refuses_another_policy_a_spent_budget_and_a_non_run(tmp_path):
    Trainer(load_config("2d-navigation", TINY + ["num_iterations=2"]), tmp_path / "src", progress=False).train()
    cases = {
        "num_iterations=2": "is at iteration 2, and num_iterations counts its iterations too: set num_iterations above",
        "num_iterations=3 hidden_sizes=[8]": "trained another policy: hidden_sizes",
        "num_iterations=3 activation=relu": "trained another policy: activation ('tanh' there, 'relu' here)",
    }
    for overrides, message in cases.items():
        cfg = load_config("2d-navigation", TINY + overrides.split() + [f"init_from={tmp_path / 'src'}"])
        with pytest.raises(ConfigError, match=re.escape(message)):
            Trainer(cfg, tmp_path / overrides.replace(" ", "_"), progress=False).train()
        written = tmp_path / overrides.replace(" ", "_")
        assert not (written / "progress.csv").exists() and not (written / "checkpoints").exists()
    cfg = load_config("2d-navigation", TINY + ["num_iterations=3", f"init_from={tmp_path}"])
    with pytest.raises(ConfigError, match="is not a metarl run directory"):
        Trainer(cfg, tmp_path / "x", progress=False).train()
    with pytest.raises(ConfigError, match="init_from must be a run directory"):
        load_config("2d-navigation", ["init_from=' '"])
