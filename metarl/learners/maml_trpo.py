"""MAML-TRPO (Finn et al. 2017, "Model-Agnostic Meta-Learning", section 3.3 / 5.3).

For tasks ``T_k`` with inner (train) episodes ``D_k`` and outer (post-adaptation) episodes ``D'_k``:

* inner step (policy gradient, REINFORCE with baseline advantages ``A``; ``metarl.adaptation``)::

      theta'_k = theta - alpha * grad_theta L_k(theta),
      L_k(theta) = - sum_{(s,a) in D_k} w * log pi_theta(a|s) * A(s,a)

  (``w`` averages over each episode's steps, then over the task's episodes, as
  pytorch-maml-rl); ``num_steps`` steps, each on fresh
  episodes sampled with the current adapted parameters;

* outer step (TRPO on the post-adaptation surrogate)::

      min_theta  L(theta) = mean_k - sum_{D'_k} w * pi_{theta'_k}(a|s) / pi_old(a|s) * A'
      s.t.       KL(theta) = mean_k sum_{D'_k} w * KL(pi_old(.|s) || pi_{theta'_k}(.|s)) <= max_kl

  with gradients taken *through* the inner step (second order) unless ``first_order``.

The inner objective's *gradient* is always this policy gradient; its *Hessian*, which the
meta-gradient and the KL's curvature use through ``d theta' / d theta = I - alpha * H^inner``,
depends on the ``estimator`` (``metarl.estimators``: ``plain`` above, ``dice`` or ``lvc``).

All K tasks adapt at once: the parameters are stacked along a task dimension, so one
backward pass of ``sum_k L_k`` yields every task's inner gradient.

The Hessian-vector product of the KL is computed exactly at ``theta_old`` from second-order
terms only: there the KL's gradient w.r.t. the adapted parameters is zero, so

    H v = mean_k J_k^T F_k J_k v,   J_k = prod_i (I - alpha * H^inner_{k,i})

with ``F_k`` the Fisher of the adapted policy and ``H^inner`` the inner-loss Hessians. With
``curvature_subsample = s`` these curvature matrices use every s-th episode (as OpenAI
Baselines' TRPO does for its Fisher-vector products); the gradient and the line search
always use all data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from metarl.adaptation import Adaptation, TaskBatch, adapt, inner_loss, inner_step
from metarl.config import TrainConfig
from metarl.episodes import Episodes
from metarl.errors import ConfigError, TrainingDivergedError
from metarl.estimators import check_estimator
from metarl.learners.base import MetaLearner, MetaUpdateStats
from metarl.policies import Dist, Params, Policy, detach_dist, detach_params, stack_params
from metarl.trpo import LineSearchResult, conjugate_gradient_with_residual, flatten, line_search, unflatten

_DEFAULTS = TrainConfig()  # each shared default is written once, in the config


def surrogate_and_kl(
    policy: Policy, adapted: Params, post_batch: TaskBatch, old_dist: Dist
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over tasks of the TRPO surrogate loss and of ``KL(old || new)`` on the post-adaptation episodes."""
    return surrogate_and_kl_from_dist(policy, policy.distribution(adapted, post_batch.obs), post_batch, old_dist)


def surrogate_and_kl_from_dist(
    policy: Policy, dist: Dist, post_batch: TaskBatch, old_dist: Dist
) -> tuple[torch.Tensor, torch.Tensor]:
    """``surrogate_and_kl`` given the adapted policy's distribution on ``post_batch.obs``."""
    ratio = torch.exp(policy.log_prob(dist, post_batch.actions) - policy.log_prob(old_dist, post_batch.actions))
    loss = -(post_batch.weights * ratio * post_batch.advantages).sum(-1).mean()
    kl = (post_batch.weights * policy.kl(old_dist, dist)).sum(-1).mean()
    return loss, kl


def kl_hvp_fast(
    policy: Policy,
    params: Params,
    inner_batches: Sequence[TaskBatch],
    post_batch: TaskBatch,
    fast_lr: float,
    first_order: bool,
    damping: float,
    subsample: int = 1,
    points: Sequence[Params] | None = None,
    estimator: str = "plain",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Build ``v -> (H + damping I) v`` for the KL at ``params`` (see the module docstring).

    The adapted parameters come from all the data; the curvature matrices (inner-loss
    Hessians and the Fisher) from every ``subsample``-th episode. Each product costs two
    inner-loss Hessian-vector products per inner step and one Fisher-vector product, all
    second order and batched over tasks.

    Args:
        points: Optionally the (detached, stacked) parameters before each inner step and
            after the last one, ``len(inner_batches) + 1`` dicts, when the caller has them already.
        estimator: The inner loss's estimator; its Hessian is the one used here.
    """
    k = post_batch.obs.shape[0]
    names = list(params)
    like = [params[n] for n in names]
    hessian_graphs = []  # per inner step: (leaf params theta_{i-1}, inner gradient there)
    point = {n: p.detach() for n, p in stack_params(params, k).items()}
    with torch.enable_grad():
        for i, batch in enumerate(inner_batches):
            leaf = {n: p.detach().clone().requires_grad_(True) for n, p in (points[i] if points else point).items()}
            if not first_order:
                grads = torch.autograd.grad(
                    inner_loss(policy, leaf, batch.subsample(subsample), estimator).sum(),
                    list(leaf.values()),
                    create_graph=True,
                )
                hessian_graphs.append((list(leaf.values()), grads))
            if points is None:
                point = detach_params(inner_step(policy, leaf, batch, fast_lr, create_graph=False, estimator=estimator))
        if points is not None:
            point = detach_params(points[-1])
        adapted = {n: p.clone().requires_grad_(True) for n, p in point.items()}
        post_sub = post_batch.subsample(subsample)
        old_dist = detach_dist(policy.distribution(point, post_sub.obs))
        kl = (post_sub.weights * policy.kl(old_dist, policy.distribution(adapted, post_sub.obs))).sum(-1).mean()
        kl_grads = torch.autograd.grad(kl, list(adapted.values()), create_graph=True)

    def hvp_list(
        leaves: list[torch.Tensor], grads: Sequence[torch.Tensor], vec: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        dot = torch.stack([(g * v).sum() for g, v in zip(grads, vec)]).sum()
        return list(torch.autograd.grad(dot, leaves, retain_graph=True))

    def hvp(v_flat: torch.Tensor) -> torch.Tensor:
        u = [v.unsqueeze(0).expand(k, *v.shape).contiguous() for v in unflatten(v_flat, like)]
        if not first_order:
            for leaves, grads in hessian_graphs:  # u <- J_i u
                u = [ui - fast_lr * hi for ui, hi in zip(u, hvp_list(leaves, grads, u))]
        z = hvp_list(list(adapted.values()), kl_grads, u)  # Fisher (times 1/K per task)
        if not first_order:
            for leaves, grads in reversed(hessian_graphs):  # z <- J_i^T z
                z = [zi - fast_lr * hi for zi, hi in zip(z, hvp_list(leaves, grads, z))]
        return flatten([zi.sum(0) for zi in z]) + damping * v_flat

    return hvp


def kl_hvp_exact(
    policy: Policy,
    params: Params,
    inner_batches: Sequence[TaskBatch],
    post_batch: TaskBatch,
    fast_lr: float,
    first_order: bool,
    damping: float,
    subsample: int = 1,
    estimator: str = "plain",
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The textbook ``v -> (H + damping I) v``: double backward of the KL through the adaptation.

    Third order through the inner step (what pytorch-maml-rl does); kept as the reference
    for tests and benchmarks. ``subsample`` thins every batch, the adaptation included.
    """
    inner_batches = [b.subsample(subsample) for b in inner_batches]
    post_batch = post_batch.subsample(subsample)
    names = list(params)
    like = [params[n] for n in names]
    with torch.enable_grad():
        adapted = adapt(policy, params, inner_batches, fast_lr, first_order, create_graph=True, estimator=estimator)
        old_dist = detach_dist(policy.distribution(adapted, post_batch.obs))
        _, kl = surrogate_and_kl(policy, adapted, post_batch, old_dist)
        grads = torch.autograd.grad(kl, like, create_graph=True)
    flat_grad = flatten(grads)

    def hvp(v_flat: torch.Tensor) -> torch.Tensor:
        return flatten(torch.autograd.grad(torch.dot(flat_grad, v_flat), like, retain_graph=True)) + damping * v_flat

    return hvp


@dataclass(frozen=True)
class TRPOSettings:
    """Hyperparameters of the MAML-TRPO meta-update (documented in ``metarl.config.TrainConfig``)."""

    fast_lr: float = _DEFAULTS.fast_lr
    first_order: bool = _DEFAULTS.first_order
    max_kl: float = _DEFAULTS.max_kl
    cg_iters: int = _DEFAULTS.cg_iters
    cg_damping: float = _DEFAULTS.cg_damping
    ls_max_steps: int = _DEFAULTS.ls_max_steps
    ls_backtrack_ratio: float = _DEFAULTS.ls_backtrack_ratio
    curvature_subsample: int = _DEFAULTS.curvature_subsample
    exact_hvp: bool = False
    """Build the KL's Hessian-vector product by double backward through the adaptation
    (``kl_hvp_exact``, the reference) instead of ``kl_hvp_fast``."""
    estimator: str = "plain"
    """Inner-loss estimator: ``plain``, ``dice`` or ``lvc`` (``metarl.estimators``); MAML-TRPO's own is ``plain``."""

    def __post_init__(self) -> None:
        check_estimator(self.estimator)

    @classmethod
    def from_config(cls, config: TrainConfig) -> TRPOSettings:
        """The config fields of the same names; ``estimator: null`` is MAML-TRPO's own.

        Raises:
            ConfigError: A field that MAML-TRPO does not use is set (``outer_lr``), or an unknown estimator.
        """
        if config.outer_lr is not None:
            raise ConfigError(
                "outer_lr has no effect with learner=maml-trpo (its step size is set by max_kl): leave it null."
            )
        fields = (
            "fast_lr",
            "first_order",
            "max_kl",
            "cg_iters",
            "cg_damping",
            "ls_max_steps",
            "ls_backtrack_ratio",
            "curvature_subsample",
        )
        try:
            return cls(**{f: getattr(config, f) for f in fields}, estimator=config.estimator or cls.estimator)
        except ValueError as e:
            raise ConfigError(f"{e} (or null for the learner's own)") from e


@torch.enable_grad()
def meta_gradient(
    policy: Policy,
    inner_batches: Sequence[TaskBatch],
    post_batch: TaskBatch,
    cfg: TRPOSettings,
    adapted: Params | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Params, Dist]:
    """The post-adaptation surrogate loss at theta and its gradient (what TRPO's step solves with).

    Args:
        policy: The policy; its module parameters are theta.
        inner_batches: ``num_steps`` inner batches.
        post_batch: The post-adaptation batch.
        cfg: The settings (``fast_lr``, ``first_order``, ``estimator``).
        adapted: The adaptation with its graph, if built already.

    Returns:
        ``(loss, flat gradient of the loss w.r.t. theta, adapted parameters, their detached
        distribution on post_batch.obs)``; ``-gradient`` estimates the meta-gradient
        ``grad_theta mean_k J_k(theta'_k)`` (see ``metarl.exact``).

    Raises:
        TrainingDivergedError: The gradient is not finite.
    """
    params = policy.get_params()
    if adapted is None:
        adapted = adapt(
            policy, params, inner_batches, cfg.fast_lr, cfg.first_order, create_graph=True, estimator=cfg.estimator
        )
    dist = policy.distribution(adapted, post_batch.obs)
    old_dist = detach_dist(dist)
    loss, _ = surrogate_and_kl_from_dist(policy, dist, post_batch, old_dist)
    grad = flatten(torch.autograd.grad(loss, list(params.values())))
    if not torch.isfinite(grad).all():
        raise TrainingDivergedError(
            "The meta-gradient is NaN or inf: lower fast_lr or max_kl, or check the rewards for extreme values."
        )
    return loss, grad, adapted, old_dist


@torch.enable_grad()
def maml_trpo_step(
    policy: Policy,
    inner_batches: Sequence[TaskBatch],
    post_batch: TaskBatch,
    cfg: TRPOSettings,
    adapted: Params | None = None,
) -> MetaUpdateStats:
    """One MAML-TRPO meta-update of the policy's parameters, in place.

    Args:
        policy: The policy; its module parameters are the meta-parameters theta.
        inner_batches: ``num_steps`` inner batches (processed episodes), on the policy's device.
        post_batch: The post-adaptation batch.
        cfg: The TRPO settings.
        adapted: ``adapt(policy, policy.get_params(), inner_batches, ...)`` with its graph, if the
            caller built it already (saves one pass over the inner data).

    Returns:
        ``MetaUpdateStats``; if the line search rejects every step, theta is unchanged.
    """
    t0 = time.perf_counter()
    params = policy.get_params()
    names = list(params)
    like = [params[n] for n in names]

    loss, grad, adapted, old_dist = meta_gradient(policy, inner_batches, post_batch, cfg, adapted)
    t1 = time.perf_counter()

    if cfg.exact_hvp:
        hvp = kl_hvp_exact(
            policy,
            params,
            inner_batches,
            post_batch,
            cfg.fast_lr,
            cfg.first_order,
            cfg.cg_damping,
            cfg.curvature_subsample,
            cfg.estimator,
        )
    else:
        points = [stack_params(params, post_batch.obs.shape[0]), adapted] if len(inner_batches) == 1 else None
        hvp = kl_hvp_fast(
            policy,
            params,
            inner_batches,
            post_batch,
            cfg.fast_lr,
            cfg.first_order,
            cfg.cg_damping,
            cfg.curvature_subsample,
            points,
            cfg.estimator,
        )
    step_dir, residual = conjugate_gradient_with_residual(hvp, grad, cfg.cg_iters)
    shs = 0.5 * torch.dot(step_dir, grad - residual)  # = 0.5 s^T H s, without another product
    full_step = step_dir * torch.sqrt(cfg.max_kl / shs.clamp(min=1e-12))

    old_flat = flatten([p.detach() for p in like])
    t2 = time.perf_counter()

    def evaluate(fraction: float) -> tuple[float, float]:
        new_params = dict(zip(names, unflatten(old_flat - fraction * full_step, like)))
        new_adapted = adapt(
            policy, new_params, inner_batches, cfg.fast_lr, cfg.first_order, create_graph=False, estimator=cfg.estimator
        )
        with torch.no_grad():
            new_loss, kl = surrogate_and_kl(policy, new_adapted, post_batch, old_dist)
        return float(new_loss), float(kl)

    result: LineSearchResult = line_search(
        evaluate, float(loss.detach()), cfg.max_kl, cfg.ls_max_steps, cfg.ls_backtrack_ratio
    )
    if result.accepted:
        policy.load_params(dict(zip(names, unflatten(old_flat - result.step_fraction * full_step, like))))
    t3 = time.perf_counter()
    return MetaUpdateStats(
        loss_before=float(loss.detach()),
        loss_after=result.loss,
        kl_after=result.kl,
        accepted=result.accepted,
        step_fraction=result.step_fraction,
        backtracks=result.backtracks,
        grad_norm=float(grad.norm()),
        grad_seconds=t1 - t0,
        cg_seconds=t2 - t1,
        line_search_seconds=t3 - t2,
    )


class MAMLTRPO(MetaLearner[TRPOSettings]):
    """The MAML-TRPO learner: inner adaptation for sampling, and the TRPO meta-update.

    Rollouts stay on the CPU; episodes move to ``device`` for the learner's math. The
    sampling-time adaptation keeps its graph, which the meta-gradient reuses.

    Args:
        policy: The policy (on ``device``); its parameters are the meta-parameters.
        settings: TRPO and inner-loop hyperparameters.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the meta-update runs.

    One meta-iteration with it is the example of ``metarl.learners.base``.
    """

    name = "maml-trpo"
    keeps_adaptation_graph = True

    def step(self, adaptation: Adaptation, post_episodes: Episodes) -> MetaUpdateStats:
        """The MAML-TRPO meta-update from the adaptation and the post-adaptation episodes."""
        self._check(adaptation)
        return maml_trpo_step(
            self.policy, adaptation.batches, self.process(post_episodes), self.settings, adaptation.graph
        )
