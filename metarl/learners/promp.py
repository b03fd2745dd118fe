"""ProMP and MAML-PPO: a clipped post-adaptation surrogate, minimized by several Adam steps.

ProMP (Rothfuss et al. 2019, "ProMP: Proximal Meta-Policy Search", eq. 10 and Algorithm 1).
The episodes ``D_k`` (inner) and ``D'_k`` (post-adaptation) are sampled once, with
``theta_o``; then ``ppo_steps`` Adam steps minimize, re-adapting from the current ``theta``
each time::

    theta'_k(theta) = theta - alpha grad L^in_k(theta)                   (inner step on D_k)
    L^in_k(theta)   = - sum_{D_k} w pi_theta(a|s) / pi_theta_o(a|s) A     (LVC, importance-weighted)

    L(theta) = mean_k [ - sum_{D'_k} w min(r A', clip(r, 1 - eps, 1 + eps) A') + eta KL_k(theta) ]
    r        = pi_{theta'_k(theta)}(a|s) / pi_{theta'_k(theta_o)}(a|s)
    KL_k     = sum_{D_k} w KL(pi_theta_o(.|s) || pi_theta(.|s))           (pre-update policies)

With several inner steps, step ``i``'s batch and KL use the policy after ``i`` steps.
MAML-PPO (garage's ``MAMLPPO``) is the same outer step with the ``plain`` inner estimator
and ``eta = 0``. The inner estimator only matters through the derivatives taken through
the inner step; at ``theta_o`` every estimator has the same inner gradient, so sampling and
evaluation adapt identically for every learner (``metarl.adaptation``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from metarl.adaptation import Adaptation, TaskBatch, inner_step
from metarl.config import TrainConfig
from metarl.episodes import Episodes
from metarl.errors import ConfigError, TrainingDivergedError
from metarl.estimators import check_estimator
from metarl.learners.base import MetaLearner, MetaUpdateStats
from metarl.policies import Dist, Params, Policy, detach_dist, detach_params, stack_params

_DEFAULTS = TrainConfig()  # each shared default is written once, in the config
OWN_DEFAULTS: dict[str, tuple[str, float]] = {"promp": ("lvc", 5e-4), "maml-ppo": ("plain", 0.0)}
"""``(estimator, inner_kl_coef)``: what ``null`` in the config means for each learner of this module."""


@dataclass(frozen=True)
class PPOSettings:
    """Hyperparameters of ProMP / MAML-PPO (defaults: ProMP's HalfCheetahDir config)."""

    fast_lr: float = _DEFAULTS.fast_lr
    """Inner step size alpha."""
    first_order: bool = _DEFAULTS.first_order
    """Drop the derivatives through the inner step."""
    estimator: str = OWN_DEFAULTS["promp"][0]
    """Inner-loss estimator: ``lvc`` (ProMP), ``plain`` (MAML-PPO) or ``dice``."""
    outer_lr: float = 1e-3
    """Adam step size of the meta-update."""
    clip_eps: float = _DEFAULTS.clip_eps
    """Clipping range of the likelihood ratio."""
    ppo_steps: int = _DEFAULTS.ppo_steps
    """Adam steps per meta-batch."""
    inner_kl_coef: float = OWN_DEFAULTS["promp"][1]
    """eta, the penalty on KL(pi_theta_o || pi_theta) of the pre-update policies (0: none)."""

    def __post_init__(self) -> None:
        check_estimator(self.estimator)
        for key in ("fast_lr", "outer_lr", "clip_eps"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}.")
        if not isinstance(self.ppo_steps, int) or self.ppo_steps < 1:
            raise ValueError(f"ppo_steps must be a positive integer, got {self.ppo_steps!r}.")
        if not self.inner_kl_coef >= 0:
            raise ValueError(f"inner_kl_coef must be >= 0, got {self.inner_kl_coef!r}.")

    @classmethod
    def from_config(cls, config: TrainConfig) -> PPOSettings:
        """The config fields of the same names; ``null`` means the learner's own (``OWN_DEFAULTS``).

        Raises:
            ConfigError: An invalid value, or an inner KL penalty with ``maml-ppo``.
        """
        own_estimator, own_inner_kl_coef = OWN_DEFAULTS[config.learner]
        inner_kl_coef = own_inner_kl_coef if config.inner_kl_coef is None else config.inner_kl_coef
        if config.learner == "maml-ppo" and inner_kl_coef > 0:
            raise ConfigError(
                "maml-ppo has no inner KL penalty; inner_kl_coef > 0 with the clipped objective is learner=promp."
            )
        try:
            return cls(
                fast_lr=config.fast_lr,
                first_order=config.first_order,
                estimator=config.estimator or own_estimator,
                outer_lr=cls.outer_lr if config.outer_lr is None else config.outer_lr,
                clip_eps=config.clip_eps,
                ppo_steps=config.ppo_steps,
                inner_kl_coef=inner_kl_coef,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from e


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, weights: torch.Tensor, clip_eps: float
) -> torch.Tensor:
    """PPO's clipped surrogate loss of every task -> ``[K]`` (to minimize).

    ``L_k = - sum_m w_km min(r_km A_km, clip(r_km, 1 - eps, 1 + eps) A_km)``,
    ``r = exp(logp - old_logp)``.

    Args:
        logp: ``[K, M]`` log-probabilities under the current (adapted) policy.
        old_logp: ``[K, M]`` under the policy that sampled the actions (no gradient flows).
        advantages: ``[K, M]``.
        weights: ``[K, M]`` step weights (0 on padding).
        clip_eps: Clipping range, > 0.

    Raises:
        ValueError: Mismatched shapes.
    """
    if not (logp.shape == old_logp.shape == advantages.shape == weights.shape) or logp.dim() != 2:
        shapes = [tuple(x.shape) for x in (logp, old_logp, advantages, weights)]
        raise ValueError(
            f"clipped_surrogate needs logp, old_logp, advantages and weights of one shape [K, M], got {shapes}."
        )
    ratio = torch.exp(logp - old_logp.detach())
    advantages = advantages.detach()
    objective = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    return -(weights * objective).sum(-1)


@dataclass
class _Sampling:
    """What the sampling policies (at theta_o) did: log-probabilities and distributions."""

    inner_batches: list[TaskBatch]  # with old_logp set
    train_dists: list[Dist]
    post_logp: torch.Tensor
    post_dist: Dist


class ProMP(MetaLearner[PPOSettings]):
    """ProMP, or MAML-PPO (``name="maml-ppo"``, plain estimator, no KL penalty).

    Args:
        policy: The policy (on ``device``); its parameters are the meta-parameters.
        settings: ``PPOSettings``.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the meta-update runs.
        name: ``promp`` or ``maml-ppo`` (the name checkpoints carry).
    """

    def __init__(
        self,
        policy: Policy,
        settings: PPOSettings,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = True,
        device: torch.device | str = "cpu",
        name: str = "promp",
    ) -> None:
        super().__init__(policy, settings, gamma, gae_lambda, normalize_advantages, device)
        self.name = name
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=settings.outer_lr)

    def _sampling(self, inner_batches: Sequence[TaskBatch], post_batch: TaskBatch) -> _Sampling:
        """Replay the sampling-time adaptation from theta_o, recording the old policies."""
        s = self.settings
        k = post_batch.obs.shape[0]
        current = {n: p.detach() for n, p in stack_params(self.policy.get_params(), k).items()}
        batches, dists = [], []
        with torch.enable_grad():
            for batch in inner_batches:
                leaf = {n: p.requires_grad_(True) for n, p in detach_params(current).items()}
                with torch.no_grad():
                    dist = detach_dist(self.policy.distribution(leaf, batch.obs))
                batches.append(dataclasses.replace(batch, old_logp=self.policy.log_prob(dist, batch.actions).detach()))
                dists.append(dist)
                current = detach_params(
                    inner_step(self.policy, leaf, batch, s.fast_lr, create_graph=False, estimator=s.estimator)
                )
        with torch.no_grad():
            post_dist = detach_dist(self.policy.distribution(current, post_batch.obs))
        return _Sampling(batches, dists, self.policy.log_prob(post_dist, post_batch.actions).detach(), post_dist)

    def loss(
        self, old: _Sampling, post_batch: TaskBatch, create_graph: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dist]:
        """The ProMP objective at the current theta.

        Returns:
            ``(loss, clipped surrogate, inner KL penalty term, adapted distribution on post_batch.obs)``,
            means over tasks.
        """
        s = self.settings
        theta = self.policy.get_params()
        k = post_batch.obs.shape[0]
        current: Params = stack_params(theta, k)
        kl_terms = []
        for batch, old_dist in zip(old.inner_batches, old.train_dists):
            if s.inner_kl_coef > 0:
                kl = self.policy.kl(old_dist, self.policy.distribution(current, batch.obs))
                kl_terms.append((batch.weights * kl).sum(-1).mean())
            second_order = create_graph and not s.first_order
            # first order: the gradient is a constant, so d theta' / d theta = I
            current = inner_step(
                self.policy, current, batch, s.fast_lr, create_graph=second_order, estimator=s.estimator
            )
        dist = self.policy.distribution(current, post_batch.obs)
        surrogate = clipped_surrogate(
            self.policy.log_prob(dist, post_batch.actions),
            old.post_logp,
            post_batch.advantages,
            post_batch.weights,
            s.clip_eps,
        ).mean()
        inner_kl = torch.stack(kl_terms).sum() if kl_terms else surrogate.new_zeros(())
        return surrogate + s.inner_kl_coef * inner_kl, surrogate, inner_kl, dist

    def step(self, adaptation: Adaptation, post_episodes: Episodes) -> MetaUpdateStats:
        """``ppo_steps`` Adam steps on the ProMP objective (see the module docstring)."""
        t0 = time.perf_counter()
        self._check(adaptation)
        post_batch = self.process(post_episodes)
        old = self._sampling(adaptation.batches, post_batch)
        loss_before, grad_norm, t1 = float("nan"), float("nan"), t0
        for j in range(self.settings.ppo_steps):
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss, _, _, _ = self.loss(old, post_batch)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"The {self.name} loss is {float(loss)} at Adam step {j}: lower outer_lr or fast_lr, or check "
                        "the rewards."
                    )
                loss.backward()
            if j == 0:
                loss_before = float(loss.detach())
                grad_norm = float(
                    torch.stack([(p.grad**2).sum() for p in self.policy.parameters() if p.grad is not None])
                    .sum()
                    .sqrt()
                )
                t1 = time.perf_counter()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():  # the inner step needs a gradient; no graph is kept
            loss, _, _, dist = self.loss(old, post_batch, create_graph=False)
        with torch.no_grad():
            kl_after = float((post_batch.weights * self.policy.kl(old.post_dist, dist)).sum(-1).mean())
        t2 = time.perf_counter()
        return MetaUpdateStats(
            loss_before=loss_before,
            loss_after=float(loss.detach()),
            kl_after=kl_after,
            accepted=True,
            step_fraction=1.0,
            backtracks=0,
            grad_norm=grad_norm,
            grad_seconds=t1 - t0,
            line_search_seconds=t2 - t1,
        )

    def state_dict(self) -> dict[str, Any]:
        """Name and Adam's moments."""
        return {"name": self.name, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict`` (a state without optimizer moments leaves Adam fresh)."""
        super().load_state_dict(state)
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
