"""Meta-World families (envs/metaworld.py) and the compatibility fix (envs/metaworld_compat.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

metaworld = pytest.importorskip("metaworld", reason="Meta-World is not installed (see the README's set-up)")

import mujoco  # noqa: E402

from metarl.check_env import check_family, format_results  # noqa: E402
from metarl.envs import metaworld_compat  # noqa: E402
from metarl.envs.metaworld import MetaWorldTask  # noqa: E402
from metarl.errors import FamilyConstructionError, TaskNotSetError  # noqa: E402
from metarl.families import make_family  # noqa: E402
from metarl.policies import make_policy  # noqa: E402
from metarl.sampler import Sampler  # noqa: E402
from metarl.task_api import reports_success, sample_test_tasks, seed_family  # noqa: E402


def ml1(env_name: str = "reach-v3"):
    env = make_family("MetaWorld-ML1", env_name=env_name)
    seed_family(env, 0)
    return env, env.unwrapped


def rollout(env, task, steps: int = 100, seed: int = 0) -> np.ndarray:
    env.unwrapped.set_task(task)
    obs, _ = env.reset()
    rng = np.random.default_rng(seed)
    out = [obs]
    for _ in range(steps):
        obs, reward, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        out += [obs, [reward]]
    return np.concatenate([np.ravel(x) for x in out])


# ----------------------------------------------------------------------------- the compatibility fix


def test_the_fix_writes_metaworlds_eleven_weld_values_and_leaves_the_rest_as_compiled() -> None:
    assert metaworld_compat.apply() == metaworld_compat.needed()
    assert metaworld_compat.apply() == metaworld_compat.needed()  # idempotent
    _, family = ml1()
    family.set_task(family.sample_tasks(1)[0])
    model = family._env.model
    welds = [i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD]
    assert welds, "Meta-World moves the hand through a mocap weld"
    compiled = mujoco.MjModel.from_xml_path(model_path(family))
    for i in welds:
        np.testing.assert_array_equal(model.eq_data[i, :11], metaworld_compat.WELD_DATA)
        np.testing.assert_array_equal(model.eq_data[i, 11:], compiled.eq_data[i, 11:])
    if metaworld_compat.needed():  # Meta-World's own method cannot run on this MuJoCo: why the fix exists
        from metaworld.sawyer_xyz_env import SawyerMocapBase

        original = SawyerMocapBase.__dict__["reset_mocap_welds"]
        assert original is metaworld_compat.reset_mocap_welds


def model_path(family) -> str:
    return family._env.fullpath


@pytest.mark.parametrize("env_name", ["reach-v3", "push-v3"])
def test_trajectories_do_not_depend_on_the_weld_entry_the_fix_leaves_alone(env_name: str) -> None:
    """On mujoco >= 3.17 the twelfth eq_data entry is new; the fix leaves it as compiled. Whatever it
    holds, 100 random steps are bit-identical, so the fix reproduces Meta-World's mujoco-3.3.0 setup."""
    env, family = ml1(env_name)
    task = family.sample_tasks(1)[0]
    family.set_task(task)
    model = family._env.model
    if model.eq_data.shape[1] <= 11:
        pytest.skip("this MuJoCo has Meta-World's own 11-entry eq_data")
    runs = []
    for value in (None, 0.0, 5.0):
        if value is not None:
            model.eq_data[:, 11] = value
        runs.append(rollout(env, task))
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


# ----------------------------------------------------------------------------- the families


def test_ml1_samples_distinct_train_goals_and_separate_test_goals() -> None:
    env, family = ml1()
    tasks = family.sample_tasks(20)
    assert len(set(tasks)) == 20 and all(t.split == "train" and t.env_name == "reach-v3" for t in tasks)
    assert len(family.sample_tasks(60)) == 60  # beyond the 50 goals: with replacement
    test = sample_test_tasks(env, 10)
    assert all(t.split == "test" for t in test)
    # A train and a test goal of the same index are different positions.
    first = rollout(env, MetaWorldTask("reach-v3", 0, "train"), steps=1)
    other = rollout(env, MetaWorldTask("reach-v3", 0, "test"), steps=1)
    assert not np.array_equal(first, other)
    assert reports_success(env)
    # What the oracle observes: the goal's object and target positions, Meta-World's rand_vec.
    task = tasks[0]
    assert len(task.positions) == 6 and task.to_array().shape == (6,)
    assert task == MetaWorldTask(task.env_name, task.goal, task.split)  # positions are not part of its identity
    family.set_task(task)
    np.testing.assert_array_equal(family._env._last_rand_vec, task.to_array())


def test_tasks_mean_the_same_in_every_process_that_builds_the_family() -> None:
    env_a, fam_a = ml1()
    env_b = make_family("MetaWorld-ML1", env_name="reach-v3")
    seed_family(env_b, 0)
    assert fam_a.sample_tasks(5) == env_b.unwrapped.sample_tasks(5)
    task = MetaWorldTask("reach-v3", 7, "train")
    np.testing.assert_array_equal(rollout(env_a, task, 20), rollout(env_b, task, 20))
    other = make_family("MetaWorld-ML1", env_name="reach-v3", benchmark_seed=1)
    assert not np.array_equal(rollout(env_a, task, 1), rollout(other, task, 1))  # another seed: other goals


def test_steps_clip_actions_report_success_and_bad_tasks_are_named() -> None:
    env, family = ml1()
    with pytest.raises(TaskNotSetError, match="set_task"):
        env.reset()
    family.set_task(MetaWorldTask("reach-v3", 3))
    obs, _ = env.reset()
    assert obs.shape == (39,) and np.all(obs[36:] == 0)  # the goal is hidden (ML)
    family.set_task(MetaWorldTask("reach-v3", 3))
    env.reset()
    obs_big, _, terminated, truncated, info = env.step(np.full(4, 50.0, dtype=np.float32))
    family.set_task(MetaWorldTask("reach-v3", 3))
    env.reset()
    obs_one, *_ = env.step(np.ones(4, dtype=np.float32))
    np.testing.assert_array_equal(obs_big, obs_one)  # clipped to [-1, 1]
    assert info["success"] in (0.0, 1.0) and not terminated and not truncated
    with pytest.raises(ValueError, match="no class 'push-v3'"):
        family.set_task(MetaWorldTask("push-v3", 0))
    with pytest.raises(ValueError, match=r"goal must be an integer in \[0, 50\)"):
        family.set_task(MetaWorldTask("reach-v3", 50))
    with pytest.raises(ValueError, match="split is 'train' or 'test'"):
        family.set_task(MetaWorldTask("reach-v3", 0, "val"))
    with pytest.raises(TypeError, match="expects a MetaWorldTask"):
        family.set_task(("reach-v3", 0))


def test_action_scale_divides_the_clipped_action() -> None:
    """``action_scale = S``: acting ``S * a`` is acting ``a`` on Meta-World's box, clipped at ``S``."""
    plain = make_family("MetaWorld-ML1", env_name="reach-v3")
    scaled = make_family("MetaWorld-ML1", env_name="reach-v3", action_scale=10.0)
    assert scaled.action_space.low.tolist() == [-10.0] * 4 and scaled.action_space.high.tolist() == [10.0] * 4
    task = MetaWorldTask("reach-v3", 5, "train")
    rng = np.random.default_rng(0)
    actions = np.clip(rng.normal(0.0, 0.5, (30, 4)), -1.2, 1.2).astype(np.float32)  # some outside [-1, 1]
    trajectories = []
    for env, scale in ((plain, 1.0), (scaled, 10.0)):
        env.unwrapped.set_task(task)
        obs, _ = env.reset()
        steps = [obs]
        for a in actions:
            obs, reward, *_ = env.step(a * np.float32(scale))
            steps += [obs, [reward]]
        trajectories.append(np.concatenate([np.ravel(x) for x in steps]))
    np.testing.assert_allclose(trajectories[1], trajectories[0], rtol=0, atol=1e-6)
    scaled.unwrapped.set_task(task)
    scaled.reset()
    obs_big, *_ = scaled.step(np.full(4, 50.0, dtype=np.float32))
    scaled.unwrapped.set_task(task)
    scaled.reset()
    obs_edge, *_ = scaled.step(np.full(4, 10.0, dtype=np.float32))
    np.testing.assert_array_equal(obs_big, obs_edge)  # clipped to [-S, S]
    with pytest.raises(FamilyConstructionError, match="action_scale must be a finite number > 0"):
        make_family("MetaWorld-ML1", env_name="reach-v3", action_scale=0)


def test_check_env_passes_on_ml1() -> None:
    results = check_family("MetaWorld-ML1", {"env_name": "push-v3"})
    assert all(r.ok for r in results), format_results(results)


def test_ml10_has_its_train_and_test_classes() -> None:
    env = make_family("MetaWorld-ML10")
    seed_family(env, 0)
    family = env.unwrapped
    assert len(family.class_names("train")) == 10 and len(family.class_names("test")) == 5
    assert not set(family.class_names("train")) & set(family.class_names("test"))
    tasks = family.sample_tasks(20)
    assert len(set(tasks)) == 20 and {t.env_name for t in tasks} <= set(family.class_names("train"))
    test = sample_test_tasks(env, 5)
    assert {t.env_name for t in test} <= set(family.class_names("test"))
    evaluation = sample_test_tasks(env, 200)  # Meta-World's protocol: 40 distinct goals of every test class
    assert len(set(evaluation)) == 200
    assert (
        sorted({t.env_name: sum(u.env_name == t.env_name for u in evaluation) for t in evaluation}.values()) == [40] * 5
    )
    with pytest.raises(FamilyConstructionError, match="does not accept env_kwargs {'env_name': 'reach-v3'}"):
        make_family("MetaWorld-ML10", env_name="reach-v3")


def test_the_sampler_records_metaworld_success() -> None:
    env, family = ml1()
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, (16,), "tanh")
    sampler = Sampler("MetaWorld-ML1", policy, horizon=40, seed=0, env_kwargs={"env_name": "reach-v3"})
    episodes = sampler.sample(policy.get_params(), family.sample_tasks(2), 2)
    assert episodes.success is not None and episodes.success.shape == (2, 2, 40)
    assert set(episodes.success.unique().tolist()) <= {0.0, 1.0}
