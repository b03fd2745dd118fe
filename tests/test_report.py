"""The README's generated result tables (metarl/report.py, scripts/readme_tables.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.report import ReportError, check_readme, render_benchmark, render_block, render_readme, update_readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def synthetic_report() -> dict:
    """Two seeds x two tasks, hand-made: every rendered number can be checked by eye."""

    def row(k: int, mean: float, low: float, high: float) -> dict:
        return {"steps": k, "mean": mean, "mean_ci": [low, high], "iqm": mean, "iqm_ci": [low, high]}

    returns = {
        "maml": [[-20.0, -10.0], [250.0, 270.0]],
        "pretrained": [[-14.0, -12.0], [-13.0, -11.0]],
        "oracle": [[300.0, 310.0], [301.0, 309.0]],
        "random": [[-30.0, -20.0], [-15.0, -5.0]],
    }
    per_seed = [
        {"seed": 0, "returns": returns, "learning_curve": {"iteration": [1, 2, 3], "pre_return": [0, 0, 0], "post_return": [0, 0, 0]}},
        {"seed": 1, "returns": {m: [[v + 2.0 for v in r] for r in rs] for m, rs in returns.items()}, "learning_curve": {"iteration": [1, 2, 3], "pre_return": [0, 0, 0], "post_return": [0, 0, 0]}},
    ]
    return {
        "family": "HalfCheetahDir",
        "budget": {"eval_tasks": 2, "eval_episodes": 5, "ppo_timesteps": 1_000_000},
        "config": {"horizon": 100, "meta_batch_size": 40, "episodes_per_task": 20},
        "summary": {
            "maml": [row(0, -14.0, -20.0, -8.0), row(1, 261.0, 250.0, 272.0)],
            "pretrained": [row(0, -12.0, -14.0, -10.0), row(1, -11.0, -13.0, -9.0)],
            "random": [row(0, -24.0, -30.0, -18.0), row(1, -9.0, -15.0, -3.0)],
            "oracle": [row(0, 306.0, 300.0, 312.0), row(1, 306.0, 301.0, 311.0)],
        },
        "claim_one_step": {
            "pretrained": {"maml_mean": 261.0, "other_mean": -11.0, "non_overlapping": True},
            "random": {"maml_mean": 261.0, "other_mean": -9.0, "non_overlapping": True},
        },
        "per_seed": per_seed,
    }


def test_render_benchmark_writes_every_number_from_the_report() -> None:
    text = render_benchmark(synthetic_report(), "benchmark-x")
    assert "HalfCheetahDir: 2 seed(s) x 2 held-out tasks x 5 episodes, horizon 100; MAML 3 meta-iterations of 40 tasks x 20 episodes" in text
    assert "PPO baselines 1,000,000 env steps each" in text and "`benchmarks/results/benchmark-x/`" in text
    assert "| MAML | -14.0 [-20.0, -8.0] | **+261.0 [+250.0, +272.0]** |" in text  # signed: some returns are positive
    assert "| random initialization | -24.0 [-30.0, -18.0] | -9.0 [-15.0, -3.0] |" in text
    assert "- After one step MAML +261.0 vs pretrained -11.0: 95% CIs do not overlap." in text
    # per-seed means after one step: seed 0 (250 + 270) / 2, seed 1 the same + 2
    assert "- Per-seed means after one step (seeds 0 / 1): maml +260.0 / +262.0; pretrained -12.0 / -10.0;" in text


def test_readme_is_in_sync_with_the_committed_results() -> None:
    assert check_readme(ROOT / "README.md", RESULTS) == [], "run: python scripts/readme_tables.py"


def test_a_hand_edited_number_is_found_and_rewritten(tmp_path: Path) -> None:
    original = (ROOT / "README.md").read_text()
    start = original.index("<!-- generated: benchmark benchmark-navigation2d -->")
    cell = original.index("| MAML | ", start)
    edited = original[:cell] + original[cell:].replace("| MAML | -", "| MAML | -1", 1)
    readme = tmp_path / "README.md"
    readme.write_text(edited)
    assert check_readme(readme, RESULTS) == ["benchmark benchmark-navigation2d"]
    assert update_readme(readme, RESULTS) == ["benchmark benchmark-navigation2d"]
    assert readme.read_text() == original
    assert render_readme(original, RESULTS) == original


def test_unknown_kind_and_missing_results_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="Unknown README block kind 'tables'"):
        render_block("tables", "x", RESULTS)
    with pytest.raises(ReportError, match="benchmark-nope/benchmark.json is missing"):
        render_block("benchmark", "benchmark-nope", RESULTS)
    with pytest.raises(ReportError, match="commit the training runs there first"):
        render_block("runs", "nope", tmp_path)


def test_script_check_exits_1_on_a_stale_readme_and_2_on_missing_results(tmp_path: Path) -> None:
    results = tmp_path / "results" / "benchmark-x"
    results.mkdir(parents=True)
    (results / "benchmark.json").write_text(json.dumps(synthetic_report()))
    readme = tmp_path / "README.md"
    readme.write_text("# t\n\n<!-- generated: benchmark benchmark-x -->\nold\n<!-- end generated -->\n")

    def script(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "scripts/readme_tables.py", "--readme", str(readme), "--results", str(tmp_path / "results"), *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = script("--check")
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "benchmark benchmark-x" in out.stderr
    out = script()
    assert out.returncode == 0 and "rewrote: benchmark benchmark-x" in out.stdout
    assert "**+261.0 [+250.0, +272.0]**" in readme.read_text()
    assert script("--check").returncode == 0
    readme.write_text("<!-- generated: benchmark benchmark-gone -->\n<!-- end generated -->\n")
    out = script("--check")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "is missing" in out.stderr and "Traceback" not in out.stderr
