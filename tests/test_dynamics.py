"""MuJoCo dynamics families: multipliers written into the model, no compounding, Gymnasium's
reward, task sampling, pickling, the env checker, the sampler and its masks."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from gymnasium.envs.mujoco.ant_v5 import AntEnv  # noqa: E402
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv  # noqa: E402
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv  # noqa: E402
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from helpers import replay_matches_sampler  # noqa: E402

import metarl  # noqa: E402,F401  (registers the families)
from metarl.envs.mujoco.base import quiet_model_compiler  # noqa: E402
from metarl.envs.mujoco.dynamics import (  # noqa: E402
    LOG_BASES,
    RAND_PARAMS,
    AntRandParamsEnv,
    DynamicsTask,
    HalfCheetahRandParamsEnv,
    HopperRandParamsEnv,
    Walker2dRandParamsEnv,
)
from metarl.errors import TaskNotSetError  # noqa: E402
from metarl.families import make_family  # noqa: E402
from metarl.policies import make_policy  # noqa: E402
from metarl.sampler import Sampler  # noqa: E402
from metarl.task_api import seed_family  # noqa: E402

# name: (family, Gymnasium v5 env, obs dim, action dim)
FAMILIES = {
    "HalfCheetahRandParams": (HalfCheetahRandParamsEnv, HalfCheetahEnv, 17, 6),
    "AntRandParams": (AntRandParamsEnv, AntEnv, 105, 8),
    "HopperRandParams": (HopperRandParamsEnv, HopperEnv, 11, 3),
    "Walker2dRandParams": (Walker2dRandParamsEnv, Walker2dEnv, 17, 6),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family(name: str, seed: int = 0, **kwargs: Any) -> tuple[Any, list[DynamicsTask]]:
    env = FAMILIES[name][0](**kwargs)
    seed_family(env, seed)
    return env, env.sample_tasks(2)


def actions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, dim)).astype(np.float32)


def rollout(env: Any, acts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in acts:
        obs, reward, terminated, _, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        if terminated:
            break
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize("name", FAMILIES)
def test_set_task_writes_default_times_multiplier_and_does_not_compound(name: str) -> None:
    env, (task_a, task_b) = family(name)
    defaults = {p: getattr(env.model, p).copy() for p in RAND_PARAMS}
    for task in (task_a, task_b, task_a, task_a):
        env.set_task(task)
        for p in RAND_PARAMS:
            expected = defaults[p] * np.asarray(getattr(task, p))
            np.testing.assert_array_equal(getattr(env.model, p), expected, err_msg=p)
            assert not np.array_equal(getattr(env.model, p), defaults[p]), p  # the task did change it
        # mj_setConst ran: derived constants follow the new masses.
        assert env.model.body_subtreemass[0] == pytest.approx(env.model.body_mass.sum(), rel=1e-12)
        assert env.model.body_subtreemass[0] != pytest.approx(defaults["body_mass"].sum(), rel=1e-3)
    # An all-ones task restores the defaults, derived constants included.
    fresh = FAMILIES[name][0]()
    env.set_task(DynamicsTask(**{p: np.ones_like(defaults[p]).tolist() for p in RAND_PARAMS}))
    for field in (
        "body_mass",
        "body_inertia",
        "dof_damping",
        "geom_friction",
        "body_subtreemass",
        "dof_invweight0",
        "body_invweight0",
        "actuator_acc0",
    ):
        np.testing.assert_array_equal(getattr(env.model, field), getattr(fresh.model, field), err_msg=field)


@pytest.mark.parametrize("name", FAMILIES)
def test_unit_task_is_the_gymnasium_env_and_a_random_task_is_not(name: str) -> None:
    cls, gym_cls, _, act_dim = FAMILIES[name]
    env = cls()
    env.set_task(DynamicsTask())  # every parameter at its default
    with quiet_model_compiler():
        ref = gym_cls()
    acts = actions(40, act_dim, seed=2)
    obs, rew = rollout(env, acts, seed=2)
    ref_obs, ref_rew = rollout(ref, acts, seed=2)
    assert np.array_equal(obs, ref_obs) and np.array_equal(rew, ref_rew)
    env.set_task(family(name)[1][0])
    obs, rew = rollout(env, acts, seed=2)
    assert np.array_equal(obs[0], ref_obs[0])  # same initial state ...
    assert not np.allclose(obs[1:6], ref_obs[1:6], atol=1e-3)  # ... different physics


@pytest.mark.parametrize("name", ["HalfCheetahRandParams", "HopperRandParams"])
def test_reward_is_gymnasium_forward_running_reward(name: str) -> None:
    env, tasks = family(name)
    env.set_task(tasks[1])
    env.reset(seed=3)
    dt = env.model.opt.timestep * env.frame_skip
    assert dt == pytest.approx(0.05 if name.startswith("HalfCheetah") else 0.008)
    for a in actions(5, FAMILIES[name][3], seed=3) * 1.5:  # partly out of range: the cost uses the clipped action
        x_before = float(env.data.qpos[0])
        _, reward, terminated, _, _ = env.step(a)
        v_x = (float(env.data.qpos[0]) - x_before) / dt
        a_sq = float(np.sum(np.clip(a, -1.0, 1.0).astype(np.float64) ** 2))
        if name.startswith("HalfCheetah"):
            expected = v_x - 0.1 * a_sq
        else:
            z, angle = env.data.qpos[1:3]
            healthy = z > 0.7 and abs(angle) < 0.2 and bool(np.all(np.abs(env.state_vector()[2:]) < 100))
            assert terminated == (not healthy)
            expected = v_x + float(healthy) - 1e-3 * a_sq
        assert reward == pytest.approx(expected, rel=0, abs=1e-6)  # Gymnasium sums float32 squares


@pytest.mark.parametrize("name", FAMILIES)
def test_tasks_come_from_the_env_rng(name: str) -> None:
    def draw(seed: int, global_seed: int) -> list[DynamicsTask]:
        env = FAMILIES[name][0]()
        seed_family(env, seed)
        np.random.seed(global_seed)
        return env.sample_tasks(3)

    a = draw(0, 1)
    assert draw(0, 2) == a
    assert draw(1, 1) != a
    assert a[0] != a[1]
    env = FAMILIES[name][0]()
    for p in RAND_PARAMS:
        assert np.asarray(getattr(a[0], p)).shape == getattr(env.model, p).shape, p
    assert pickle.loads(pickle.dumps(a)) == a


def test_multiplier_distribution() -> None:
    env = HalfCheetahRandParamsEnv()
    seed_family(env, 0)
    tasks = env.sample_tasks(200)
    for p in RAND_PARAMS:
        m = np.array([getattr(t, p) for t in tasks])
        exponents = np.log(m) / np.log(LOG_BASES[p])
        assert exponents.min() >= -3 and exponents.max() <= 3, p
        assert exponents.min() < -2.9 and exponents.max() > 2.9, p  # fills U(-3, 3)
        assert abs(exponents.mean()) < 0.1, p
    assert LOG_BASES == {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


def test_rand_params_and_log_scale_limit_are_switchable() -> None:
    env, tasks = family("HalfCheetahRandParams", rand_params=("body_mass",), log_scale_limit=1.0)
    assert tasks[0].body_inertia is None and tasks[0].dof_damping is None and tasks[0].geom_friction is None
    exponents = np.log(np.asarray(tasks[0].body_mass)) / np.log(1.5)
    assert np.all(np.abs(exponents) <= 1.0)
    defaults = {p: getattr(env.model, p).copy() for p in RAND_PARAMS}
    env.set_task(tasks[0])
    assert not np.array_equal(env.model.body_mass, defaults["body_mass"])
    for p in ("body_inertia", "dof_damping", "geom_friction"):
        np.testing.assert_array_equal(getattr(env.model, p), defaults[p], err_msg=p)
    with pytest.raises(ValueError, match="Unknown rand_params \\['body_size'\\]"):
        HalfCheetahRandParamsEnv(rand_params=("body_size",))
    with pytest.raises(ValueError, match="log_scale_limit"):
        HalfCheetahRandParamsEnv(log_scale_limit=-1.0)


def test_set_task_validates_and_accepts_mappings() -> None:
    env = HopperRandParamsEnv()
    nbody = env.model.nbody
    env.set_task({"body_mass": np.full(nbody, 2.0)})
    assert env.get_task() == DynamicsTask(body_mass=(2.0,) * nbody)
    np.testing.assert_array_equal(env.model.body_mass, 2.0 * HopperRandParamsEnv().model.body_mass)
    with pytest.raises(ValueError, match="body_mass multipliers have shape \\(3,\\)"):
        env.set_task(DynamicsTask(body_mass=(1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="finite and positive"):
        env.set_task(DynamicsTask(dof_damping=(0.0,) * env.model.nv))
    with pytest.raises(TypeError, match="DynamicsTask fields"):
        env.set_task({"gravity": 2.0})
    with pytest.raises(TypeError, match="expects a DynamicsTask"):
        env.set_task((1.0, 2.0))


@pytest.mark.parametrize("name", FAMILIES)
def test_reset_and_step_before_set_task_raise(name: str) -> None:
    env = FAMILIES[name][0]()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.reset()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.step(np.zeros(FAMILIES[name][3], dtype=np.float32))


@pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")  # unbounded by design
@pytest.mark.parametrize("name", FAMILIES)
def test_env_checker_passes_after_set_task(name: str) -> None:
    env, tasks = family(name)
    env.set_task(tasks[0])
    check_env(env, skip_render_check=True)
    assert env.get_task() == tasks[0]
    assert env.observation_space.shape == (FAMILIES[name][2],) and env.action_space.shape == (FAMILIES[name][3],)


@pytest.mark.parametrize("name", FAMILIES)
def test_pickled_env_keeps_model_task_and_state(name: str) -> None:
    env = gym.make(f"metarl/{name}-v0", rand_params=("body_mass", "dof_damping"))
    seed_family(env, 0)
    task = env.unwrapped.sample_tasks(1)[0]
    env.unwrapped.set_task(task)
    env.reset(seed=1)
    acts = actions(8, FAMILIES[name][3], seed=1)
    for a in acts[:3]:
        env.step(a)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.unwrapped.get_task() == task and copy.unwrapped.rand_params == ("body_mass", "dof_damping")
    for p in RAND_PARAMS:
        np.testing.assert_array_equal(getattr(copy.unwrapped.model, p), getattr(env.unwrapped.model, p), err_msg=p)
    np.testing.assert_array_equal(copy.unwrapped.default_params["body_mass"], env.unwrapped.default_params["body_mass"])
    for i, a in enumerate(acts[3:]):
        out, out_copy = env.step(a), copy.step(a)
        assert np.array_equal(out[0], out_copy[0]) and out[1:4] == out_copy[1:4], i


@pytest.mark.parametrize("name", FAMILIES)
def test_sampler_runs_the_family_through_the_gymnasium_vector_fallback(name: str) -> None:
    env = make_family(name)
    seed_family(env, 0)
    tasks = env.unwrapped.sample_tasks(2)
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh")
    sampler = Sampler(name, policy, horizon=10, seed=0)
    episodes = sampler.sample(policy.get_params(), tasks, episodes_per_task=2)
    sampler.close()
    _, _, obs_dim, act_dim = FAMILIES[name]
    t = episodes.rewards.shape[-1]
    assert 1 <= t <= 10 and t == int(episodes.mask.sum(-1).max())
    assert episodes.observations.shape == (2, 2, t, obs_dim) and episodes.actions.shape == (2, 2, t, act_dim)
    assert episodes.mask.shape == (2, 2, t)
    assert torch.isfinite(episodes.rewards[episodes.mask > 0]).all()
    if name == "HalfCheetahRandParams":
        assert t == 10 and bool((episodes.mask == 1).all())


@pytest.mark.parametrize("name", ["AntRandParams", "HopperRandParams", "Walker2dRandParams"])
def test_sampler_masks_episodes_from_their_termination_on(name: str) -> None:
    """Zero reset noise, so a fresh env replays each sampled episode exactly: the sampler's
    observations and rewards match it, and each mask ends at the step that terminated."""
    horizon = 40
    lengths = replay_matches_sampler(name, {}, horizon)
    assert min(lengths) < horizon  # some episode terminated early ...
    assert len(set(lengths)) > 1  # ... while the batch kept stepping others
