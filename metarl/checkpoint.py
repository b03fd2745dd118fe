"""Checkpoints: policy, iteration, config and every RNG state, written atomically.

A checkpoint is written to a temporary file in the same folder and renamed into place,
so a crash mid-write never damages the previous checkpoint.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import torch

from metarl.errors import CheckpointError

FORMAT = "metarl-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus format tags) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: str | Path, missing: str, corrupt_hint: str = "") -> dict[str, Any]:
    """The dict ``save_checkpoint`` wrote at ``path``, its format and version checked.

    Args:
        path: The file.
        missing: The error's message when there is no file.
        corrupt_hint: What to do, appended to the error for an unreadable file.

    Raises:
        CheckpointError: The file is missing, unreadable, truncated or of another format or version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file makes the unpickler raise anything
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or truncated and cannot be read ({type(e).__name__}: {e}).{corrupt_hint}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a metarl checkpoint.")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')}, this metarl reads version {VERSION}."
        )
    return state


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: The file is missing, unreadable, truncated or of another format.
    """
    state = read_state(
        path,
        f"No checkpoint at {path}. A run directory keeps its checkpoints in checkpoints/ (last.pt is the newest).",
        " Resume from an earlier checkpoint in the same folder.",
    )
    for key in ("iteration", "config", "policy", "rng"):
        if key not in state:
            raise CheckpointError(f"Checkpoint {path} lacks {key!r}; it is incomplete.")
    return state


def capture_global_rng() -> dict[str, Any]:
    """Python's and torch's global RNG states."""
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def restore_global_rng(state: dict[str, Any]) -> None:
    """Restore what ``capture_global_rng`` captured."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
