"""Success rates: recorded per step from ``info["success"]``, logged, evaluated (``user_families.WithSuccess``)."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY

from metarl.config import load_config
from metarl.episodes import Episodes
from metarl.evaluate import evaluate_run
from metarl.families import make_family
from metarl.logger import COLUMNS, SUCCESS_COLUMNS, read_csv
from metarl.runtime import build_policy
from metarl.sampler import Sampler
from metarl.task_api import reports_success, sample_tasks, seed_family
from metarl.trainer import Trainer

FAMILY = "user_families:WithSuccess"


def sample(family: str, horizon: int = 30) -> tuple[Episodes, list]:
    config = load_config("2d-navigation", [f"family={family}", f"horizon={horizon}", "hidden_sizes=[8]"])
    env = make_family(family)
    seed_family(env, 0)
    torch.manual_seed(0)
    policy = build_policy(config, env)
    tasks = sample_tasks(env, 4)
    return Sampler(family, policy, horizon, seed=3).sample(policy.get_params(), tasks, 5), tasks


def test_the_sampler_records_each_steps_success_and_episodes_succeed_at_any_step() -> None:
    episodes, tasks = sample(FAMILY)
    assert episodes.success is not None and episodes.success.shape == episodes.rewards.shape
    # The family's success is |position - goal| < 0.05 after the step: the next observation.
    goals = torch.tensor([t["goal"] for t in tasks]).view(4, 1, 1)
    after = episodes.observations[:, :, 1:, 0]
    expected = ((after - goals).abs() < 0.05).float()
    assert torch.equal(episodes.success[:, :, :-1], expected)
    assert 0 < expected.sum() < expected.numel()  # some steps succeed, not all
    per_episode = episodes.episode_success()
    assert per_episode is not None
    assert torch.equal(per_episode, (episodes.success > 0).any(-1).float())
    assert episodes.success_rate() == float(per_episode.mean())


def test_a_family_without_success_has_none_and_keeps_its_columns(tmp_path) -> None:
    episodes, _ = sample("user_families:GoodFamily")
    assert episodes.success is None and episodes.episode_success() is None
    assert not reports_success(make_family("user_families:GoodFamily"))
    Trainer(load_config("2d-navigation", [*TINY, "num_iterations=1"]), tmp_path / "run", progress=False).train()
    assert list(read_csv(tmp_path / "run" / "progress.csv")[0]) == COLUMNS


def test_training_logs_success_rates_resumes_and_evaluate_reports_them(tmp_path) -> None:
    overrides = [*TINY, f"family={FAMILY}", "horizon=30", "num_iterations=2", "checkpoint_every=1"]
    Trainer(load_config("2d-navigation", overrides), tmp_path / "run", progress=False).train()
    resumed = Trainer.resume(tmp_path / "run", num_iterations=3, progress=False)
    resumed.train()
    assert resumed.log_notes == []  # the success columns are the run's own header, not damage
    rows = read_csv(tmp_path / "run" / "progress.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == [*COLUMNS, *SUCCESS_COLUMNS]
    for r in rows:
        assert all(0.0 <= float(r[c]) <= 1.0 for c in SUCCESS_COLUMNS)
    assert any(float(r[c]) > 0 for r in rows for c in SUCCESS_COLUMNS)

    report = evaluate_run(tmp_path / "run", num_tasks=6, episodes_per_task=3, max_steps=1)
    assert [r["steps"] for r in report["success"]] == [0, 1]
    assert all(r["num_tasks"] == 6 and 0.0 <= r["mean"] <= 1.0 for r in report["success"])
    assert len(report["per_task_success"]) == 2 and len(report["per_task_success"][0]) == 6


def test_evaluation_caps_the_env_copies_of_a_family_without_a_batched_backend(monkeypatch) -> None:
    import metarl.evaluate as evaluate
    from metarl.adaptation import InnerLoop

    config = load_config("2d-navigation", [f"family={FAMILY}", "horizon=5", "hidden_sizes=[8]"])
    env = make_family(FAMILY)
    seed_family(env, 0)
    policy = build_policy(config, env)
    tasks = sample_tasks(env, 7)
    sampler = Sampler(FAMILY, policy, 5, seed=0)
    calls = []
    original = sampler.sample
    monkeypatch.setattr(sampler, "sample", lambda p, t, n: calls.append(len(t)) or original(p, t, n))
    monkeypatch.setattr(evaluate, "VECTOR_ENV_COPIES", 6)
    inner = InnerLoop(policy=policy, fast_lr=0.1, gamma=0.99, gae_lambda=1.0, normalize_advantages=True)
    returns, success = evaluate.adaptation_scores(policy, inner, sampler, tasks, 3, max_steps=1)
    assert returns.shape == (2, 7) and success is not None and success.shape == (2, 7)
    assert calls == [2, 2, 2, 2, 2, 2, 1, 1]  # 6 // 3 episodes = 2 tasks per call, two calls (steps 0, 1) each


def test_the_benchmark_reports_success_rates_and_their_one_step_claim(tmp_path) -> None:
    from metarl.benchmark import Budget, run_benchmark

    tiny = Budget("tiny", 1, 256, eval_tasks=3, eval_episodes=2, max_steps=1, lr_grid=(0.1,), lr_tasks=2)
    report = run_benchmark(
        "2d-navigation",
        tiny,
        seeds=[0],
        out=tmp_path / "bench",
        overrides=[f"family={FAMILY}", "horizon=10", "hidden_sizes=[8]", "meta_batch_size=2", "episodes_per_task=2"],
    )
    rates = report["per_seed"][0]["success"]
    assert set(rates) == {"maml", "pretrained", "oracle", "random"}
    assert all(len(rates[m]) == 2 and len(rates[m][0]) == 3 for m in rates)
    assert [r["steps"] for r in report["success_summary"]["maml"]] == [0, 1]
    assert set(report["claim_one_step_success"]) == {"pretrained", "random"}
    assert "paired_difference" in report["claim_one_step_success"]["random"]
    text = (tmp_path / "bench" / "benchmark.md").read_text()
    assert "### Success rate (episodes that succeed at any step)" in text
    assert "- MAML success rate after one step" in text
    # adaptation.png gets a success-rate panel beside the returns: two 6-inch panels at 100 dpi
    image = pytest.importorskip("matplotlib.image")
    assert image.imread(tmp_path / "bench" / "adaptation.png").shape[1] == 1200
