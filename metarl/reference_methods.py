"""The reference methods MAML is compared with (the MAML paper's baselines), trained with Stable-Baselines3 PPO.

* **pretrained**: PPO on the task family with a new task every episode (one policy for the
  whole task distribution), then fine-tuned like MAML;
* **oracle**: PPO whose observation includes the task (``TaskObservationEnv``): an upper
  reference that needs no adaptation;

Both use metarl's policy architecture (``hidden_sizes`` tanh MLP with a state-independent
log standard deviation), so ``sb3_to_metarl`` copies their weights into a
``GaussianMLPPolicy`` and fine-tuning uses the very inner step MAML uses. With
``normalize`` PPO trains on running-normalized observations and rewards (SB3's
``VecNormalize``, as RL Baselines3 Zoo does for MuJoCo; observations unclipped), and the
final observation statistics are folded into the first layer, so the copied policy acts
on raw observations exactly as PPO's did. ``save_baseline`` / ``load_baseline`` keep such
a copied policy in a file (``metarl benchmark`` writes one per trained baseline and seed).
Needs the ``baselines`` extra (``pip install 'metarl[baselines]'``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.checkpoint import read_state, save_checkpoint
from metarl.errors import CheckpointError
from metarl.families import make_family
from metarl.policies import GaussianMLPPolicy, Policy
from metarl.task_api import seed_family


def require_sb3() -> Any:
    """Import stable_baselines3 or say which extra to install."""
    try:
        import stable_baselines3
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("The PPO baselines need stable-baselines3: pip install 'metarl[baselines]'.") from e
    return stable_baselines3


def task_vector(task: Any) -> np.ndarray:
    """A task as a flat float vector (``task.to_array()``, dict values by sorted key, dataclass
    fields, numbers, arrays).

    Raises:
        TypeError: The task has no numeric representation (give it a ``to_array`` method).
    """
    if hasattr(task, "to_array"):
        return np.asarray(task.to_array(), dtype=np.float64).reshape(-1)
    if isinstance(task, dict):
        parts = [task_vector(task[k]) for k in sorted(task)]
        return np.concatenate(parts) if parts else np.zeros(0)
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        parts = [task_vector(getattr(task, f.name)) for f in dataclasses.fields(task)]
        return np.concatenate(parts) if parts else np.zeros(0)
    try:
        return np.asarray(task, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"Cannot turn task {task!r} into a vector for the oracle; give the task class a to_array() method."
        ) from e


class TaskObservationEnv(gym.Env):
    """A task family whose observation is ``concat(obs, task_vector(task))`` (the oracle's view).

    Args:
        family: The underlying family id.
        **env_kwargs: For ``gymnasium.make`` of the family.
    """

    def __init__(self, family: str, **env_kwargs: Any) -> None:
        self.env = make_family(family, **env_kwargs)
        base = self.env.unwrapped
        self.action_space = self.env.action_space
        dim = task_vector(base.sample_tasks(1)[0]).size  # type: ignore[attr-defined]
        space = self.env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise TypeError(f"The oracle needs a flat Box observation space, {family} has {space}.")
        self.observation_space = gym.spaces.Box(
            np.concatenate([space.low, np.full(dim, -np.inf)]).astype(np.float32),
            np.concatenate([space.high, np.full(dim, np.inf)]).astype(np.float32),
        )
        self.np_random = base.np_random

    def _augment(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, task_vector(self.get_task())]).astype(np.float32)

    def sample_tasks(self, n: int) -> list[Any]:
        """Tasks of the underlying family (drawn from its RNG)."""
        self.env.unwrapped.np_random = self.np_random
        return self.env.unwrapped.sample_tasks(n)  # type: ignore[attr-defined]

    def set_task(self, task: Any) -> None:
        """Set the underlying family's task."""
        self.env.unwrapped.set_task(task)  # type: ignore[attr-defined]

    def get_task(self) -> Any:
        """The underlying family's task."""
        return self.env.unwrapped.get_task()  # type: ignore[attr-defined]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._augment(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._augment(obs), float(reward), terminated, truncated, info


class NewTaskEachEpisode(gym.Wrapper):
    """Draws a task from the family (its own RNG) and sets it at every ``reset``."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:  # the family's RNG draws both the tasks and the initial states
            seed_family(self.env, seed)
        base = self.env.unwrapped
        base.set_task(base.sample_tasks(1)[0])  # type: ignore[attr-defined]
        return self.env.reset(options=options)  # reset(seed=...) would re-seed and repeat the task


def train_ppo(
    family: str,
    horizon: int,
    timesteps: int,
    seed: int,
    hidden_sizes: tuple[int, ...] = (64, 64),
    init_std: float = 1.0,
    oracle: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    n_envs: int = 8,
    rollout_steps: int = 2048,
    normalize: bool = False,
    batch_size: int = 64,
) -> Any:
    """Train SB3 PPO on the family, a new task every episode.

    Args:
        family: Family id.
        horizon: Episode length (a ``TimeLimit``).
        timesteps: PPO's budget of environment steps.
        seed: Seeds PPO and the task draws.
        hidden_sizes: The tanh MLP of the policy (and of the value function).
        init_std: Initial action standard deviation.
        oracle: Observe the task (``TaskObservationEnv``).
        env_kwargs: For the family.
        n_envs: Parallel envs (in-process).
        rollout_steps: Environment steps per PPO update, over all envs (SB3's default
            2048: ``n_steps = rollout_steps // n_envs`` per env). A larger rollout means
            fewer updates for the same budget: at 250k steps, 8 envs x 2048 would be 15.
        normalize: Running normalization of observations and rewards (``VecNormalize``).
        batch_size: PPO's minibatch (SB3's default 64; capped at the rollout).

    Returns:
        The trained ``stable_baselines3.PPO`` model.
    """
    sb3 = require_sb3()
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    kwargs = dict(env_kwargs or {})

    def make(i: int) -> Any:
        def thunk() -> gym.Env:
            env: gym.Env = TaskObservationEnv(family, **kwargs) if oracle else make_family(family, **kwargs)
            seed_family(env, seed * 1000 + i)
            return NewTaskEachEpisode(gym.wrappers.TimeLimit(env, horizon))

        return thunk

    vec: Any = DummyVecEnv([make(i) for i in range(n_envs)])
    if normalize:  # unclipped observations, so that the statistics fold into the first layer exactly
        vec = VecNormalize(vec, norm_obs=True, norm_reward=True, clip_obs=np.inf)
    vec.seed(seed)
    policy_kwargs = {
        "net_arch": {"pi": list(hidden_sizes), "vf": list(hidden_sizes)},
        "activation_fn": torch.nn.Tanh,
        "log_std_init": math.log(init_std),
    }
    if rollout_steps < n_envs:
        raise ValueError(f"rollout_steps ({rollout_steps}) must be >= n_envs ({n_envs}).")
    n_steps = max(1, min(rollout_steps, timesteps) // n_envs)
    model = sb3.PPO(
        "MlpPolicy",
        vec,
        n_steps=n_steps,
        batch_size=min(batch_size, n_steps * n_envs),
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=timesteps)
    return model


def sb3_to_metarl(model: Any, hidden_sizes: tuple[int, ...]) -> GaussianMLPPolicy:
    """Copy an SB3 PPO Gaussian policy's actor into a metarl ``GaussianMLPPolicy``.

    A model trained on ``VecNormalize`` observations gets their final statistics folded into
    the first layer: ``W (x - mu) / sigma + b = (W / sigma) x + (b - W mu / sigma)``.

    Raises:
        ValueError: The SB3 policy is not a ``hidden_sizes`` tanh MLP with a Gaussian head.
    """
    sb3_policy = model.policy
    obs_dim = int(np.prod(model.observation_space.shape))
    act_dim = int(np.prod(model.action_space.shape))
    linears = [m for m in sb3_policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    if [layer.out_features for layer in linears] != list(hidden_sizes) or not hasattr(sb3_policy, "log_std"):
        raise ValueError(
            f"The SB3 policy's actor is {[layer.out_features for layer in linears]} wide; metarl's policy is "
            f"{list(hidden_sizes)} with a Gaussian head."
        )
    policy = GaussianMLPPolicy(obs_dim, act_dim, tuple(hidden_sizes), "tanh")
    with torch.no_grad():
        for target, layer in zip(policy.layers, [*linears, sb3_policy.action_net]):
            assert isinstance(target, torch.nn.Linear)
            target.weight.copy_(layer.weight)
            target.bias.copy_(layer.bias)
        policy.log_std.copy_(sb3_policy.log_std)
        stats = _obs_statistics(model)
        if stats is not None:
            first = policy.layers[0]
            assert isinstance(first, torch.nn.Linear)
            mean, std = (torch.as_tensor(a, dtype=torch.float64) for a in stats)
            weight = first.weight.double() / std
            first.bias.copy_((first.bias.double() - weight @ mean).float())
            first.weight.copy_(weight.float())
    return policy


def _obs_statistics(model: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean, std)`` of the observations of a model trained on ``VecNormalize``, else ``None``.

    Raises:
        ValueError: The observations were clipped (the fold would not be exact).
    """
    from stable_baselines3.common.vec_env import VecNormalize

    env = model.get_env()
    while env is not None and not isinstance(env, VecNormalize):
        env = getattr(env, "venv", None)
    if env is None or not env.norm_obs:
        return None
    if np.isfinite(env.clip_obs):
        raise ValueError(
            f"The PPO model clipped its normalized observations at {env.clip_obs}; train it with "
            "VecNormalize(clip_obs=np.inf) (train_ppo(normalize=True)) so the statistics fold into the policy."
        )
    rms: Any = env.obs_rms  # one RunningMeanStd: the observation space is a Box, not a Dict
    return np.asarray(rms.mean, dtype=np.float64), np.sqrt(np.asarray(rms.var, dtype=np.float64) + env.epsilon)


BASELINE_KIND = "ppo-baseline"


def save_baseline(path: str | Path, policy: GaussianMLPPolicy, info: dict[str, Any]) -> None:
    """Atomically write a copied PPO policy (``sb3_to_metarl``) and what it was trained with.

    Args:
        path: The file (its folder is created).
        policy: The tanh ``GaussianMLPPolicy`` to keep.
        info: JSON-like facts stored beside it (method, family, env steps, recipe, ...).
    """
    sizes = [layer.out_features for layer in policy.layers]
    state = {"policy": policy.state_dict(), "obs_dim": policy.obs_dim, "hidden_sizes": sizes[:-1]}
    save_checkpoint(path, {"kind": BASELINE_KIND, **state, "act_dim": sizes[-1], "info": dict(info)})


def load_baseline(path: str | Path) -> tuple[GaussianMLPPolicy, dict[str, Any]]:
    """Read a file written by ``save_baseline``: ``(policy, info)``.

    Raises:
        CheckpointError: The file is missing, unreadable, or not a saved baseline.
    """
    state = read_state(path, f"No saved baseline at {path}.")
    if state.get("kind") != BASELINE_KIND:
        raise CheckpointError(f"{path} is not a saved metarl baseline (metarl benchmark writes them to baselines/).")
    policy = GaussianMLPPolicy(state["obs_dim"], state["act_dim"], tuple(state["hidden_sizes"]), "tanh")
    policy.load_state_dict(state["policy"])
    return policy, state["info"]


def policy_mean(policy: Policy, obs: np.ndarray) -> np.ndarray:
    """The policy's mean action for ``obs [B, obs_dim]`` (used to check a weight transfer)."""
    with torch.no_grad():
        return policy.distribution(policy.get_params(), torch.as_tensor(obs, dtype=torch.float32))[0].numpy()
