"""Helpers shared by several test modules (import them: ``from helpers import TINY``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metarl.families import make_family
from metarl.policies import make_policy
from metarl.sampler import Sampler
from metarl.task_api import seed_family

TINY = [
    "meta_batch_size=4",
    "episodes_per_task=4",
    "horizon=20",
    "hidden_sizes=[16]",
    "tensorboard=false",
    "torch_threads=1",
    "cg_iters=5",
]
"""Overrides of the 2d-navigation config for training runs of a second or two."""


def replay_matches_sampler(family: str, env_kwargs: dict[str, Any], horizon: int) -> list[int]:
    """Sample with zero reset noise, replay every episode's actions in a fresh env, check that
    observations, rewards and the end of the mask agree exactly. Returns the episode lengths."""
    kwargs = {"reset_noise_scale": 0.0, **env_kwargs}
    env = make_family(family, **kwargs)
    seed_family(env, 0)
    tasks = env.unwrapped.sample_tasks(2)
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh")
    sampler = Sampler(family, policy, horizon=horizon, seed=0, env_kwargs=kwargs)
    ep = sampler.sample(policy.get_params(), tasks, episodes_per_task=2)
    sampler.close()
    t_total = ep.rewards.shape[-1]
    lengths = []
    for k in range(2):
        for n in range(2):
            mask = ep.mask[k, n]
            length = int(mask.sum())
            assert torch.equal(mask[:length], torch.ones(length)) and not mask[length:].any()  # 1...1 0...0
            replay = make_family(family, **kwargs)
            replay.unwrapped.set_task(tasks[k])
            obs, _ = replay.reset(seed=0)
            ended = None
            for t in range(t_total):
                assert np.array_equal(obs.astype(np.float32), ep.observations[k, n, t].numpy()), (k, n, t)
                obs, reward, terminated, truncated, _ = replay.step(ep.actions[k, n, t].numpy())
                assert np.float32(reward) == ep.rewards[k, n, t].item(), (k, n, t)
                if terminated or truncated:
                    ended = t
                    break
            assert length == (ended + 1 if ended is not None else horizon), (k, n, length, ended)
            lengths.append(length)
    return lengths
