"""Smoke tests of the command line, in-process: train, evaluate, resume, and the error paths."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from metarl.checkpoint import load_checkpoint
from metarl.cli import main
from metarl.envs import Navigation2DEnv
from metarl.logger import COLUMNS, TIMING_COLUMNS, read_csv

TINY = [
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=10",
    "hidden_sizes=[8]",
    "num_iterations=2",
    "tensorboard=false",
    "cg_iters=2",
    "torch_threads=1",
    "device=cpu",
]
STEPS_PER_ITERATION = 2 * 2 * 2 * 10  # (train + valid) x K x N x T, navigation never terminates early
CRASH_ID = "metarl_test/CrashingNavigation2D-v0"


class CrashingNavigation2D(Navigation2DEnv):
    """2D navigation through the vector-env path whose every copy raises on its ``fail_after + 1``-th step."""

    make_batched = None  # type: ignore[assignment]

    def __init__(self, fail_after: int = 50) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.total_steps = 0

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.total_steps += 1
        if self.total_steps > self.fail_after:
            raise RuntimeError(f"simulated physics crash after {self.fail_after} steps")
        return super().step(action)


if CRASH_ID not in gym.registry:
    gym.register(id=CRASH_ID, entry_point=CrashingNavigation2D, max_episode_steps=100)


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--config", "2d-navigation", "--run-dir", str(run_dir), "--no-progress", "--set", *TINY, *extra]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-iteration run, shared read-only by the tests below (copy it to modify)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(train_args(run_dir)) == 0
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run_dir, dest)
    return dest


def comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


# -- train ---------------------------------------------------------------------------------


def test_train_writes_config_progress_and_checkpoints(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["meta_batch_size"] == 2 and config["hidden_sizes"] == [8] and config["num_iterations"] == 2
    assert config["fast_lr"] == 0.1  # from the packaged config

    with open(trained_run / "progress.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == COLUMNS
    rows = read_csv(trained_run / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert [int(r["env_steps"]) for r in rows] == [STEPS_PER_ITERATION] * 2
    assert [int(r["total_env_steps"]) for r in rows] == [STEPS_PER_ITERATION, 2 * STEPS_PER_ITERATION]
    for r in rows:
        assert np.isfinite(float(r["pre_return"])) and float(r["pre_return"]) < 0  # rewards are -distance
        assert int(r["step_accepted"]) in (0, 1)

    ckpts = trained_run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["iter_000000.pt", "iter_000002.pt", "last.pt"]
    state = load_checkpoint(ckpts / "last.pt")
    assert state["iteration"] == 2
    assert state["total_env_steps"] == 2 * STEPS_PER_ITERATION
    assert state["config"]["meta_batch_size"] == 2
    assert state["policy"]["layers.0.weight"].shape == (8, 2)


def test_train_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(train_args(tmp_path / "run", "num_iterations=1")) == 0
    out = capsys.readouterr().out
    assert f"Training maml-trpo on Navigation2D for 1 meta-iterations into {tmp_path / 'run'}" in out
    assert "Done: iteration 1;" in out
    assert f"metarl evaluate {tmp_path / 'run'}" in out


def test_configs_command_lists_packaged_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs"]) == 0
    assert "2d-navigation" in capsys.readouterr().out.split()


# -- evaluate ------------------------------------------------------------------------------


def test_evaluate_writes_results_for_each_step(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(trained_run, tmp_path)
    assert main(["evaluate", str(run_dir), "--tasks", "4", "--steps", "1"]) == 0
    report = json.loads((run_dir / "eval.json").read_text())
    assert [r["steps"] for r in report["results"]] == [0, 1]
    assert all(r["num_tasks"] == 4 for r in report["results"])
    assert report["iteration"] == 2
    assert report["episodes_per_task"] == 2  # the run's
    per_task = np.array(report["per_task_returns"])
    assert per_task.shape == (2, 4)
    for step, r in enumerate(report["results"]):
        assert r["mean"] == pytest.approx(per_task[step].mean())
        assert r["ci95"] == pytest.approx(1.96 * per_task[step].std(ddof=1) / 2.0)
    out = capsys.readouterr().out
    assert "adaptation steps" in out and "eval.json" in out


def test_evaluate_is_reproducible_with_a_seed(trained_run: Path, tmp_path: Path) -> None:
    run_dir = copy_run(trained_run, tmp_path)
    args = ["evaluate", str(run_dir), "--tasks", "3", "--steps", "0", "--episodes", "1", "--seed", "7"]
    assert main(args) == 0
    first = json.loads((run_dir / "eval.json").read_text())
    assert main(args) == 0
    second = json.loads((run_dir / "eval.json").read_text())
    assert first["per_task_returns"] == second["per_task_returns"]
    assert first["task_seed"] == 7 and first["episodes_per_task"] == 1


# -- resume --------------------------------------------------------------------------------


def test_resume_continues_to_the_new_budget(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = copy_run(trained_run, tmp_path)
    assert main(["train", "--resume", str(run_dir), "--iterations", "3", "--no-progress"]) == 0
    assert "Resuming" in capsys.readouterr().out
    rows = read_csv(run_dir / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert comparable(rows[:2]) == comparable(read_csv(trained_run / "progress.csv"))
    assert int(rows[2]["total_env_steps"]) == 3 * STEPS_PER_ITERATION
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 3
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["num_iterations"] == 3


def test_resumed_run_equals_an_uninterrupted_run(trained_run: Path, tmp_path: Path) -> None:
    resumed = copy_run(trained_run, tmp_path)
    assert main(["train", "--resume", str(resumed), "--iterations", "3", "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert main(train_args(straight, "num_iterations=3")) == 0
    assert comparable(read_csv(resumed / "progress.csv")) == comparable(read_csv(straight / "progress.csv"))


# -- bad inputs: exit status 2 and one `error:` line ----------------------------------------


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["family=Nope"], ["Unknown task family 'Nope'"]),
        (["family=Navigatoin2D"], ["Did you mean", "'Navigation2D'"]),
        (["fast_rl=0.5"], ["Unknown config key 'fast_rl'", "Did you mean 'fast_lr'?"]),
        (["fast_lr=-0.1"], ["fast_lr must be > 0, got -0.1"]),
        (["meta_batch_size=abc"], ["meta_batch_size must be of type int"]),
        (["family=CartPole-v1"], ["not a task family", "lacks sample_tasks, set_task, get_task"]),
    ],
)
def test_train_bad_config_exits_2_with_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], fragments: list[str]
) -> None:
    assert main(train_args(tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_train_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "error: No config file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-run"
    assert main(["evaluate", str(missing), "--tasks", "2", "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert f"No run directory {missing}" in err


def test_evaluate_corrupt_checkpoint(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = copy_run(trained_run, tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    assert main(["evaluate", str(run_dir), "--tasks", "2", "--steps", "0"]) == 2
    assert "is corrupt or truncated" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--tasks", "0"), ("--steps", "-1"), ("--episodes", "0")])
def test_evaluate_rejects_non_positive_counts(
    trained_run: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(trained_run), flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}" in err
    assert value in err


def test_resume_with_corrupt_checkpoint(trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = copy_run(trained_run, tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Checkpoint ")
    assert "is corrupt or truncated" in err
    assert "Resume from an earlier checkpoint" in err


def test_resume_of_a_non_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "is not a metarl run directory (no config.yaml)" in capsys.readouterr().err


def test_resume_refuses_config_overrides(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(trained_run), "--set", "fast_lr=0.2"]) == 2
    assert "do not pass --config, --set or --learner" in capsys.readouterr().err


# -- a crash mid-training ------------------------------------------------------------------


def test_env_crash_mid_training_keeps_logs_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each env copy steps 10 times per sampling phase, 20 per iteration: with fail_after=50
    # iterations 1 and 2 complete and iteration 3 crashes in its post-adaptation phase.
    run_dir = tmp_path / "run"
    args = train_args(
        run_dir, f"family={CRASH_ID}", "env_kwargs={fail_after: 50}", "num_iterations=5", "checkpoint_every=1"
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The environment raised RuntimeError")
    assert "simulated physics crash after 50 steps" in err

    rows = read_csv(run_dir / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["post_return"])) for r in rows)
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["iteration"] == 2
    assert state["total_env_steps"] == 2 * STEPS_PER_ITERATION
    assert load_checkpoint(run_dir / "checkpoints" / "iter_000002.pt")["iteration"] == 2
    assert not any(p.name.startswith(".tmp-") for p in (run_dir / "checkpoints").iterdir())


def test_configs_command_prints_one_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs", "2d-navigation"]) == 0
    text = capsys.readouterr().out
    assert "family: Navigation2D" in text and "num_iterations: 500" in text
