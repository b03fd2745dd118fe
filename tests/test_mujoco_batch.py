"""The native batched MuJoCo backend (envs/mujoco/batch.py): the same observations, rewards and
terminations as the single Gymnasium env for every family, the sampler's masks and seeds on
the batched path against its vector-env fallback, its thread settings, and the benchmark."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("mujoco.batch")

import torch  # noqa: E402

import metarl  # noqa: E402,F401  (registers the families)
from metarl.envs.mujoco.batch import BatchedMujocoEnv, available_cpus  # noqa: E402
from metarl.errors import SamplerError  # noqa: E402
from metarl.families import make_family  # noqa: E402
from metarl.policies import make_policy  # noqa: E402
from metarl.sampler import Sampler  # noqa: E402
from metarl.task_api import make_batched, seed_family  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_FAMILIES = ["HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntDir2D", "AntGoal"]
DYNAMICS_FAMILIES = ["HalfCheetahRandParams", "AntRandParams", "HopperRandParams", "Walker2dRandParams"]
FAMILIES = GOAL_FAMILIES + DYNAMICS_FAMILIES
FALLS = ["AntVel", "AntGoal", "AntRandParams", "HopperRandParams", "Walker2dRandParams"]  # families that terminate
TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_and_tasks(name: str, k: int, seed: int = 0, **kwargs: Any) -> tuple[Any, list[Any]]:
    env = make_family(name, **kwargs).unwrapped
    seed_family(env, seed)
    return env, env.sample_tasks(k)


def single_env_rollout(
    name: str, task: Any, seed: int, actions: np.ndarray, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations (float32, incl. the reset one), rewards, terminations and the reset qpos of
    the family's plain Gymnasium env, stopping at its termination."""
    env = make_family(name, **kwargs).unwrapped
    env.set_task(task)
    obs, _ = env.reset(seed=seed)
    qpos0 = env.data.qpos.copy()
    observations, rewards, terminations = [obs], [], []
    for a in actions:
        obs, reward, terminated, _, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        terminations.append(terminated)
        if terminated:
            break
    return np.asarray(observations, dtype=np.float32), np.asarray(rewards), np.asarray(terminations), qpos0


# ----------------------------------------------------------------------------- equivalence


SCALED = [(name, 1.0) for name in FAMILIES] + [
    (name, 10.0) for name in ("HalfCheetahDir", "AntGoal", "AntRandParams", "HopperRandParams")
]


@pytest.mark.parametrize(("name", "action_scale"), SCALED)
def test_batched_env_gives_the_single_env_observations_rewards_and_terminations(name: str, action_scale: float) -> None:
    """Three tasks x two episodes, 100 steps of actions partly out of range (clipped). Episode b
    of ``reset(seed=s)`` is the single env after ``reset(seed=s + b)``; after an episode's
    termination the batch stops stepping it (frozen observation, reward 0, still terminated)
    while the others go on. With ``action_scale`` S the actions lie in [-1.5 S, 1.5 S] and both
    clip them to [-S, S] and simulate them divided by S."""
    k, n, steps, seed = 3, 2, 100, 11
    kwargs = {} if action_scale == 1.0 else {"action_scale": action_scale}
    family, tasks = family_and_tasks(name, k, **kwargs)
    batched = family.make_batched(tasks, n)
    assert isinstance(batched, BatchedMujocoEnv) and batched.num_envs == k * n
    act_dim = family.action_space.shape[0]
    assert family.action_space.high[0] == action_scale
    actions = (
        np.random.default_rng(1)
        .uniform(-1.5 * action_scale, 1.5 * action_scale, size=(steps, k * n, act_dim))
        .astype(np.float32)
    )

    obs = [batched.reset(seed=seed).numpy()]
    qpos0 = batched.qpos.copy()
    rewards, terminations = [], []
    for t in range(steps):
        o, r, d = batched.step(torch.from_numpy(actions[t]))
        assert o.dtype == torch.float32 and r.dtype == torch.float32 and d.dtype == torch.bool
        obs.append(o.numpy())
        rewards.append(r.numpy())
        terminations.append(d.numpy())
    obs_b, rew_b, term_b = np.array(obs), np.array(rewards), np.array(terminations)

    lengths = []
    for b in range(k * n):
        ref_obs, ref_rew, ref_term, ref_qpos0 = single_env_rollout(
            name, tasks[b // n], seed + b, actions[:, b], **kwargs
        )
        length = len(ref_rew)
        lengths.append(length)
        np.testing.assert_array_equal(qpos0[b], ref_qpos0)  # Gymnasium's reset noise, seed + b
        np.testing.assert_allclose(obs_b[: length + 1, b], ref_obs, rtol=0, atol=TOL, err_msg=f"episode {b}")
        np.testing.assert_allclose(
            rew_b[:length, b], ref_rew.astype(np.float32), rtol=0, atol=TOL, err_msg=f"episode {b}"
        )
        np.testing.assert_array_equal(term_b[:length, b], ref_term)
        if length < steps:  # ended: frozen, no reward, still terminated
            assert term_b[length:, b].all() and not rew_b[length:, b].any()
            assert (obs_b[length + 1 :, b] == obs_b[length, b]).all()
    if name.startswith("HalfCheetah"):
        assert lengths == [steps] * (k * n) and not term_b.any()
    if name in ("AntVel", "AntGoal", "AntRandParams", "HopperRandParams", "Walker2dRandParams"):
        assert min(lengths) < steps  # these actions make some episodes fall: termination is covered
    if name.startswith("Ant"):
        contact = obs_b[1:, :, -78:]  # clip(cfrc_ext)[1:], 13 bodies x 6
        assert np.abs(contact).max() > 0.01  # the contact forces (cfrc_ext) were live and compared
        # Steps without contact right after steps with one: the batch sets those episodes'
        # cfrc_ext to 0 without mj_rnePostConstraint, and they were compared too.
        largest = np.abs(contact).max(axis=2)  # [steps, B]
        assert ((largest[1:] == 0) & (largest[:-1] > 0)).any()


@pytest.mark.parametrize("name", ["HalfCheetahRandParams", "HopperRandParams"])
def test_dynamics_tasks_run_on_their_own_models_with_the_same_initial_state(name: str) -> None:
    """Two tasks, the same reset seed and actions for both: each task's trajectory is its single
    env's, and the two differ (each task has its own physics in the batch)."""
    family, tasks = family_and_tasks(name, 2, seed=3)
    act_dim = family.action_space.shape[0]
    actions = np.random.default_rng(2).uniform(-1, 1, size=(30, act_dim)).astype(np.float32)
    first = []
    for task in tasks:
        batched = family.make_batched([task], 1)
        obs = [batched.reset(seed=5).numpy()[0]]
        for a in actions:
            o, _, d = batched.step(torch.from_numpy(a[None]))
            obs.append(o.numpy()[0])
            if d[0]:
                break
        ref_obs, *_ = single_env_rollout(name, task, 5, actions)
        np.testing.assert_allclose(np.array(obs), ref_obs, rtol=0, atol=TOL)
        first.append(np.array(obs))
    t = min(len(first[0]), len(first[1]))
    assert np.array_equal(first[0][0], first[1][0])  # same initial state ...
    assert not np.allclose(first[0][1:t], first[1][1:t], atol=1e-4)  # ... different physics


def test_ant_without_contact_forces_skips_them_and_still_matches() -> None:
    """Contact forces cost a per-episode copy of each MjData; an Ant that neither observes nor
    pays for them runs on a plain (non-persistent) batch, with the same numbers."""
    kwargs = {"include_cfrc_ext_in_observation": False, "contact_cost_weight": 0.0}
    family, tasks = family_and_tasks("AntDir", 2, **kwargs)
    batched = family.make_batched(tasks, 1)
    assert not batched.batch.persistent and batched.cfrc_ext is None
    assert family_and_tasks("AntDir", 1)[0].make_batched(tasks, 1).batch.persistent  # the default Ant needs them
    actions = np.random.default_rng(3).uniform(-1, 1, size=(40, 2, 8)).astype(np.float32)
    obs = [batched.reset(seed=0).numpy()]
    rewards = []
    for a in actions:
        o, r, _ = batched.step(torch.from_numpy(a))
        obs.append(o.numpy())
        rewards.append(r.numpy())
    for b in range(2):
        ref_obs, ref_rew, _, _ = single_env_rollout("AntDir", tasks[b], b, actions[:, b], **kwargs)
        assert ref_obs.shape[1] == 27
        np.testing.assert_allclose(np.array(obs)[: len(ref_obs), b], ref_obs, rtol=0, atol=TOL)
        np.testing.assert_allclose(np.array(rewards)[: len(ref_rew), b], ref_rew.astype(np.float32), rtol=0, atol=TOL)


def test_results_do_not_depend_on_the_thread_count_and_the_family_is_untouched() -> None:
    family, tasks = family_and_tasks("AntRandParams", 2)
    family.set_task(tasks[0])
    mass = family.model.body_mass.copy()
    actions = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, size=(20, 4, 8)).astype(np.float32))
    runs = []
    for nthread in (1, 2):
        batched = BatchedMujocoEnv(family, tasks, 2, nthread=nthread)
        assert batched.batch.nthread == nthread
        out = [torch.cat([batched.reset(seed=7), torch.zeros(4, 1)], 1)]
        out += [torch.cat([o, r[:, None]], 1) for o, r, _ in (batched.step(a) for a in actions)]
        runs.append(torch.stack(out))
    assert torch.equal(runs[0], runs[1])
    np.testing.assert_array_equal(family.model.body_mass, mass)  # make_batched built its own models
    assert family.get_task() == tasks[0]


def short_rollout(batched: BatchedMujocoEnv, seed: int = 0, steps: int = 15) -> torch.Tensor:
    actions = torch.from_numpy(
        np.random.default_rng(seed)
        .uniform(-1, 1, size=(steps, batched.num_envs, len(batched.action_low)))
        .astype(np.float32)
    )
    out = [torch.cat([batched.reset(seed=seed), torch.zeros(batched.num_envs, 2)], 1)]
    out += [torch.cat([o, r[:, None], d[:, None].float()], 1) for o, r, d in (batched.step(a) for a in actions)]
    return torch.stack(out)


@pytest.mark.parametrize("name", ["AntVel", "AntRandParams"])
def test_a_family_reuses_its_batches_with_the_same_numbers(name: str) -> None:
    """Persistent batches hold one MjData per episode: a family hands a dropped env's batch
    to its next ``make_batched`` of that size (with the new tasks' models) instead of
    allocating another, and the reused batch gives what a fresh one gives."""
    family, tasks = family_and_tasks(name, 4)
    first = family.make_batched(tasks[:2], 2)
    batch = first.batch
    short_rollout(first)
    del first
    gc.collect()
    second = family.make_batched(tasks[2:], 2)
    assert second.batch is batch  # reused
    assert family.make_batched(tasks[2:], 2).batch is not batch  # in use by `second`: a new one
    fresh_family, _ = family_and_tasks(name, 4)
    fresh = fresh_family.make_batched(tasks[2:], 2)
    assert fresh.batch is not batch
    assert torch.equal(short_rollout(second, seed=3), short_rollout(fresh, seed=3))


def test_a_batch_with_fewer_episodes_than_threads_is_reused() -> None:
    """MuJoCo gives a batch at most one thread per simulation (a 1-episode batch of a 2-thread
    family reports ``nthread`` 1); the family's pool still hands it to the next such call
    instead of allocating a persistent batch for every one."""
    env = make_family("AntVel", batch_threads=2).unwrapped
    seed_family(env, 0)
    tasks = env.sample_tasks(1)
    first = env.make_batched(tasks, 1)
    batch = first.batch
    assert (batch.nsim, batch.nthread) == (1, 1)
    del first
    gc.collect()
    assert env.make_batched(tasks, 1).batch is batch


def test_thread_settings() -> None:
    family, tasks = family_and_tasks("HalfCheetahVel", 1)
    assert family.make_batched(tasks, 1).nthread == available_cpus()
    assert BatchedMujocoEnv.torch_threads == 1
    env = make_family("HalfCheetahVel", batch_threads=1).unwrapped
    assert env.make_batched(tasks, 2).batch.nthread == 1
    with pytest.raises(ValueError, match="batch_threads must be >= 1"):
        make_family("HalfCheetahVel", batch_threads=0)


def test_reset_seeds_and_errors() -> None:
    family, tasks = family_and_tasks("HopperRandParams", 2)
    batched = family.make_batched(tasks, 2)
    with pytest.raises(RuntimeError, match="call reset"):
        batched.step(torch.zeros(4, 3))
    a = batched.reset(seed=3)
    assert torch.equal(batched.reset(seed=3), a)
    assert not torch.equal(batched.reset(seed=4), a)
    assert torch.equal(batched.reset(seed=4)[:3], a[1:])  # episode b is seed + b
    assert not torch.equal(batched.reset(), batched.reset())  # unseeded: fresh noise
    with pytest.raises(ValueError, match="actions of shape \\(4, 3\\)"):
        batched.step(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="multipliers have shape"):
        family.make_batched([type(tasks[0])(body_mass=(1.0, 2.0))], 1)
    with pytest.raises(TypeError, match="expects a VelocityTask"):
        make_family("AntVel").unwrapped.make_batched([tasks[0]], 1)
    with pytest.raises(ValueError, match="at least one task"):
        family.make_batched([], 1)


# ----------------------------------------------------------------------------- sampler


def sample(
    name: str,
    tasks: list[Any],
    n: int,
    horizon: int,
    env_kwargs: dict[str, Any],
    fallback: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    env = make_family(name, **env_kwargs)
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, (16,), "tanh")
    with monkeypatch.context() as m:
        if fallback:  # the sampler's Gymnasium vector-env path
            m.setattr("metarl.sampler.make_batched", lambda *args: None)
        sampler = Sampler(name, policy, horizon=horizon, seed=5, env_kwargs=env_kwargs)
        episodes = sampler.sample(policy.get_params(), tasks, episodes_per_task=n)
        sampler.close()
    return episodes


@pytest.mark.parametrize(
    ("name", "env_kwargs"),
    [
        ("HalfCheetahDir", {}),
        ("HalfCheetahDir", {"action_scale": 10.0}),
        ("AntVel", {"healthy_z_range": (0.2, 0.8)}),
        (
            "AntGoal",
            {"healthy_z_range": (0.2, 0.8), "action_scale": 10.0},
        ),  # the torso starts at 0.75: noise and the policy's kicks make some fall
        ("AntRandParams", {"healthy_z_range": (0.2, 0.8)}),
        ("HopperRandParams", {}),
        ("Walker2dRandParams", {}),
    ],
)
def test_sampler_batched_path_equals_its_vector_env_fallback(
    name: str, env_kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same sampler seed, same policy: the batched path and the SyncVectorEnv path give the same
    episodes (initial states, observations, actions, rewards, masks), so episodes that
    terminate early are masked from their termination on while the batch steps the others."""
    family, tasks = family_and_tasks(name, 2, **env_kwargs)
    assert isinstance(
        make_batched(make_family(name, **env_kwargs), tasks, 3), BatchedMujocoEnv
    )  # the sampler's fast path
    horizon = 40
    batched = sample(name, tasks, 3, horizon, env_kwargs, fallback=False, monkeypatch=monkeypatch)
    vector = sample(name, tasks, 3, horizon, env_kwargs, fallback=True, monkeypatch=monkeypatch)
    assert batched.rewards.shape == vector.rewards.shape
    assert torch.equal(batched.mask, vector.mask)
    live = batched.mask > 0  # after an episode's end the two paths hold different filler (frozen vs auto-reset)
    for field in ("observations", "actions", "rewards"):
        torch.testing.assert_close(
            getattr(batched, field)[live], getattr(vector, field)[live], rtol=0, atol=TOL, msg=field
        )
    lengths = batched.mask.sum(-1).flatten()
    for length, mask in zip(lengths.tolist(), batched.mask.reshape(6, -1)):
        assert mask[: int(length)].all() and not mask[int(length) :].any()  # 1...1 0...0
    if name == "HalfCheetahDir":
        assert (lengths == horizon).all()
        if env_kwargs.get("action_scale") == 10.0:  # the policy's std-1 noise acts in [-10, 10]: nothing saturates
            assert batched.actions.abs().max() < 10.0
    else:
        assert lengths.min() < horizon  # some episode terminated early ...
        assert len(set(lengths.tolist())) > 1  # ... and the others went on
    first = batched.observations[:, :, 0].reshape(6, -1)
    assert torch.unique(first, dim=0).shape[0] == 6  # every episode has its own reset noise


class _ThreadProbe:
    """A batched env that records torch's thread count while the sampler steps it."""

    torch_threads = 1

    def __init__(self, n: int, raise_at: int | None) -> None:
        self.num_envs, self.raise_at, self.t = n, raise_at, 0
        self.threads: list[int] = []
        self.seeds: list[int] = []

    def reset(self, seed: int | None = None) -> torch.Tensor:
        assert seed is not None
        self.seeds.append(seed)
        self.threads.append(torch.get_num_threads())
        return torch.zeros(self.num_envs, 2)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.t += 1
        self.threads.append(torch.get_num_threads())
        if self.t == self.raise_at:
            raise ValueError("boom")
        return torch.zeros(self.num_envs, 2), torch.zeros(self.num_envs), torch.zeros(self.num_envs, dtype=torch.bool)


@pytest.mark.parametrize("raise_at", [None, 3])
def test_sampler_runs_torch_on_the_batched_envs_threads_and_restores_them(
    raise_at: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_family("Navigation2D")
    probes: list[_ThreadProbe] = []

    def factory(tasks: Any, n: int) -> _ThreadProbe:
        probes.append(_ThreadProbe(len(tasks) * n, raise_at))
        return probes[-1]

    monkeypatch.setattr(env.unwrapped, "make_batched", factory, raising=False)
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh")
    sampler = Sampler(env, policy, horizon=5, seed=0)
    seed_family(env, 0)
    tasks = env.unwrapped.sample_tasks(2)
    torch.set_num_threads(2)
    if raise_at is None:
        sampler.sample(policy.get_params(), tasks, 2)
        sampler.sample(policy.get_params(), tasks, 2)
    else:
        with pytest.raises(SamplerError, match="boom"):
            sampler.sample(policy.get_params(), tasks, 2)
    assert torch.get_num_threads() == 2  # restored, also after an exception
    assert all(t == 1 for p in probes for t in p.threads) and probes[0].threads
    if raise_at is None:  # one reset seed per call, from the sampler's own RNG
        again = Sampler(env, policy, horizon=5, seed=0)
        again.sample(policy.get_params(), tasks, 2)
        assert probes[0].seeds == probes[2].seeds and probes[0].seeds != probes[1].seeds


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_smoke(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "benchmarks/bench_mujoco_sampler.py",
        "--tasks",
        "2",
        "--episodes",
        "2",
        "--horizon",
        "3",
        "--repeats",
        "1",
        "--memory-envs",
        "4",
        "--out",
        str(tmp_path),
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "mujoco_sampler.json").read_text())
    assert set(report["robots"]) == {
        "HalfCheetahVel",
        "AntVel",
        "HalfCheetahVel, action_scale 10",
        "AntVel, action_scale 10",
    }
    assert report["robots"]["AntVel, action_scale 10"]["env_kwargs"] == {"action_scale": 10.0}
    for robot in report["robots"].values():
        assert robot["num_envs"] == 4
        for key in ("batched_sampler", "ceiling_open_loop_rollout", "sync_vector_env_sampler"):
            assert robot[key]["env_steps_per_second"] > 0, key
        assert robot["ratio_to_ceiling"] > 0 and robot["ratio_to_sync_vector_env"] > 0
    assert report["memory"]["num_envs"] == 4 and report["memory"]["peak_rss_mb"] > 0
    assert report["threads"]["torch_threads_in_rollout"] == 1 and report["threads"]["mujoco_threads"] >= 1
    assert "| robot |" in (tmp_path / "mujoco_sampler.md").read_text()
