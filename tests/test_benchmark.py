"""`metarl benchmark`: PPO baselines, weight transfer, task observation, aggregation, smoke run."""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from metarl.benchmark import (
    BUDGETS,
    METHODS,
    PPO_RECIPES,
    Budget,
    baseline_file,
    claim,
    claim_text,
    format_table,
    get_budget,
    run_benchmark,
    summarize,
)
from metarl.checkpoint import save_checkpoint
from metarl.errors import CheckpointError
from metarl.families import make_family
from metarl.policies import GaussianMLPPolicy
from metarl.reference_methods import (
    NewTaskEachEpisode,
    TaskObservationEnv,
    load_baseline,
    policy_mean,
    save_baseline,
    sb3_to_metarl,
    task_vector,
    train_ppo,
)
from metarl.task_api import seed_family

pytest.importorskip("stable_baselines3")


@dataclass(frozen=True)
class _Task:
    a: float
    b: tuple[float, float]


class _ArrayTask:
    def to_array(self) -> list[float]:
        return [1.0, 2.0, 3.0]


def test_task_vector() -> None:
    np.testing.assert_array_equal(task_vector(_Task(1.5, (2.0, -1.0))), [1.5, 2.0, -1.0])
    np.testing.assert_array_equal(task_vector(_ArrayTask()), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(task_vector(0.25), [0.25])
    np.testing.assert_array_equal(task_vector({"b": 2.0, "a": [1.0, 0.5]}), [1.0, 0.5, 2.0])
    with pytest.raises(TypeError, match="to_array"):
        task_vector(object())


def test_task_observation_env_appends_the_task() -> None:
    env = TaskObservationEnv("Navigation2D")
    seed_family(env, 0)
    task = env.sample_tasks(1)[0]
    env.set_task(task)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4,) and env.observation_space.contains(obs)
    np.testing.assert_allclose(obs[2:], np.asarray(task.goal, dtype=np.float32))
    obs2, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(obs2[2:], obs[2:])
    assert np.isfinite(reward)
    clone = copy.deepcopy(env)  # the sampler copies the env for its vector path
    assert clone.get_task() == task
    # same task draws as the plain family under the same seed
    plain = make_family("Navigation2D")
    seed_family(plain, 5)
    seed_family(env, 5)
    assert env.sample_tasks(3) == plain.unwrapped.sample_tasks(3)


def test_new_task_each_episode_is_seeded() -> None:
    def goals(seed: int) -> list:
        env = NewTaskEachEpisode(make_family("Navigation2D"))
        env.reset(seed=seed)
        out = [env.unwrapped.get_task()]
        for _ in range(3):
            env.reset()
            out.append(env.unwrapped.get_task())
        return out

    a, b = goals(1), goals(1)
    assert a == b and len(set(a)) == 4 and goals(2) != a


def test_sb3_weights_load_into_the_metarl_policy_exactly() -> None:
    torch.set_num_threads(1)
    model = train_ppo("Navigation2D", horizon=10, timesteps=128, seed=0, hidden_sizes=(8, 8), n_envs=2)
    policy = sb3_to_metarl(model, (8, 8))
    obs = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    with torch.no_grad():
        sb3_mean = model.policy.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
    np.testing.assert_allclose(policy_mean(policy, obs), sb3_mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(policy.log_std.detach().numpy(), model.policy.log_std.detach().numpy())
    with pytest.raises(ValueError, match="wide"):
        sb3_to_metarl(model, (64, 64))


def test_normalized_ppo_folds_its_statistics_into_the_policy() -> None:
    """With ``normalize`` the copied policy acts on raw observations as PPO did on normalized ones."""
    torch.set_num_threads(1)
    model = train_ppo("Navigation2D", horizon=10, timesteps=256, seed=0, hidden_sizes=(8, 8), n_envs=2, normalize=True)
    vec = model.get_env()
    assert vec.obs_rms.count > 1 and not np.allclose(vec.obs_rms.var, 1.0)  # statistics were gathered
    policy = sb3_to_metarl(model, (8, 8))
    obs = np.random.default_rng(0).normal(scale=0.3, size=(6, 2)).astype(np.float32)
    with torch.no_grad():
        sb3_mean = model.policy.get_distribution(torch.as_tensor(vec.normalize_obs(obs))).distribution.mean.numpy()
        unfolded = model.policy.get_distribution(torch.as_tensor(obs)).distribution.mean.numpy()
    np.testing.assert_allclose(policy_mean(policy, obs), sb3_mean, rtol=1e-4, atol=1e-5)
    assert not np.allclose(unfolded, sb3_mean, atol=1e-4)  # the fold matters
    vec.clip_obs = 10.0
    with pytest.raises(ValueError, match="clipped its normalized observations"):
        sb3_to_metarl(model, (8, 8))


def test_a_saved_baseline_loads_as_the_same_policy(tmp_path) -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(5, 3, (8, 4), "tanh")
    with torch.no_grad():
        policy.log_std.fill_(-0.7)
    save_baseline(tmp_path / "b" / "oracle.pt", policy, {"method": "oracle", "timesteps": 256})
    loaded, info = load_baseline(tmp_path / "b" / "oracle.pt")
    assert info == {"method": "oracle", "timesteps": 256}
    obs = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.testing.assert_array_equal(policy_mean(loaded, obs), policy_mean(policy, obs))
    assert torch.equal(loaded.log_std, policy.log_std)
    with pytest.raises(CheckpointError, match="No saved baseline at"):
        load_baseline(tmp_path / "missing.pt")
    torch.save({"policy": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a metarl checkpoint"):
        load_baseline(tmp_path / "other.pt")
    save_checkpoint(tmp_path / "run.pt", {"iteration": 3, "policy": {}})  # a training checkpoint
    with pytest.raises(CheckpointError, match="is not a saved metarl baseline"):
        load_baseline(tmp_path / "run.pt")


def test_ppo_updates_every_rollout_steps_over_all_envs() -> None:
    torch.set_num_threads(1)
    model = train_ppo(
        "Navigation2D", horizon=10, timesteps=256, seed=0, hidden_sizes=(8, 8), n_envs=4, rollout_steps=64
    )
    assert model.n_steps * model.n_envs == 64  # 4 PPO updates for 256 steps, not 1
    assert model._n_updates == 4 * model.n_epochs
    with pytest.raises(ValueError, match="rollout_steps"):
        train_ppo("Navigation2D", horizon=10, timesteps=256, seed=0, hidden_sizes=(8, 8), n_envs=4, rollout_steps=2)


def _fake_per_seed(offsets: dict[str, float], seeds: int = 3, tasks: int = 30) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"returns": {m: [list(offsets[m] + k + rng.normal(0, 1, tasks)) for k in range(3)] for m in METHODS}}
        for _ in range(seeds)
    ]


def test_summary_and_claim() -> None:
    per_seed = _fake_per_seed({"maml": 10.0, "pretrained": 0.0, "oracle": 20.0, "random": -5.0})
    summary = summarize(per_seed, reps=200)
    assert [r["steps"] for r in summary["maml"]] == [0, 1, 2]
    assert summary["maml"][1]["mean"] == pytest.approx(np.mean([s["returns"]["maml"][1] for s in per_seed]))
    verdict = claim(summary)
    assert verdict["pretrained"]["non_overlapping"] and verdict["random"]["non_overlapping"]
    close = summarize(_fake_per_seed({"maml": 0.1, "pretrained": 0.0, "oracle": 20.0, "random": -5.0}), reps=200)
    assert not claim(close)["pretrained"]["non_overlapping"]
    table = format_table(summary, "t")
    assert "| maml |" in table and "1 step: mean [95% CI]" in table


def test_the_paired_difference_sees_through_the_spread_of_task_difficulty() -> None:
    """Tasks whose difficulty varies far more than the methods differ: the per-method CIs
    overlap, the interval of MAML minus the other on the same tasks excludes 0."""
    rng = np.random.default_rng(1)
    per_seed = []
    for _ in range(3):
        difficulty = rng.normal(0, 50, 40)  # shared by every method on a task
        per_seed.append(
            {
                "returns": {
                    m: [list(difficulty + offset + rng.normal(0, 1, 40)) for _ in range(2)]
                    for m, offset in {"maml": 5.0, "pretrained": 0.0, "oracle": 9.0, "random": -1.0}.items()
                },
                "success": {m: [list(rng.uniform(0, 1, 40)) for _ in range(2)] for m in METHODS},
            }
        )
    summary = summarize(per_seed, reps=300)
    verdict = claim(summary, per_seed=per_seed, reps=300)
    for other, gap in (("pretrained", 5.0), ("random", 6.0)):
        assert not verdict[other]["non_overlapping"]
        d = verdict[other]["paired_difference"]
        assert d["mean"] == pytest.approx(gap, abs=0.5) and d["mean_ci"][0] > 0
    assert "Paired over the same tasks, MAML minus pretrained: +" in claim_text(verdict)
    rates = summarize(per_seed, reps=50, key="success")
    assert all(0 <= r["mean"] <= 1 for r in rates["maml"])


def test_budgets_and_bad_arguments(tmp_path) -> None:
    assert get_budget("full").eval_tasks >= 40 and get_budget("full").eval_episodes >= 20
    with pytest.raises(ValueError, match="Unknown budget 'huge'"):
        get_budget("huge")
    with pytest.raises(ValueError, match="one MAML run per seed"):
        run_benchmark("2d-navigation", "smoke", seeds=[0, 1], out=tmp_path / "a", maml_runs=["x"])
    with pytest.raises(ValueError, match="distinct"):
        run_benchmark("2d-navigation", "smoke", seeds=[0, 0], out=tmp_path / "b")


TINY = Budget(
    "tiny",
    1,
    256,
    eval_tasks=3,
    eval_episodes=2,
    max_steps=1,
    lr_grid=(0.05, 0.2),
    lr_tasks=2,
    config_overrides=("meta_batch_size=2", "episodes_per_task=2"),
    ppo_normalize=True,
    ppo_batch_size=256,
)
"""A benchmark of seconds: one meta-iteration, 256 PPO steps, 3 held-out tasks."""


def test_smoke_benchmark_end_to_end(tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    tiny = TINY
    out = tmp_path / "bench"
    report = run_benchmark("2d-navigation", tiny, seeds=[0], out=out, overrides=["horizon=20", "hidden_sizes=[8]"])
    for name in ("benchmark.json", "benchmark.md", "adaptation.png", "learning_curve.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "benchmark.json").read_text())
    assert set(saved["per_seed"][0]["returns"]) == set(METHODS)
    assert all(np.array(saved["per_seed"][0]["returns"][m]).shape == (2, 3) for m in METHODS)
    assert saved["per_seed"][0]["step_sizes"]["pretrained"] in (0.05, 0.2)  # chosen on training tasks
    assert saved["per_seed"][0]["step_sizes"]["maml"] == 0.1  # MAML's own meta-training step
    assert report["summary"]["maml"][0]["mean"] == pytest.approx(np.mean(saved["per_seed"][0]["returns"]["maml"][0]))
    table = (out / "benchmark.md").read_text()
    assert "Training: MAML 1 meta-iterations (seeds 0); PPO pretrained and oracle 256 env steps each" in table
    one_step = np.mean(saved["per_seed"][0]["returns"]["pretrained"][1])
    assert f"- pretrained: {one_step:.2f}" in table  # per-seed means after one step
    pretrained, info = load_baseline(baseline_file(out, 0, "pretrained"))  # each trained PPO baseline is kept
    oracle, oracle_info = load_baseline(baseline_file(out, 0, "oracle"))
    assert (pretrained.obs_dim, oracle.obs_dim) == (2, 4)  # the oracle also observes the 2D goal
    assert (info["timesteps"], info["ppo_normalize"], oracle_info["method"]) == (256, True, "oracle")
    with pytest.raises(FileExistsError, match="never overwritten"):
        run_benchmark("2d-navigation", tiny, seeds=[0], out=out)
    # an existing MAML run is loaded instead of trained
    again = run_benchmark(
        "2d-navigation",
        tiny,
        seeds=[0],
        out=tmp_path / "again",
        overrides=["horizon=20", "hidden_sizes=[8]"],
        maml_runs=[str(out / "runs" / "maml-seed0")],
    )
    assert again["per_seed"][0]["returns"]["maml"] == saved["per_seed"][0]["returns"]["maml"]
    # ... and the PPO baselines of the first benchmark reused: their kept policies are evaluated
    # again, which on one machine gives the same returns
    capsys.readouterr()
    reused = run_benchmark(
        "2d-navigation",
        tiny,
        seeds=[0],
        out=tmp_path / "reused",
        overrides=["horizon=20", "hidden_sizes=[8]"],
        maml_runs=[str(out / "runs" / "maml-seed0")],
        baselines_from=out,
    )
    assert reused["per_seed"][0]["returns"] == saved["per_seed"][0]["returns"]
    assert reused["per_seed"][0]["step_sizes"] == saved["per_seed"][0]["step_sizes"]
    assert reused["per_seed"][0]["baselines_reused"] == ["pretrained", "oracle"]
    assert "baselines_returns_copied" not in reused["per_seed"][0]
    assert "random_reevaluation_gap" not in reused["per_seed"][0]  # nothing copied: nothing to check
    said = capsys.readouterr().err
    assert "PPO oracle loaded from" in said and "(reused from --baselines-from)" in said and "training PPO" not in said
    assert "evaluating pretrained" in said  # evaluated on this machine
    for m in ("pretrained", "oracle"):  # the reused policies are copied along
        assert baseline_file(tmp_path / "reused", 0, m).read_bytes() == baseline_file(out, 0, m).read_bytes()
    assert reused["baselines_from"] == str(out)
    # a benchmark that kept no policies (written before they were kept): its PPO returns are
    # copied, and the random baseline, evaluated again, must come out the same
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    shutil.rmtree(legacy / "baselines")
    copied = run_benchmark(
        "2d-navigation", TINY, [0], tmp_path / "copied", ["horizon=20", "hidden_sizes=[8]"],
        maml_runs=[str(out / "runs" / "maml-seed0")], baselines_from=legacy,
    )  # fmt: skip
    assert copied["per_seed"][0]["returns"] == saved["per_seed"][0]["returns"]
    assert copied["per_seed"][0]["baselines_returns_copied"] == ["pretrained", "oracle"]
    assert copied["per_seed"][0]["random_reevaluation_gap"] == 0.0  # same host, same evaluation
    assert "random_reevaluation_gap" not in saved["per_seed"][0]
    # ... refused, before MAML's evaluation is spent, when the random baseline no longer comes out the same
    changed = tmp_path / "changed"
    shutil.copytree(legacy, changed)
    written = json.loads((changed / "benchmark.json").read_text())
    written["per_seed"][0]["returns"]["random"][0][0] += 10.0
    (changed / "benchmark.json").write_text(json.dumps(written))
    capsys.readouterr()
    refused = r"Seed 0: the random baseline evaluated now differs .* \(largest difference 10,"
    with pytest.raises(ValueError, match=refused):
        run_benchmark(
            "2d-navigation", tiny, [0], tmp_path / "refused", ["horizon=20", "hidden_sizes=[8]"],
            maml_runs=[str(out / "runs" / "maml-seed0")], baselines_from=changed,
        )  # fmt: skip
    progress = capsys.readouterr().err
    assert "evaluating random" in progress and "evaluating maml" not in progress
    with pytest.raises(ValueError, match="its horizon is 20, this benchmark's 30; the baselines would differ"):
        run_benchmark(
            "2d-navigation", tiny, [0], tmp_path / "h", ["horizon=30", "hidden_sizes=[8]"], baselines_from=out
        )
    with pytest.raises(ValueError, match=r"has none of seeds 1, 2 \(it has \[0\]\)"):
        run_benchmark(
            "2d-navigation", tiny, [1, 2], tmp_path / "s", ["horizon=20", "hidden_sizes=[8]"], baselines_from=out
        )
    # a seed the earlier benchmark lacks gets its baselines trained; the seeds it has reuse theirs
    added = run_benchmark(
        "2d-navigation",
        tiny,
        [0, 1],
        tmp_path / "added",
        ["horizon=20", "hidden_sizes=[8]"],
        maml_runs=[str(out / "runs" / "maml-seed0"), str(out / "runs" / "maml-seed0")],
        baselines_from=out,
    )
    assert added["per_seed"][0]["baselines_reused"] == ["pretrained", "oracle"]
    assert baseline_file(tmp_path / "added", 1, "oracle").read_bytes() != baseline_file(out, 0, "oracle").read_bytes()
    assert "baselines_reused" not in added["per_seed"][1]
    assert added["per_seed"][0]["returns"] == saved["per_seed"][0]["returns"]
    assert added["per_seed"][1]["returns"]["oracle"] != saved["per_seed"][0]["returns"]["oracle"]
    # only the oracle's steps raised: the pretrained baseline is reused, the oracle trained again
    stronger = run_benchmark(
        "2d-navigation",
        tiny,
        [0],
        tmp_path / "oracle",
        ["horizon=20", "hidden_sizes=[8]"],
        maml_runs=[str(out / "runs" / "maml-seed0")],
        baselines_from=out,
        oracle_timesteps=512,
    )
    assert stronger["per_seed"][0]["baselines_reused"] == ["pretrained"]
    assert stronger["budget"]["oracle_timesteps"] == 512 and stronger["budget"]["ppo_timesteps"] == 256
    assert stronger["per_seed"][0]["returns"]["pretrained"] == saved["per_seed"][0]["returns"]["pretrained"]
    assert stronger["per_seed"][0]["returns"]["oracle"] != saved["per_seed"][0]["returns"]["oracle"]
    assert "PPO pretrained 256 and oracle 512 env steps per seed" in (tmp_path / "oracle" / "benchmark.md").read_text()
    with pytest.raises(ValueError, match="trained with ppo_normalize=True, .* has False; pass --ppo-recipe normalized"):
        run_benchmark(
            "2d-navigation", tiny, [0], tmp_path / "recipe", ["horizon=20", "hidden_sizes=[8]"],
            baselines_from=out, ppo_recipe="plain",
        )  # fmt: skip
    assert replace(tiny, ppo_normalize=False, ppo_batch_size=64) == replace(tiny, **PPO_RECIPES["plain"])
    with pytest.raises(ValueError, match="Unknown PPO recipe 'tuned'; choose one of normalized, plain"):
        run_benchmark("2d-navigation", tiny, [0], tmp_path / "r2", ppo_recipe="tuned")
    with pytest.raises(ValueError, match="budget's ppo_timesteps is 256"):
        run_benchmark(
            "2d-navigation",
            tiny,
            [0],
            tmp_path / "p",
            ["horizon=20", "hidden_sizes=[8]"],
            ppo_timesteps=512,
            baselines_from=out,
        )


def test_an_interrupted_benchmark_keeps_its_finished_seeds_and_resumes_with_the_same_results(
    tmp_path, monkeypatch, capsys
) -> None:
    import metarl.benchmark as bench

    torch.set_num_threads(1)
    small = ["horizon=20", "hidden_sizes=[8]"]
    whole = run_benchmark("2d-navigation", TINY, [0, 1], tmp_path / "whole", small)
    # seed 1 crashes in its first evaluation, after its MAML run and PPO baselines were trained
    calls = {"n": 0}
    evaluate = bench.adaptation_scores

    def crash_on_the_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # seed 0 evaluates its 4 methods first
            raise RuntimeError("simulated crash")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(bench, "adaptation_scores", crash_on_the_fifth)
    out = tmp_path / "bench"
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_benchmark("2d-navigation", TINY, [0, 1], out, small)
    said = capsys.readouterr().err
    assert f"seed(s) 1 failed; the finished seeds (0) are kept in {out / 'seeds'}" in said
    assert "run the same command with --resume" in said
    assert (out / "seeds" / "seed0.json").is_file() and not (out / "seeds" / "seed1.json").exists()
    assert baseline_file(out, 1, "oracle").is_file()
    monkeypatch.setattr(bench, "adaptation_scores", evaluate)
    with pytest.raises(FileExistsError, match=r"unfinished benchmark \(seeds finished: 0\); continue it .* --resume"):
        run_benchmark("2d-navigation", TINY, [0, 1], out, small)
    with pytest.raises(ValueError, match=r"other settings \(budget ppo_timesteps: 256 before, 512 now\)"):
        run_benchmark("2d-navigation", TINY, [0, 1], out, small, ppo_timesteps=512, resume=True)
    with pytest.raises(ValueError, match="holds no unfinished benchmark"):
        run_benchmark("2d-navigation", TINY, [0, 1], tmp_path / "never", small, resume=True)
    resumed = run_benchmark("2d-navigation", TINY, [0, 1], out, small, resume=True)
    said = capsys.readouterr().err
    assert "benchmark seed 0: kept from the interrupted benchmark" in said and "seed 0: training" not in said
    assert f"PPO pretrained loaded from {baseline_file(out, 1, 'pretrained')}" in said
    assert "benchmark seed 1: continuing MAML" in said and "training PPO" not in said
    # the interrupted and resumed benchmark gives the uninterrupted one's numbers
    for got, want in zip(resumed["per_seed"], whole["per_seed"]):
        assert got["returns"] == want["returns"] and got["step_sizes"] == want["step_sizes"]
        assert got["learning_curve"]["iteration"] == want["learning_curve"]["iteration"]
    assert resumed["resumed"] == {"kept_seeds": [0]} and "resumed" not in whole
    assert not (out / "seeds").exists() and (out / "benchmark.md").is_file()
    with pytest.raises(FileExistsError, match="never overwritten"):
        run_benchmark("2d-navigation", TINY, [0, 1], out, small, resume=True)


def test_seeds_in_parallel_a_failing_seed_stops_no_other_and_the_finished_ones_are_kept(
    tmp_path, monkeypatch, capsys
) -> None:
    import multiprocessing

    import metarl.benchmark as bench

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the patched run_seed reaches the workers only when they are forked")
    run_seed = bench.run_seed

    def seed_1_fails(config, budget, seed, *args):
        if seed == 1:
            raise ValueError("seed 1 is broken")
        return run_seed(config, budget, seed, *args)

    monkeypatch.setattr(bench, "run_seed", seed_1_fails)  # the workers are forked: they see it
    out = tmp_path / "bench"
    with pytest.raises(ValueError, match="seed 1 is broken"):
        run_benchmark("2d-navigation", TINY, [0, 1], out, ["horizon=20", "hidden_sizes=[8]"], jobs=2)
    assert "seed(s) 1 failed; the finished seeds (0) are kept" in capsys.readouterr().err
    assert json.loads((out / "seeds" / "seed0.json").read_text())["seed"] == 0


def test_learning_curve_draws_a_line_per_seed(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from metarl.plots import plot_benchmark as plot

    drawn: list[str] = []
    original = matplotlib.axes.Axes.plot

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        drawn.append(kwargs.get("label", ""))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", record)
    curve = {"iteration": [1, 2, 3], "pre_return": [-3.0, -2.0, -1.0], "post_return": [-2.0, 0.0, 1.0]}
    per_seed = [{"seed": s, "learning_curve": curve} for s in (0, 1, 2)]
    summary = {"maml": [{"steps": 0, "mean": 0.0, "mean_ci": [-1.0, 1.0]}]}
    paths = plot(summary, per_seed, tmp_path, "T", labels={"maml": "maml (ProMP)"})
    assert [p.name for p in paths] == ["adaptation.png", "learning_curve.png"]
    assert "maml (ProMP)" in drawn and "maml" not in drawn
    for s in (0, 1, 2):
        assert f"seed {s}, after one step" in drawn and f"seed {s}, before adaptation" in drawn
    assert "mean over seeds, after one step" in drawn


def test_budget_table_is_complete() -> None:
    assert set(BUDGETS) == {"smoke", "full", "metaworld-ml1", "metaworld-ml10"}
    # Meta-World's evaluation: 40 test goals per test class (ML1 has one, ML10 and ML45 five)
    assert BUDGETS["metaworld-ml1"].eval_tasks == 40 and BUDGETS["metaworld-ml10"].eval_tasks == 200


def test_cli_benchmarks_a_family_defined_in_the_test_suite(tmp_path, capsys) -> None:
    """`metarl benchmark` on tests/user_families.py:GoodFamily (no metarl code knows it)."""
    from metarl.cli import main

    out = tmp_path / "bench"
    args = ["benchmark", "--budget", "smoke", "--out", str(out), "--ppo-timesteps", "256",
            "--set", "family=user_families:GoodFamily", "horizon=10", "hidden_sizes=[8]",
            "env_kwargs={goal_scale: 2.0}"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| maml |" in printed and "| oracle |" in printed
    report = json.loads((out / "benchmark.json").read_text())
    assert report["family"] == "user_families:GoodFamily" and report["config"]["env_kwargs"] == {"goal_scale": 2.0}
    assert main(args) == 2  # never overwrites
    assert "never overwritten" in capsys.readouterr().err


def test_cli_benchmark_rejects_bad_input(tmp_path, capsys) -> None:
    from metarl.cli import main

    assert main(["benchmark", "--out", str(tmp_path / "x"), "--seeds", "0", "1", "--maml-runs", "a"]) == 2
    assert "one MAML run per seed" in capsys.readouterr().err
    assert main(["benchmark", "--out", str(tmp_path / "y"), "--set", "family=NoSuchFamily"]) == 2
    assert "Unknown task family 'NoSuchFamily'" in capsys.readouterr().err
    assert main(["benchmark", "--resume"]) == 2
    assert "error: --resume continues the benchmark in --out" in capsys.readouterr().err
    assert main(["benchmark", "--resume", "--out", str(tmp_path / "z"), "--budget", "smoke"]) == 2
    assert "holds no unfinished benchmark" in capsys.readouterr().err


def test_ctrl_c_during_a_benchmark_says_what_is_kept_and_how_to_resume(tmp_path, monkeypatch, capsys) -> None:
    import metarl.benchmark as bench
    from metarl.cli import main

    evaluate, calls = bench.adaptation_scores, {"n": 0}

    def ctrl_c_on_the_fifth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # seed 0 is done, seed 1 is evaluating
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(bench, "adaptation_scores", ctrl_c_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark("2d-navigation", TINY, [0, 1], tmp_path / "b", ["horizon=20", "hidden_sizes=[8]"])
    assert f"benchmark: interrupted; the finished seeds (0) are kept in {tmp_path / 'b' / 'seeds'}. Run the same " \
        "command with --resume" in capsys.readouterr().err  # fmt: skip
    monkeypatch.setattr("metarl.cli.run_benchmark", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["benchmark", "--out", str(tmp_path / "c")]) == 130
    assert "interrupted: the last checkpoint and the logs are intact; continue with the same command plus --resume." \
        in capsys.readouterr().err  # fmt: skip
    assert main(["benchmark"]) == 130  # the default --out has a timestamp: the hint names it
    assert re.search(r"plus --out runs/benchmark-2d-navigation-smoke-\d{8}-\d{6} --resume\.", capsys.readouterr().err)


def test_choose_step_size_picks_the_best_one_step_return(monkeypatch) -> None:
    """The baseline's step size is the grid value with the highest one-step return on training tasks."""
    import metarl.benchmark as bench
    from metarl.config import load_config
    from metarl.policies import GaussianMLPPolicy

    seen = []

    def fake_returns(policy, learner, sampler, tasks, episodes, max_steps):
        lr = learner.fast_lr
        seen.append((lr, len(tasks), episodes, max_steps))
        return np.array([[0.0] * len(tasks), [-((lr - 0.3) ** 2)] * len(tasks)])  # best at 0.3

    monkeypatch.setattr(bench, "adaptation_returns", fake_returns)
    cfg = load_config("2d-navigation", ["hidden_sizes=[8]"])
    best, scores = bench.choose_step_size(
        GaussianMLPPolicy(2, 2, (8,)),
        cfg,
        make_family("Navigation2D"),
        (0.1, 0.3, 1.0),
        num_tasks=3,
        episodes=2,
        seed=0,
    )
    assert best == 0.3 and set(scores) == {"0.1", "0.3", "1.0"}
    assert [s[0] for s in seen] == [0.1, 0.3, 1.0] and all(s[1:] == (3, 2, 1) for s in seen)
    assert bench.choose_step_size(GaussianMLPPolicy(2, 2, (8,)), cfg, make_family("Navigation2D"), (0.5,), 3, 2, 0) == (
        0.5,
        {},
    )


def test_benchmark_md_names_the_meta_learner_of_the_runs() -> None:
    from metarl.benchmark import describe_budget, learner_label, maml_labels
    from metarl.learners import LEARNER_LABELS, LEARNERS

    assert set(LEARNER_LABELS) == set(LEARNERS)
    per_seed = _fake_per_seed({"maml": 10.0, "pretrained": 0.0, "oracle": 20.0, "random": -5.0})
    assert learner_label(per_seed) == "MAML" and maml_labels(per_seed) == {}  # results from before it was recorded
    for i, s in enumerate(per_seed):
        s.update(seed=i, maml_config={"learner": "promp"}, learning_curve={"iteration": [1, 2]})
    assert learner_label(per_seed) == "ProMP"
    summary = summarize(per_seed, reps=50)
    assert "| maml (ProMP) |" in format_table(summary, "t", maml_labels(per_seed))
    verdict = claim(summary, per_seed=per_seed, reps=50)
    assert "- ProMP after one step" in claim_text(verdict, learner="ProMP")
    assert "ProMP minus pretrained" in claim_text(verdict, learner="ProMP")
    assert describe_budget(per_seed, get_budget("smoke")).startswith("Training: ProMP 2/2/2 meta-iterations")
    per_seed[0]["maml_config"] = {"learner": "maml-trpo"}
    assert learner_label(per_seed) == "MAML/ProMP"


def test_a_reused_benchmarks_random_baseline_may_differ_by_rounding_not_by_a_changed_evaluation() -> None:
    """Another CPU's rounding moves a return by ~1e-5 of itself (what a re-evaluation on another
    host measured); a changed evaluation by percents, or a different layout, is refused."""
    from metarl.benchmark import check_reevaluation

    before = [[513.49, 786.47], [812.36, -20.0]]
    assert check_reevaluation(0, before, before) == 0.0
    rounded = [[513.49, 786.47 + 0.04], [812.36 - 0.03, -20.0]]
    assert check_reevaluation(0, rounded, before) == pytest.approx(0.04)
    with pytest.raises(ValueError, match=r"Seed 3: the random baseline evaluated now differs .*largest difference 8"):
        check_reevaluation(3, [[513.49, 786.47], [820.36, -20.0]], before)
    with pytest.raises(ValueError, match="shapes"):
        check_reevaluation(0, [[513.49, 786.47]], before)
