"""Task families, registered with Gymnasium under the ``metarl/`` namespace.

Importing ``metarl`` registers them; ``gymnasium.make("metarl/Navigation2D-v0")`` then works.
The MuJoCo families (``metarl.envs.mujoco.locomotion``, ``metarl.envs.mujoco.dynamics``) and the
Meta-World families (``metarl.envs.metaworld``) are registered by entry-point string only, so this
module never imports ``mujoco`` or ``metaworld``: without the ``mujoco`` (or ``metaworld``) extra,
``metarl`` imports and making one of them raises an ``ImportError`` that names it.
"""

import gymnasium as gym

from metarl.envs.navigation import BatchedNavigation2D, GoalTask, Navigation2DEnv

MUJOCO_HORIZON = 200  # the MAML paper's locomotion horizon
METAWORLD_HORIZON = 500  # Meta-World's max_path_length

FAMILIES = {
    "metarl/Navigation2D-v0": ("metarl.envs.navigation:Navigation2DEnv", 100),
    # Tabular MDPs and Bernoulli bandits with exact expected returns (envs/tabular.py).
    "metarl/TabularMDP-v0": ("metarl.envs.tabular:TabularMDPEnv", 10),
    "metarl/Bandit-v0": ("metarl.envs.tabular:BanditEnv", 10),
    # Goal velocity / direction / position (envs/mujoco/locomotion.py).
    "metarl/HalfCheetahVel-v0": ("metarl.envs.mujoco.locomotion:HalfCheetahVelEnv", MUJOCO_HORIZON),
    "metarl/HalfCheetahDir-v0": ("metarl.envs.mujoco.locomotion:HalfCheetahDirEnv", MUJOCO_HORIZON),
    "metarl/AntVel-v0": ("metarl.envs.mujoco.locomotion:AntVelEnv", MUJOCO_HORIZON),
    "metarl/AntDir-v0": ("metarl.envs.mujoco.locomotion:AntDirEnv", MUJOCO_HORIZON),
    "metarl/AntDir2D-v0": ("metarl.envs.mujoco.locomotion:AntDir2DEnv", MUJOCO_HORIZON),
    "metarl/AntGoal-v0": ("metarl.envs.mujoco.locomotion:AntGoalEnv", MUJOCO_HORIZON),
    # Random physical parameters (envs/mujoco/dynamics.py).
    "metarl/HalfCheetahRandParams-v0": ("metarl.envs.mujoco.dynamics:HalfCheetahRandParamsEnv", MUJOCO_HORIZON),
    "metarl/AntRandParams-v0": ("metarl.envs.mujoco.dynamics:AntRandParamsEnv", MUJOCO_HORIZON),
    "metarl/HopperRandParams-v0": ("metarl.envs.mujoco.dynamics:HopperRandParamsEnv", MUJOCO_HORIZON),
    "metarl/Walker2dRandParams-v0": ("metarl.envs.mujoco.dynamics:Walker2dRandParamsEnv", MUJOCO_HORIZON),
    # Meta-World's meta-learning benchmarks (envs/metaworld.py; the metaworld extra).
    "metarl/MetaWorld-ML1-v0": ("metarl.envs.metaworld:MetaWorldML1Env", METAWORLD_HORIZON),
    "metarl/MetaWorld-ML10-v0": ("metarl.envs.metaworld:MetaWorldML10Env", METAWORLD_HORIZON),
    "metarl/MetaWorld-ML45-v0": ("metarl.envs.metaworld:MetaWorldML45Env", METAWORLD_HORIZON),
}

for _id, (_entry, _horizon) in FAMILIES.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_horizon)

__all__ = ["BatchedNavigation2D", "GoalTask", "Navigation2DEnv", "FAMILIES", "MUJOCO_HORIZON"]
