"""MuJoCo locomotion families: rewards recomputed from the simulator state, agreement with
Gymnasium's v5 envs, task sampling, pickling, the env checker, registration, the sampler."""

from __future__ import annotations

import ctypes
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from gymnasium.envs.mujoco.ant_v5 import AntEnv  # noqa: E402
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from helpers import replay_matches_sampler  # noqa: E402

import metarl  # noqa: E402,F401  (registers the families)
from metarl.envs.mujoco.base import quiet_model_compiler  # noqa: E402
from metarl.envs.mujoco.locomotion import (  # noqa: E402
    AntDir2DEnv,
    AntDirEnv,
    AntGoalEnv,
    AntVelEnv,
    Direction2DTask,
    DirectionTask,
    GoalTask,
    HalfCheetahDirEnv,
    HalfCheetahVelEnv,
    VelocityTask,
)
from metarl.errors import TaskNotSetError  # noqa: E402
from metarl.families import make_family  # noqa: E402
from metarl.policies import make_policy  # noqa: E402
from metarl.sampler import Sampler  # noqa: E402
from metarl.task_api import seed_family  # noqa: E402

FAMILIES = {
    "HalfCheetahVel": (HalfCheetahVelEnv, VelocityTask(1.3), 17, 6),
    "HalfCheetahDir": (HalfCheetahDirEnv, DirectionTask(-1.0), 17, 6),
    "AntVel": (AntVelEnv, VelocityTask(2.1), 105, 8),
    "AntDir": (AntDirEnv, DirectionTask(-1.0), 105, 8),
    "AntDir2D": (AntDir2DEnv, Direction2DTask((0.6, -0.8)), 105, 8),
    "AntGoal": (AntGoalEnv, GoalTask((1.5, -2.5)), 107, 8),
}
ANTS = [name for name in FAMILIES if name.startswith("Ant")]
HALF_CHEETAH_PATH = str(Path(gym.envs.mujoco.__file__).parent / "assets" / "half_cheetah.xml")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make(name: str, **kwargs: Any) -> Any:
    cls, task, *_ = FAMILIES[name]
    env = cls(**kwargs)
    env.set_task(task)
    return env


def actions(n: int, dim: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, dim)).astype(np.float32)


# ----------------------------------------------------------------------------- rewards


@pytest.mark.parametrize("name", ["HalfCheetahVel", "HalfCheetahDir"])
def test_half_cheetah_reward_is_the_task_term_of_the_rootx_finite_difference(name: str) -> None:
    env = make(name)
    task = env.get_task()
    env.reset(seed=0)
    assert env.dt == pytest.approx(0.05) and env.frame_skip == 5
    fd_differs_from_qvel = False
    for a in actions(6, 6, scale=1.5):  # some components out of [-1, 1]: the cost uses the clipped action
        x_before = float(env.data.qpos[0])
        _, reward, terminated, truncated, info = env.step(a)
        v_x = (float(env.data.qpos[0]) - x_before) / 0.05
        ctrl = 0.05 * float(np.sum(np.clip(a, -1.0, 1.0).astype(np.float64) ** 2))
        task_term = -abs(v_x - task.velocity) if name == "HalfCheetahVel" else task.direction * v_x
        # abs 1e-6: Gymnasium sums the squares of the float32 action in float32.
        assert reward == pytest.approx(task_term - ctrl, rel=0, abs=1e-6)
        assert info["reward_ctrl"] == pytest.approx(-ctrl, rel=0, abs=1e-6)
        assert not terminated and not truncated
        fd_differs_from_qvel |= abs(v_x - float(env.data.qvel[0])) > 1e-3
    assert fd_differs_from_qvel  # so the check above tells the finite difference from qvel[0]


@pytest.mark.parametrize("name", ANTS)
def test_ant_reward_is_task_term_plus_gymnasium_survive_ctrl_and_contact_terms(name: str) -> None:
    env = make(name)
    task = env.get_task()
    env.reset(seed=1)
    assert env.dt == pytest.approx(0.05)
    torso = env.data.body("torso")
    xpos_differs_from_qpos = contact_seen = False
    for a in actions(20, 8, seed=1, scale=1.5):
        xy_before, q_before = torso.xpos[:2].copy(), env.data.qpos[:2].copy()
        _, reward, terminated, _, _ = env.step(a)
        xy = torso.xpos[:2].copy()
        v = (xy - xy_before) / 0.05
        if name == "AntVel":
            task_term = -abs(v[0] - task.velocity)
        elif name == "AntDir":
            task_term = task.direction * v[0]
        elif name == "AntDir2D":
            task_term = task.direction[0] * v[0] + task.direction[1] * v[1]
        else:
            task_term = -(abs(xy[0] - task.goal[0]) + abs(xy[1] - task.goal[1]))
        z = float(env.data.qpos[2])
        healthy = 0.2 <= z <= 1.0 and bool(np.all(np.isfinite(env.state_vector())))
        ctrl = 0.5 * float(np.sum(np.clip(a, -1.0, 1.0).astype(np.float64) ** 2))
        contact = 5e-4 * float(np.sum(np.clip(env.data.cfrc_ext, -1.0, 1.0) ** 2))
        contact_seen |= contact > 0
        assert reward == pytest.approx(task_term + float(healthy) - ctrl - contact, rel=0, abs=1e-6)  # float32 ctrl sum
        assert terminated == (not healthy)
        q_v = (env.data.qpos[:2] - q_before) / 0.05
        xpos_differs_from_qpos |= bool(np.max(np.abs(v - q_v)) > 1e-5)
    assert xpos_differs_from_qpos  # the reward uses body xpos, which lags qpos by a substep
    assert contact_seen  # the contact term was live (the feet touch the floor now and then)


def test_ant_terminates_when_the_torso_leaves_the_healthy_height() -> None:
    env = make("AntVel", healthy_z_range=(0.2, 0.5))  # the torso starts at 0.75
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert terminated and info["reward_survive"] == 0.0
    env = make("AntVel")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(np.zeros(8, dtype=np.float32))
    assert not terminated and info["reward_survive"] == 1.0


def test_half_cheetah_dir_forward_equals_gymnasium_half_cheetah_v5() -> None:
    """d = +1 with the same control weight is Gymnasium's HalfCheetah-v5, bit for bit;
    out-of-range actions give the same physics, and a cost on the clipped action."""
    env = HalfCheetahDirEnv()
    env.set_task(DirectionTask(1.0))
    with quiet_model_compiler():
        ref = HalfCheetahEnv(ctrl_cost_weight=0.05)
    obs, _ = env.reset(seed=3)
    ref_obs, _ = ref.reset(seed=3)
    assert np.array_equal(obs, ref_obs)
    for i, a in enumerate(actions(20, 6, seed=3, scale=1.5)):
        obs, reward, *_ = env.step(a)
        ref_obs, ref_reward, *_ = ref.step(a)
        assert np.array_equal(obs, ref_obs), i
        clipped = np.clip(a, -1.0, 1.0)
        if np.array_equal(a, clipped):
            assert reward == ref_reward, i
        else:
            excess = 0.05 * float(np.sum(a.astype(np.float64) ** 2) - np.sum(clipped.astype(np.float64) ** 2))
            assert excess > 0 and reward - ref_reward == pytest.approx(excess, rel=0, abs=1e-6), i  # float32 sums


def test_ant_dir_forward_equals_gymnasium_ant_v5() -> None:
    env = AntDirEnv()
    env.set_task(DirectionTask(1.0))
    ref = AntEnv()
    obs, _ = env.reset(seed=4)
    ref_obs, _ = ref.reset(seed=4)
    assert np.array_equal(obs, ref_obs)
    for i, a in enumerate(actions(30, 8, seed=4)):
        obs, reward, terminated, _, _ = env.step(a)
        ref_obs, ref_reward, ref_terminated, _, _ = ref.step(a)
        assert np.array_equal(obs, ref_obs) and reward == ref_reward and terminated == ref_terminated, i


# ----------------------------------------------------------------------------- action normalization


@pytest.mark.parametrize("name", ["HalfCheetahDir", "AntGoal"])
def test_action_scale_clips_to_the_scaled_box_and_simulates_the_action_divided_by_it(name: str) -> None:
    """With ``action_scale=10`` the action space is [-10, 10]^n and an action a gives exactly the
    episode (observations, rewards, control cost, terminations) that a / 10 clipped to [-1, 1]
    gives at scale 1; at scale 1 nothing changes (the default)."""
    *_, act_dim = FAMILIES[name]
    scaled, plain = make(name, action_scale=10.0), make(name)
    assert make(name, action_scale=1.0).action_space == plain.action_space
    assert np.array_equal(plain.action_space.low, -np.ones(act_dim)) and np.array_equal(
        plain.action_space.high, np.ones(act_dim)
    )
    assert scaled.action_space.dtype == np.float32
    assert np.array_equal(scaled.action_space.low, -10 * np.ones(act_dim)) and np.array_equal(
        scaled.action_space.high, 10 * np.ones(act_dim)
    )
    scaled.reset(seed=5)
    plain.reset(seed=5)
    saturated = 0
    for i, a in enumerate(actions(25, act_dim, seed=5, scale=15.0)):  # a third of the components beyond +-10
        control = np.clip(a, -10.0, 10.0) / np.float32(10.0)
        saturated += int(np.sum(np.abs(a) > 10.0))
        obs, reward, terminated, _, info = scaled.step(a)
        ref_obs, ref_reward, ref_terminated, _, ref_info = plain.step(control)
        assert np.array_equal(obs, ref_obs) and reward == ref_reward and terminated == ref_terminated, i
        assert info["reward_ctrl"] == ref_info["reward_ctrl"], i  # the cost of the divided control
        if terminated:
            break
    assert saturated > 0
    assert (
        -info["reward_ctrl"] <= scaled._ctrl_cost_weight * act_dim
    )  # |u| <= 1; a cost on a itself would be ~100x larger


def test_action_scale_is_kept_by_pickling_and_bad_values_are_clear_errors() -> None:
    env = make("HalfCheetahVel", action_scale=10.0)
    env.reset(seed=0)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.action_scale == 10.0 and clone.action_space == env.action_space
    a = actions(1, 6, seed=1, scale=10.0)[0]
    assert np.array_equal(clone.step(a)[0], env.step(a)[0])
    for bad in (0, -1.0, float("nan"), float("inf"), "10", True):
        with pytest.raises(ValueError, match="action_scale must be a finite number > 0"):
            HalfCheetahVelEnv(action_scale=bad)


def test_cli_train_with_a_bad_action_scale_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metarl.cli import main

    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "halfcheetah-dir",
                "--set",
                "env_kwargs={action_scale: -1}",
                "--run-dir",
                str(run_dir),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "rejected env_kwargs {'action_scale': -1}: action_scale must be a finite number > 0" in err
    assert not run_dir.exists()


def test_packaged_locomotion_configs_use_the_published_action_normalization() -> None:
    from metarl.config import CONFIG_DIR, load_config

    names = sorted(
        p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem.startswith(("halfcheetah", "ant", "hopper", "walker2d"))
    )
    assert len(names) == 10
    for name in names:
        config = load_config(name)
        assert config.env_kwargs.get("action_scale") == 10.0, name
        env = make_family(config.family, **config.env_kwargs)
        assert np.all(env.action_space.high == 10.0), name


def test_ant_goal_observes_its_position_and_the_others_do_not() -> None:
    goal_env, vel_env = make("AntGoal"), make("AntVel")
    goal_obs, _ = goal_env.reset(seed=0)
    vel_obs, _ = vel_env.reset(seed=0)
    assert goal_obs.shape == (107,) and vel_obs.shape == (105,)
    np.testing.assert_array_equal(goal_obs[:2], goal_env.data.qpos[:2])
    np.testing.assert_array_equal(goal_obs[2:], vel_obs)  # same seed, same state, plus (x, y)


# ----------------------------------------------------------------------------- tasks


@pytest.mark.parametrize("name", FAMILIES)
def test_tasks_come_from_the_env_rng(name: str) -> None:
    cls = FAMILIES[name][0]

    def draw(seed: int, global_seed: int) -> list[Any]:
        env = cls()
        seed_family(env, seed)
        np.random.seed(global_seed)
        return env.sample_tasks(4)

    a = draw(0, 1)
    assert draw(0, 2) == a  # same seed, whatever the global RNG
    assert draw(1, 1) != a
    assert all(type(t) is type(FAMILIES[name][1]) for t in a)
    with pytest.raises(ValueError, match="n >= 1"):
        cls().sample_tasks(0)


def test_task_distributions() -> None:
    def sample(cls: type, n: int = 400) -> list[Any]:
        env = cls()
        seed_family(env, 0)
        return env.sample_tasks(n)

    v = np.array([t.velocity for t in sample(HalfCheetahVelEnv)])
    assert v.min() >= 0 and v.max() <= 2 and v.min() < 0.1 and v.max() > 1.9
    v = np.array([t.velocity for t in sample(AntVelEnv)])
    assert v.min() >= 0 and v.max() <= 3 and v.min() < 0.1 and v.max() > 2.9
    for cls in (HalfCheetahDirEnv, AntDirEnv):
        d = np.array([t.direction for t in sample(cls)])
        assert set(d.tolist()) == {-1.0, 1.0} and 0.4 < (d > 0).mean() < 0.6
    u = np.array([t.direction for t in sample(AntDir2DEnv)])
    np.testing.assert_allclose(np.hypot(u[:, 0], u[:, 1]), 1.0, rtol=1e-12)
    assert all(
        ((u[:, 0] > 0) == sx).any() and ((u[:, 1] > 0) == sy).any() for sx in (True, False) for sy in (True, False)
    )
    g = np.array([t.goal for t in sample(AntGoalEnv)])
    assert g.min() >= -3 and g.max() <= 3 and g.min() < -2.9 and g.max() > 2.9


@pytest.mark.parametrize("name", FAMILIES)
def test_reset_and_step_before_set_task_raise(name: str) -> None:
    env = FAMILIES[name][0]()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.reset()
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.step(np.zeros(FAMILIES[name][3], dtype=np.float32))
    with pytest.raises(TaskNotSetError, match="call env.set_task"):
        env.get_task()


def test_set_task_validates_and_accepts_mappings() -> None:
    env = HalfCheetahVelEnv()
    env.set_task({"velocity": 0.5})
    assert env.get_task() == VelocityTask(0.5)
    with pytest.raises(TypeError, match="expects a VelocityTask"):
        env.set_task(DirectionTask(1.0))
    with pytest.raises(TypeError, match="keys"):
        env.set_task({"goal": 1.0})
    with pytest.raises(ValueError, match="-1 or \\+1"):
        HalfCheetahDirEnv().set_task(DirectionTask(0.5))
    with pytest.raises(ValueError, match="unit vector"):
        AntDir2DEnv().set_task(Direction2DTask((1.0, 1.0)))
    goal_env = AntGoalEnv()
    goal_env.set_task({"goal": [1, 2]})
    assert goal_env.get_task() == GoalTask((1.0, 2.0))


def test_reset_options_set_the_task_and_info_reports_it() -> None:
    env = HalfCheetahVelEnv()
    _, info = env.reset(seed=0, options={"task": VelocityTask(0.7)})
    assert info["task"] == VelocityTask(0.7) == env.get_task()
    assert env.step(np.zeros(6, dtype=np.float32))[4]["task"] == VelocityTask(0.7)


# ----------------------------------------------------------------------------- env API


@pytest.mark.filterwarnings("ignore:.*Box observation space m.*:UserWarning")  # unbounded by design
@pytest.mark.parametrize("name", FAMILIES)
def test_env_checker_passes_after_set_task(name: str) -> None:
    env = make(name)
    check_env(env, skip_render_check=True)
    assert env.get_task() == FAMILIES[name][1]
    assert env.observation_space.shape == (FAMILIES[name][2],) and env.action_space.shape == (FAMILIES[name][3],)


@pytest.mark.parametrize("name", FAMILIES)
def test_pickled_env_keeps_task_state_and_rng_and_steps_identically(name: str) -> None:
    env = gym.make(f"metarl/{name}-v0")
    base = env.unwrapped
    base.set_task(FAMILIES[name][1])
    env.reset(seed=5)
    acts = actions(10, FAMILIES[name][3], seed=5)
    for a in acts[:3]:
        env.step(a)
    copy = pickle.loads(pickle.dumps(env))
    assert copy.unwrapped.get_task() == base.get_task()
    assert copy.unwrapped.data is not base.data
    for i, a in enumerate(acts[3:]):
        out, out_copy = env.step(a), copy.step(a)
        assert np.array_equal(out[0], out_copy[0]) and out[1:4] == out_copy[1:4], i
    # The RNG came along too: the next unseeded reset draws the same initial state.
    assert np.array_equal(env.reset()[0], copy.reset()[0])
    # An unpickled env without a task still refuses to run.
    fresh = pickle.loads(pickle.dumps(FAMILIES[name][0]()))
    with pytest.raises(TaskNotSetError):
        fresh.reset()


def test_registered_with_horizon_200_and_configurable() -> None:
    for name in FAMILIES:
        spec = gym.spec(f"metarl/{name}-v0")
        assert spec.max_episode_steps == 200, name
    env = gym.make("metarl/HalfCheetahVel-v0", max_episode_steps=7)
    env.unwrapped.set_task(VelocityTask(1.0))
    env.reset(seed=0)
    dones = [env.step(np.zeros(6, dtype=np.float32))[3] for _ in range(7)]
    assert dones == [False] * 6 + [True]


def test_model_loads_do_not_print_or_write_mujoco_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    libc = ctypes.CDLL(None)  # MuJoCo prints with C stdio: flush it before reading the captured fds
    # Control: a plain load of Gymnasium's half_cheetah.xml warns (stderr and MUJOCO_LOG.TXT).
    mujoco.MjModel.from_xml_path(HALF_CHEETAH_PATH)
    libc.fflush(None)
    if not (tmp_path / "MUJOCO_LOG.TXT").exists():
        pytest.skip("this mujoco does not warn about settotalmass (it started in mujoco 4)")
    control = capfd.readouterr()
    assert "settotalmass" in control.out + control.err
    os.remove(tmp_path / "MUJOCO_LOG.TXT")

    seen: list[str] = []

    def user_handler(message: str) -> None:  # a user's own handler
        seen.append(message)

    mujoco.set_mju_user_warning(user_handler)
    try:
        for name in ("HalfCheetahVel", "HalfCheetahDir"):
            make(name).reset(seed=0)
        gym.make("metarl/HalfCheetahVel-v0")
        assert mujoco.get_mju_user_warning() is user_handler  # restored after each load
    finally:
        mujoco.set_mju_user_warning(None)
    libc.fflush(None)
    out = capfd.readouterr()
    assert "settotalmass" not in out.out + out.err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert seen == []  # the deprecation is swallowed, not forwarded


def test_metarl_imports_without_mujoco_and_making_a_family_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['mujoco'] = None\n"
        "import gymnasium as gym, metarl\n"
        "assert 'metarl/HalfCheetahVel-v0' in gym.registry\n"
        "gym.make('metarl/Navigation2D-v0')\n"
        "try:\n"
        "    gym.make('metarl/HalfCheetahVel-v0')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "pip install 'metarl[mujoco]'" in out.stdout


# ----------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("name", FAMILIES)
def test_sampler_runs_the_family_through_the_gymnasium_vector_fallback(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_family(name)
    assert callable(getattr(env.unwrapped, "make_batched", None))  # the native batch exists...
    monkeypatch.setattr("metarl.sampler.make_batched", lambda *args: None)  # ...this test covers the fallback
    seed_family(env, 0)
    tasks = env.unwrapped.sample_tasks(2)
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh")
    sampler = Sampler(name, policy, horizon=10, seed=0)
    episodes = sampler.sample(policy.get_params(), tasks, episodes_per_task=2)
    sampler.close()
    obs_dim, act_dim = FAMILIES[name][2], FAMILIES[name][3]
    assert episodes.observations.shape == (2, 2, 10, obs_dim)
    assert episodes.actions.shape == (2, 2, 10, act_dim)
    assert episodes.rewards.shape == episodes.mask.shape == (2, 2, 10)
    assert torch.isfinite(episodes.rewards).all()
    if name.startswith("HalfCheetah"):
        assert bool((episodes.mask == 1).all())
    # Each episode starts from its own noisy initial state.
    first = episodes.observations[:, :, 0].reshape(4, obs_dim)
    assert torch.unique(first, dim=0).shape[0] == 4


def test_sampler_masks_ant_episodes_from_their_termination_on() -> None:
    lengths = replay_matches_sampler("AntVel", {"healthy_z_range": (0.2, 0.8)}, horizon=40)
    assert min(lengths) < 40  # some episode did terminate early
    assert len(set(lengths)) > 1  # ... and not all at once: the batch kept stepping the others
