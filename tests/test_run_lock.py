"""A run directory is locked while a process writes to it (metarl/run_lock.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY

from metarl.cli import main
from metarl.config import load_config
from metarl.errors import RunLockedError
from metarl.logger import read_csv
from metarl.run_lock import RunLock
from metarl.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_a_second_writer_is_refused_and_the_lock_is_released_after(tmp_path) -> None:
    run = tmp_path / "run"
    with RunLock(run, "training"):
        with pytest.raises(RunLockedError, match=r"is in use by another metarl process \(pid \d+, training since"):
            Trainer(load_config("2d-navigation", TINY + ["num_iterations=1"]), run, progress=False).train()
        assert not (run / "progress.csv").exists()
    Trainer(load_config("2d-navigation", TINY + ["num_iterations=1"]), run, progress=False).train()  # free again
    assert len(read_csv(run / "progress.csv")) == 1


def test_a_resume_while_the_run_is_written_is_one_error_line_and_changes_nothing(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    Trainer(load_config("2d-navigation", TINY + ["num_iterations=2"]), run, progress=False).train()
    before = snapshot(run)
    with RunLock(run, "training"):
        code = main(["train", "--resume", str(run), "--iterations", "4", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        code == 2 and len(err) == 1 and err[0].startswith("error: ") and "is in use by another metarl process" in err[0]
    )
    assert snapshot(run) == before


def test_a_benchmark_folder_in_use_is_refused(tmp_path) -> None:
    from metarl.benchmark import run_benchmark

    with RunLock(tmp_path / "bench", "benchmark"):
        with pytest.raises(RunLockedError, match="benchmark since"):
            run_benchmark("2d-navigation", "smoke", out=tmp_path / "bench")


def test_the_lock_of_a_killed_run_is_gone_and_a_concurrent_resume_was_refused(tmp_path, capsys) -> None:
    """A real second process: `metarl train` holds the lock; a resume meanwhile is refused;
    after kill -9 (no clean-up) the run resumes."""
    run = tmp_path / "run"
    args = [
        "--config",
        "2d-navigation",
        "--set",
        *TINY,
        "num_iterations=100000",
        "checkpoint_every=1",
        "--run-dir",
        str(run),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl.cli", "train", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((run / "progress.csv").exists() and len(read_csv(run / "progress.csv")) >= 2):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the training did not start"
            time.sleep(0.2)
        assert main(["train", "--resume", str(run), "--no-progress"]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done = len(read_csv(run / "progress.csv"))
    assert main(["train", "--resume", str(run), "--iterations", str(done + 1), "--no-progress"]) == 0
    rows = read_csv(run / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))  # no duplicated iteration


def test_kill_9_at_random_points_then_resume_is_bit_identical(tmp_path) -> None:
    """Kill a training process twice at random rows, resume each time: the final policy and the
    CSV equal an uninterrupted run's (the checkpoint carries every RNG)."""
    import random

    import torch

    from metarl.logger import TIMING_COLUMNS

    overrides = [*TINY, "meta_batch_size=8", "episodes_per_task=8", "horizon=50", "num_iterations=30"]
    overrides += ["checkpoint_every=1", "seed=11"]
    Trainer(load_config("2d-navigation", overrides), tmp_path / "whole", progress=False).train()
    run = tmp_path / "killed"
    rng = random.Random(0)
    base = [sys.executable, "-m", "metarl.cli", "train", "--no-progress"]
    first = [*base, "--config", "2d-navigation", "--set", *overrides, "--run-dir", str(run)]
    kills = 0
    for argv in (first, [*base, "--resume", str(run)]):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = len(read_csv(run / "progress.csv")) if (run / "progress.csv").exists() else 0
        target = done + rng.randint(2, 6)  # well before iteration 30
        deadline = time.monotonic() + 120
        while proc.poll() is None and not (
            (run / "progress.csv").exists() and len(read_csv(run / "progress.csv")) >= target
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if proc.poll() is None:
            time.sleep(rng.random() * 0.3)  # somewhere inside the next iteration (or its checkpoint)
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 1
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]

    assert strip(read_csv(run / "progress.csv")) == strip(read_csv(tmp_path / "whole" / "progress.csv"))


def test_a_failure_before_anything_is_written_leaves_no_empty_folder(tmp_path) -> None:
    """A folder the lock made is removed when the guarded block raises with nothing written
    there; a folder that existed before, or one with a file in it, stays."""
    new = tmp_path / "new"
    with pytest.raises(ValueError, match="bad config"):
        with RunLock(new):
            raise ValueError("bad config")
    assert not new.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError):
        with RunLock(existing):
            raise ValueError("bad config")
    assert existing.is_dir()
    written = tmp_path / "written"
    with pytest.raises(ValueError):
        with RunLock(written):
            (written / "config.yaml").write_text("seed: 0\n")
            raise ValueError("later")
    assert (written / "config.yaml").exists()
    with RunLock(tmp_path / "ok"):
        pass
    assert (tmp_path / "ok").is_dir()  # a block that ends normally keeps its folder
