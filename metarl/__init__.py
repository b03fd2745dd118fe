"""metarl: meta-reinforcement learning for modern PyTorch and Gymnasium."""

import metarl.envs  # noqa: F401  (registers the task families with Gymnasium)

__version__ = "0.1.0"
