"""Shared test set-up: examples/ and tests/helpers.py are importable by name; shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # `import sinusoid` is examples/sinusoid.py
sys.path.insert(0, str(ROOT / "tests"))  # `from helpers import TINY` is tests/helpers.py


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run the test with one torch thread (the MuJoCo tests compare against single-threaded references)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
