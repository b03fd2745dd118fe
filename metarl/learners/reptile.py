"""Reptile for reinforcement learning (Nichol, Achiam and Schulman 2018, "On First-Order
Meta-Learning Algorithms", Algorithm 2, with policy-gradient inner steps).

Every sampled phase of a meta-iteration is one on-policy inner step per task: the
``num_steps`` inner batches (sampled along the adaptation, as for MAML) and then the
post-adaptation batch, so Reptile spends exactly the environment steps MAML spends::

    phi_k^0 = theta,   phi_k^{i+1} = phi_k^i - alpha grad L^in_k(phi_k^i)   (plain PG, i = 0..num_steps)
    theta  <- theta + epsilon * mean_k (phi_k^{num_steps+1} - theta)

First order and cheap: no derivative through the inner steps and no curvature. The adapted
policy that is evaluated is the same one-step (or ``num_steps``-step) adaptation every
learner uses (``metarl.adaptation``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from metarl.adaptation import Adaptation, inner_loss, inner_step
from metarl.config import TrainConfig
from metarl.episodes import Episodes
from metarl.errors import ConfigError, TrainingDivergedError
from metarl.learners.base import MetaLearner, MetaUpdateStats
from metarl.policies import Params, detach_params, stack_params

_DEFAULTS = TrainConfig()  # each shared default is written once, in the config


@dataclass(frozen=True)
class ReptileSettings:
    """Hyperparameters of Reptile."""

    fast_lr: float = _DEFAULTS.fast_lr
    """Inner step size alpha."""
    outer_lr: float = 1.0
    """epsilon: the fraction of the way theta moves toward the mean adapted parameters."""
    first_order: bool = True
    """Always first order (part of the settings protocol every learner shares)."""
    estimator: str = "plain"
    """The inner loss (its gradient is all Reptile uses)."""

    def __post_init__(self) -> None:
        for key in ("fast_lr", "outer_lr"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}.")

    @classmethod
    def from_config(cls, config: TrainConfig) -> ReptileSettings:
        """``fast_lr`` and ``outer_lr`` of the config (``null``: epsilon = 1).

        Raises:
            ConfigError: An estimator is set (Reptile uses only the inner gradient), or a bad value.
        """
        if config.estimator not in (None, "plain"):
            raise ConfigError(
                f"reptile is first order and uses only the inner gradient; estimator {config.estimator!r} has no "
                "effect there: leave it null."
            )
        try:
            return cls(fast_lr=config.fast_lr, outer_lr=cls.outer_lr if config.outer_lr is None else config.outer_lr)
        except ValueError as e:
            raise ConfigError(str(e)) from e


class Reptile(MetaLearner[ReptileSettings]):
    """The Reptile learner (see the module docstring).

    Args:
        policy: The policy (on ``device``); its parameters are the meta-parameters.
        settings: ``ReptileSettings``.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the meta-update runs.
    """

    name = "reptile"

    def step(self, adaptation: Adaptation, post_episodes: Episodes) -> MetaUpdateStats:
        """Replay the inner steps, take one more on the post-adaptation batch, move theta.

        The stats report the post-adaptation batch's inner loss before and after that last
        step (``loss_before`` / ``loss_after``), ``||theta - mean_k phi_k||`` as
        ``grad_norm``, and the KL between the old and new *initial* policies on the
        post-adaptation observations as ``kl_after``.
        """
        t0 = time.perf_counter()
        s = self.settings
        self._check(adaptation)
        inner_batches = adaptation.batches
        post_batch = self.process(post_episodes)
        theta = {n: p.detach() for n, p in self.policy.get_params().items()}
        k = post_batch.obs.shape[0]
        phi: Params = {n: p.clone() for n, p in stack_params(theta, k).items()}
        with torch.enable_grad():
            for batch in [*inner_batches, post_batch]:
                leaf = {n: p.detach().requires_grad_(True) for n, p in phi.items()}
                if batch is post_batch:
                    loss_before = float(inner_loss(self.policy, leaf, post_batch, s.estimator).mean().detach())
                phi = detach_params(
                    inner_step(self.policy, leaf, batch, s.fast_lr, create_graph=False, estimator=s.estimator)
                )
        with torch.no_grad():
            loss_after = float(inner_loss(self.policy, phi, post_batch, s.estimator).mean())
            delta = {n: phi[n].mean(0) - theta[n] for n in theta}
            if not all(torch.isfinite(d).all() for d in delta.values()):
                raise TrainingDivergedError(
                    "The Reptile update is NaN or inf: lower fast_lr, or check the rewards for extreme values."
                )
            old_dist = self.policy.distribution(theta, post_batch.obs)
            new_theta = {n: theta[n] + s.outer_lr * delta[n] for n in theta}
            kl = float(
                (post_batch.weights * self.policy.kl(old_dist, self.policy.distribution(new_theta, post_batch.obs)))
                .sum(-1)
                .mean()
            )
            self.policy.load_params(new_theta)
            norm = float(torch.stack([(d**2).sum() for d in delta.values()]).sum().sqrt())
        return MetaUpdateStats(
            loss_before=loss_before,
            loss_after=loss_after,
            kl_after=kl,
            accepted=True,
            step_fraction=1.0,
            backtracks=0,
            grad_norm=norm,
            grad_seconds=time.perf_counter() - t0,
        )
