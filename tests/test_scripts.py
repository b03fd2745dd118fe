"""Smoke tests of the scripts and benchmarks with tiny budgets (their outputs are checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["meta_batch_size=2", "episodes_per_task=10", "horizon=10", "hidden_sizes=[8]", "cg_iters=2"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_check_cuda_script_runs_its_checks_with_cpu_as_device():
    out = run("scripts/check_cuda.py", "--device", "cpu", "--set", *TINY)
    assert out.returncode == 0, out.stderr
    assert "max abs parameter diff 0.00e+00" in out.stdout
    assert "cpu path OK" in out.stdout


def test_meta_iteration_benchmark_writes_its_results(tmp_path):
    out = run(
        "benchmarks/bench_meta_iteration.py",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--out",
        str(tmp_path),
        "--set",
        *TINY,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "meta_iteration.json").read_text())
    assert len(report["variants"]) == 5
    for variant in report["variants"].values():
        assert variant["seconds_per_iteration"] > 0
        assert variant["seconds_per_iteration"] >= variant["sample_seconds"]
    assert "| variant |" in (tmp_path / "meta_iteration.md").read_text()


def test_subsample_learning_benchmark_writes_curves(tmp_path):
    out = run(
        "benchmarks/bench_subsample_learning.py",
        "--iterations",
        "2",
        "--subsample",
        "1",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--set",
        *TINY,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "subsample_learning.json").read_text())
    assert set(report["curves"]) == {"1", "2"}
    assert all(len(c["post_return"]) == 2 for c in report["curves"].values())


def test_reproducibility_benchmark_reports_identical_logs(tmp_path):
    out = run("benchmarks/bench_reproducibility.py", "--iterations", "2", "--out", str(tmp_path), "--set", *TINY)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "reproducibility.json").read_text())
    assert report["same_seed_identical_logs"] is True
    assert report["other_seed_differs"] is True
    assert report["post_return_seed0_run1"] == report["post_return_seed0_run2"]


def test_benchmark_script_runs_the_smoke_budget(tmp_path):
    pytest.importorskip("stable_baselines3")
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "benchmark.py"),
        "--budget",
        "smoke",
        "--out",
        str(tmp_path / "b"),
        "--ppo-timesteps",
        "256",
        "--set",
        "horizon=20",
        "hidden_sizes=[8]",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| pretrained |" in result.stdout and (tmp_path / "b" / "benchmark.json").is_file()


def test_sinusoid_example_runs(tmp_path):
    out = run("examples/sinusoid.py", "--iterations", "20", "--eval-tasks", "5")
    assert out.returncode == 0, out.stderr
    assert "maml: query MSE after 0..10 steps" in out.stdout and "pretrained: query MSE" in out.stdout


def test_train_from_a_script_example_stops_through_its_callback(tmp_path):
    run_dir = tmp_path / "run"
    small = ["meta_batch_size=4", "episodes_per_task=4", "hidden_sizes=[16]", "torch_threads=1"]
    out = run(
        "examples/train_navigation.py",
        "--iterations",
        "3",
        "--run-dir",
        str(run_dir),
        "--stop-at",
        "-1000",
        "--set",
        *small,
    )
    assert out.returncode == 0, out.stderr
    assert "trained 1 iterations" in out.stdout  # the callback stopped the run after iteration 1
    assert (run_dir / "checkpoints" / "iter_000001.pt").is_file() and (run_dir / "eval.json").is_file()
    assert "held-out return after 1 step(s)" in out.stdout


def test_threads_under_load_benchmark_writes_ratios(tmp_path):
    tiny = ["meta_batch_size=2", "episodes_per_task=4", "horizon=10", "hidden_sizes=[8]", "cg_iters=2"]
    args = ["--iterations", "1", "--warmup", "0", "--rounds", "1", "--threads", "1", "--out", str(tmp_path)]
    out = run("benchmarks/bench_threads_under_load.py", *args, "--set", *tiny)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "threads_under_load.json").read_text())
    r = report["results"]["1"]
    assert r["quiet_median"] > 0 and r["loaded_median"] > 0 and r["ratio"] == r["loaded_median"] / r["quiet_median"]
    assert "| 1 |" in (tmp_path / "threads_under_load.md").read_text()
