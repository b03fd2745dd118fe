"""metarl: meta-reinforcement learning for modern PyTorch and Gymnasium.

The public face; everything else is importable from its module (``docs/architecture.md``
maps them). Importing ``metarl`` registers the task families with Gymnasium
(``gymnasium.make("metarl/Navigation2D-v0")``).

Example:
    >>> import metarl
    >>> config = metarl.load_config("2d-navigation", ["num_iterations=5"])
    >>> rows = metarl.Trainer(config, "runs/demo").train()            # doctest: +SKIP
    >>> report = metarl.evaluate_run("runs/demo", num_tasks=40)       # doctest: +SKIP
"""

from metarl.adaptation import Adaptation, InnerLoop
from metarl.check_env import check_family
from metarl.config import TrainConfig, load_config
from metarl.episodes import Episodes
from metarl.errors import MetarlError
from metarl.evaluate import evaluate_run
from metarl.families import make_family
from metarl.learners import LEARNERS, make_learner
from metarl.sampler import Sampler
from metarl.task_api import seed_family
from metarl.trainer import Trainer, train

__version__ = "0.1.0"

__all__ = [
    "LEARNERS",
    "Adaptation",
    "Episodes",
    "InnerLoop",
    "MetarlError",
    "Sampler",
    "TrainConfig",
    "Trainer",
    "check_family",
    "evaluate_run",
    "load_config",
    "make_family",
    "make_learner",
    "seed_family",
    "train",
]
