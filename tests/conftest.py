"""Shared test set-up: the examples are importable by name, and the small configs the tests train with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # `import sinusoid` is examples/sinusoid.py

TINY_NAVIGATION = [
    "meta_batch_size=4",
    "episodes_per_task=4",
    "horizon=20",
    "hidden_sizes=[16]",
    "tensorboard=false",
    "torch_threads=1",
]
"""Overrides of the 2d-navigation config for runs of a few seconds."""


@pytest.fixture
def tiny_navigation() -> list[str]:
    """A copy of ``TINY_NAVIGATION`` (a test may extend it)."""
    return list(TINY_NAVIGATION)
