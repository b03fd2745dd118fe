"""Learning on a MuJoCo family (slow tier, ~7 min on 2 cores): MAML-TRPO on HalfCheetahDir adapts."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from metarl.config import load_config  # noqa: E402
from metarl.evaluate import evaluate_run  # noqa: E402
from metarl.trainer import Trainer  # noqa: E402


@pytest.mark.slow
def test_halfcheetah_dir_post_adaptation_return_beats_pre_adaptation(tmp_path):
    """125 meta-iterations of the published config (horizon 100, pytorch-maml-rl's), seeded.

    On 40 held-out tasks x 20 episodes, one adaptation step must raise the return: the
    per-task paired difference (after - before) must exceed two standard errors.
    """
    cfg = load_config("halfcheetah-dir", ["horizon=100", "num_iterations=125", "tensorboard=false", "seed=0"])
    Trainer(cfg, tmp_path / "run", progress=False).train()
    report = evaluate_run(tmp_path / "run", num_tasks=40, episodes_per_task=20, max_steps=1)
    returns = np.asarray(report["per_task_returns"])
    diff = returns[1] - returns[0]
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert diff.mean() > 2.0 * se, (returns.mean(1), diff.mean(), se)
