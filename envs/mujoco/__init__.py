"""The MuJoCo task families (needs the ``mujoco`` extra).

================  ===============================================================
module            holds
================  ===============================================================
``base``          the import guard, task helpers, quiet model loading
``family``        ``MujocoTaskFamily``: tasks, action normalization, pickling
``locomotion``    HalfCheetah / Ant velocity, direction and goal families
``dynamics``      random masses, inertias, damping and friction
``batch``         ``BatchedMujocoEnv``: all episodes of a meta-batch in ``mujoco.batch``
================  ===============================================================

Nothing here is imported by ``metarl.envs`` itself: the families are registered with
Gymnasium by entry-point string, so ``metarl`` imports without MuJoCo.
"""
