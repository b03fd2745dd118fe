"""The Ray sampler: the local sampler's episodes on any number of workers, and clear faults."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import torch
from helpers import TINY

from metarl.config import load_config
from metarl.errors import ConfigError, SamplerError
from metarl.families import make_family
from metarl.logger import TIMING_COLUMNS, read_csv
from metarl.ray_sampler import RaySampler, family_module_dir, require_ray
from metarl.runtime import build_policy
from metarl.sampler import Sampler
from metarl.task_api import sample_tasks, seed_family
from metarl.trainer import Trainer

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
FIELDS = ("observations", "actions", "rewards", "mask")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting Ray costs seconds); samplers reuse it and leave it running."""
    if not ray.is_initialized():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@contextlib.contextmanager
def no_hang(limit_s: int = 300) -> Iterator[None]:
    """Fail the test, instead of hanging CI, when the block does not return at all (a watchdog, not a timing)."""

    def fail(signum: int, frame: object) -> None:
        raise AssertionError(f"no answer within {limit_s} s: the sampler hangs")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(limit_s)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def setup(family: str, num_tasks: int = 5, horizon: int = 12):
    config = load_config("2d-navigation", [f"family={family}", f"horizon={horizon}", "hidden_sizes=[16]"])
    env = make_family(family)
    seed_family(env, 0)
    torch.manual_seed(0)
    policy = build_policy(config, env)
    return policy, sample_tasks(env, num_tasks)


def stacked(params: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Per-task parameters, as after an inner step: each task's a little different."""
    g = torch.Generator().manual_seed(1)
    return {n: p.expand(k, *p.shape) + 0.1 * torch.randn((k, *p.shape), generator=g) for n, p in params.items()}


def same_success(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


@pytest.mark.parametrize("family", ["Navigation2D", "user_families:GoodFamily", "user_families:WithSuccess"])
def test_the_episodes_are_the_local_samplers_for_any_number_of_workers(local_ray, family: str) -> None:
    policy, tasks = setup(family)
    shared = policy.get_params()
    per_task = stacked(shared, len(tasks))
    local = Sampler(family, policy, 12, seed=7)
    expected = [local.sample(p, tasks, 3) for p in (shared, per_task, shared)]
    sampler = RaySampler(family, policy, 12, seed=7, num_workers=3)
    try:
        assert len(sampler.worker_pids()) == 3
        for workers in (1, 2, 3):
            sampler.num_workers = workers  # the first `workers` actors split the meta-batch (starting actors is slow)
            sampler.local = Sampler(family, policy, 12, seed=7)  # the driver's RNGs from the start again
            got = [sampler.sample(p, tasks, 3) for p in (shared, per_task, shared)]
            for e, g in zip(expected, got):
                assert all(torch.equal(getattr(e, f), getattr(g, f)) for f in FIELDS), (family, workers)
                assert same_success(e.success, g.success), (family, workers)
            assert (expected[0].success is not None) == family.endswith("WithSuccess")
            assert torch.equal(sampler.generator.get_state(), local.generator.get_state())
            assert sampler.np_rng.bit_generator.state == local.np_rng.bit_generator.state
    finally:
        sampler.close()


def test_a_family_defined_only_in_the_tests_is_importable_on_the_workers(local_ray) -> None:
    assert family_module_dir("user_families:GoodFamily") == os.path.dirname(os.path.abspath(__file__))
    assert family_module_dir("Navigation2D") is None
    policy, tasks = setup("user_families:GoodFamily", num_tasks=2)
    sampler = RaySampler("user_families:GoodFamily", policy, 5, num_workers=2)
    try:
        pids = sampler.worker_pids()
        assert len({pid for pid, _ in pids}) == 2 and os.getpid() not in {pid for pid, _ in pids}
        assert sampler.sample(policy.get_params(), tasks, 2).rewards.shape == (2, 2, 5)
    finally:
        sampler.close()


def test_training_logs_the_same_rows_on_ray_and_resumes(local_ray, tmp_path) -> None:
    overrides = [*TINY, "num_iterations=3", "checkpoint_every=1"]
    Trainer(load_config("2d-navigation", overrides), tmp_path / "local", progress=False).train()
    ray_cfg = load_config("2d-navigation", [*overrides, "sampler=ray", "num_workers=2", "num_iterations=2"])
    Trainer(ray_cfg, tmp_path / "ray", progress=False).train()
    Trainer.resume(tmp_path / "ray", progress=False, num_iterations=3).train()  # the guarantees hold on Ray

    def rows(run: str) -> list[dict[str, object]]:
        return [
            {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_csv(tmp_path / run / "progress.csv")
        ]

    assert rows("ray") == rows("local") and len(rows("local")) == 3


def test_an_env_that_raises_in_a_worker_names_the_worker_and_its_tasks(local_ray) -> None:
    policy, tasks = setup("user_families:StepRaises", num_tasks=4)
    sampler = RaySampler("user_families:StepRaises", policy, 5, num_workers=2)
    try:
        with pytest.raises(
            SamplerError,
            match=r"Ray worker (0 \(tasks 0\.\.1\)|1 \(tasks 2\.\.3\)): SamplerError: .*simulated physics blow-up",
        ):
            sampler.sample(policy.get_params(), tasks, 2)
    finally:
        sampler.close()


def test_a_dead_worker_is_an_error_not_a_hang(local_ray) -> None:
    policy, tasks = setup("Navigation2D", num_tasks=4)
    sampler = RaySampler("Navigation2D", policy, 5, num_workers=2)
    try:
        pid = sampler.worker_pids()[1][0]
        os.kill(pid, signal.SIGKILL)
        with no_hang(), pytest.raises(SamplerError, match=r"Ray worker 1 \(tasks 2\.\.3\) died.*--resume"):
            sampler.sample(policy.get_params(), tasks, 2)
        assert sampler.sample(policy.get_params(), tasks, 2).rewards.shape == (4, 2, 5)  # fresh workers
    finally:
        sampler.close()


def test_a_phase_past_the_timeout_is_an_error(local_ray) -> None:
    policy, tasks = setup("user_families:SlowStep", num_tasks=2)
    sampler = RaySampler("user_families:SlowStep", policy, 20, num_workers=2, timeout_s=1.0)
    try:
        sampler.worker_pids()  # started (imports done) before the timeout's clock runs
        with pytest.raises(SamplerError, match="sent no episodes within timeout 1 s; raise sampler_timeout_s"):
            sampler.sample(policy.get_params(), tasks, 1)  # 20 steps x 0.2 s would succeed without the timeout
    finally:
        sampler.close()


def test_a_batched_env_with_one_random_stream_is_refused(local_ray) -> None:
    env = make_family("TabularMDP")
    seed_family(env, 0)
    policy = build_policy(load_config("2d-navigation", ["family=TabularMDP", "hidden_sizes=[8]"]), env)
    sampler = RaySampler("TabularMDP", policy, 5, num_workers=2)
    with pytest.raises(SamplerError, match="use sampler: local"):
        sampler.sample(policy.get_params(), sample_tasks(env, 2), 2)
    sampler.close()


def test_without_ray_the_error_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'metarl\[ray\]'"):
        require_ray()


def test_bad_ray_settings_are_config_errors() -> None:
    for override, named in [
        ("sampler=remote", "sampler"),
        ("num_workers=0", "num_workers"),
        ("sampler_timeout_s=0", "sampler_timeout_s"),
        ("ray_address=' '", "ray_address"),
    ]:
        with pytest.raises(ConfigError, match=named):
            load_config("2d-navigation", [override])


def test_closing_leaves_no_ray_process_behind() -> None:
    """Runs last in the module: a sampler that started Ray itself stops it and every worker."""
    if ray.is_initialized():
        ray.shutdown()
    policy, tasks = setup("Navigation2D", num_tasks=2)
    sampler = RaySampler("Navigation2D", policy, 5, num_workers=2)
    pids = [pid for pid, _ in sampler.worker_pids()]
    sampler.sample(policy.get_params(), tasks, 2)
    sampler.close()
    assert not ray.is_initialized()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)
    left = subprocess.run(["pgrep", "-f", "-P", str(os.getpid()), "raylet|gcs_server"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_two_node_cluster_on_this_machine_hosts_workers_on_both_and_trains_identically() -> None:
    """scripts/ray_cluster_check.py: `ray start --head` and a second `ray start --address`, then a training on it."""
    if ray.is_initialized():
        ray.shutdown()
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "ray_cluster_check.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   2 workers on 2 nodes" in done.stdout and "ok   training on the cluster" in done.stdout


def test_an_unreachable_ray_address_is_one_error_line(tmp_path, capsys) -> None:
    from metarl.cli import main

    if ray.is_initialized():
        ray.shutdown()
    run = tmp_path / "run"
    argv = ["train", "--no-progress", "--run-dir", str(run), "--set", *TINY, "sampler=ray", "ray_address=127.0.0.1:1"]
    with no_hang():  # the TCP check answers; ray.init alone retries for minutes
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Cannot reach a Ray head at ray_address=127.0.0.1:1"), err
    assert not (run / "config.yaml").exists() and not (run / "progress.csv").exists()
