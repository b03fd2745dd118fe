"""Checkpoints: round trip, every kind of bad file, atomic writes, RNG capture."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

import metarl.checkpoint as checkpoint
from metarl.checkpoint import capture_global_rng, load_checkpoint, restore_global_rng, save_checkpoint
from metarl.errors import CheckpointError


def make_state(iteration: int = 3) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(iteration)
    return {
        "iteration": iteration,
        "total_env_steps": 1234,
        "config": {"family": "Navigation2D", "fast_lr": 0.1, "hidden_sizes": [8]},
        "policy": {"layers.0.weight": torch.randn(8, 2, generator=gen), "log_std": torch.zeros(2)},
        "rng": {"global": capture_global_rng(), "sampler_torch": gen.get_state()},
    }


def test_round_trip(tmp_path: Path) -> None:
    state = make_state()
    path = tmp_path / "checkpoints" / "last.pt"  # the folder is created
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["format"] == "metarl-checkpoint" and loaded["version"] == 1
    assert loaded["iteration"] == 3 and loaded["total_env_steps"] == 1234
    assert loaded["config"] == state["config"]
    for name, tensor in state["policy"].items():
        assert torch.equal(loaded["policy"][name], tensor)
    assert torch.equal(loaded["rng"]["sampler_torch"], state["rng"]["sampler_torch"])
    assert loaded["rng"]["global"]["python"] == state["rng"]["global"]["python"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_overwrite_replaces_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1))
    save_checkpoint(path, make_state(2))
    assert load_checkpoint(path)["iteration"] == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"No checkpoint at .*nope\.pt.*last\.pt is the newest"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="No checkpoint at"):
        load_checkpoint(tmp_path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"is corrupt or truncated and cannot be read .*Resume from an earlier checkpoint"
    ):
        load_checkpoint(path)


@pytest.mark.parametrize("size", [0, 7, 4096])
def test_random_bytes_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(random.Random(size).randbytes(size))
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        load_checkpoint(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_text("iteration: 3\n")
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "obj",
    [{"state_dict": {"w": torch.zeros(2)}}, torch.zeros(3), [1, 2, 3], {"format": "other-tool", "version": 1}],
)
def test_torch_file_of_another_format(tmp_path: Path, obj: Any) -> None:
    path = tmp_path / "model.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=r"model\.pt is not a metarl checkpoint"):
        load_checkpoint(path)


def test_pickle_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    # weights_only loading: a pickle holding a non-tensor class is rejected, not executed.
    path = tmp_path / "evil.pt"
    torch.save({"format": "metarl-checkpoint", "version": 1, "obj": Path("x")}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)


def test_other_version(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    torch.save({"format": "metarl-checkpoint", "version": 99, **make_state()}, path)
    with pytest.raises(CheckpointError, match="has checkpoint version 99, this metarl reads version 1"):
        load_checkpoint(path)


@pytest.mark.parametrize("missing", ["iteration", "config", "policy", "rng"])
def test_incomplete_checkpoint(tmp_path: Path, missing: str) -> None:
    state = make_state()
    del state[missing]
    path = tmp_path / "last.pt"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=f"lacks '{missing}'; it is incomplete"):
        load_checkpoint(path)


def test_save_is_atomic_when_torch_save_fails_midway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1))
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, f, *args, **kwargs)  # write a complete payload ...
        f.write(b"partial garbage")
        raise OSError("disk full")  # ... then fail before the rename

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_state(2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_interrupted_save_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04half")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "last.pt", make_state())
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_state(1))

    def no_replace(src: Any, dst: Any) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(checkpoint.os, "replace", no_replace)
    with pytest.raises(PermissionError):
        save_checkpoint(path, make_state(2))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["iteration"] == 1


def test_global_rng_capture_and_restore() -> None:
    state = capture_global_rng()
    a = (random.random(), torch.rand(3))
    random.random()
    torch.rand(5)
    restore_global_rng(state)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0]
    assert torch.equal(a[1], b[1])
