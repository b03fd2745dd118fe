"""torch_threads: 0 picks its thread count from the cores other processes leave idle."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from helpers import TINY

from metarl.config import load_config
from metarl.runtime import LoadAwareThreads, busy_cpu_seconds, usable_cpus
from metarl.trainer import Trainer

STAT = """cpu  300 0 100 1000 10 0 0 0 0 0
cpu0 100 0 50 500 5 0 0 0 0 0
cpu1 200 0 50 500 5 0 0 0 0 0
intr 12345
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_busy_seconds_count_only_the_given_cpus_and_skip_idle_and_iowait(tmp_path, monkeypatch) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    assert busy_cpu_seconds([0], str(stat)) == pytest.approx(1.5)
    assert busy_cpu_seconds([0, 1], str(stat)) == pytest.approx(4.0)
    assert busy_cpu_seconds([7], str(stat)) == 0.0
    assert busy_cpu_seconds([0], str(tmp_path / "missing")) is None


def scripted(snapshots: list[tuple[float, float, float]], cpus: int = 2, max_threads: int = 2) -> LoadAwareThreads:
    """A governor on ``cpus`` cores whose snapshots (wall, all busy, own cpu seconds) are given."""
    governor = LoadAwareThreads(max_threads=max_threads)
    governor.cpus = list(range(cpus))
    feed = iter(snapshots)
    governor._snapshot = lambda: next(feed)  # type: ignore[method-assign]
    governor._last = governor._snapshot()
    return governor


@pytest.mark.parametrize(
    "others,threads",
    [(0.0, 2), (0.2, 2), (0.3, 1), (1.0, 1), (2.0, 1)],
    ids=["quiet", "a little", "a third of a core", "one busy core", "both busy"],
)
def test_threads_are_the_cores_other_processes_leave(others: float, threads: int) -> None:
    # over 1 s this process used 1.5 cpu-seconds; the others `others`
    governor = scripted([(0.0, 0.0, 0.0), (1.0, 1.5 + others, 1.5)])
    assert governor.update() == threads
    assert governor.others == pytest.approx(others)
    assert torch.get_num_threads() == threads


def test_the_count_comes_back_when_the_load_goes_and_never_exceeds_the_maximum() -> None:
    governor = scripted([(0, 0, 0), (1, 2.0, 1.0), (2, 3.0, 2.0), (3, 3.0, 3.0)], cpus=8, max_threads=4)
    assert governor.update() == 4  # others used 1 of 8 cores: 7 free, capped at 4
    governor.cpus = [0, 1]
    assert governor.update() == 2  # quiet again
    assert governor.update() == 2  # own time above the machine's busy time (clock skew): others = 0


def test_too_short_an_interval_keeps_the_count() -> None:
    governor = scripted([(0, 0, 0), (0.01, 1.0, 0.0)])
    assert governor.update() == 2


def test_a_machine_without_proc_stat_keeps_the_default(monkeypatch) -> None:
    monkeypatch.setattr("metarl.runtime.busy_cpu_seconds", lambda cpus: None)
    governor = LoadAwareThreads(max_threads=3)
    assert governor.update() == 3


@pytest.mark.skipif(len(usable_cpus()) < 2 or busy_cpu_seconds([0]) is None, reason="needs 2 cores and /proc/stat")
def test_a_real_busy_process_is_seen(one_torch_thread) -> None:
    governor = LoadAwareThreads(max_threads=len(usable_cpus()))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in usable_cpus()]
    try:
        time.sleep(1.0)
        governor.update()  # discard the start-up interval
        time.sleep(1.0)
        assert governor.update() == 1
        assert governor.others > 0.8 * (len(usable_cpus()) - 0.2)
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def test_the_trainer_updates_the_count_only_when_torch_threads_is_0(tmp_path) -> None:
    auto = Trainer(load_config("2d-navigation", [*TINY, "torch_threads=0"]), tmp_path / "auto", progress=False)
    fixed = Trainer(load_config("2d-navigation", TINY), tmp_path / "fixed", progress=False)
    assert isinstance(auto.load_aware, LoadAwareThreads) and fixed.load_aware is None
    fixed.run_iteration()
    assert fixed.threads == 1
