"""Task families, registered with Gymnasium under the ``metarl/`` namespace.

Importing ``metarl`` registers them; ``gymnasium.make("metarl/Navigation2D-v0")`` then works.
"""

import gymnasium as gym

from metarl.envs.navigation import BatchedNavigation2D, GoalTask, Navigation2DEnv

FAMILIES = {
    "metarl/Navigation2D-v0": ("metarl.envs.navigation:Navigation2DEnv", 100),
}

for _id, (_entry, _horizon) in FAMILIES.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_horizon)

__all__ = ["BatchedNavigation2D", "GoalTask", "Navigation2DEnv", "FAMILIES"]
