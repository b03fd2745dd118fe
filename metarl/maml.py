"""MAML-TRPO (Finn et al. 2017, "Model-Agnostic Meta-Learning", section 3.3 / 5.3).

For tasks ``T_k`` with inner (train) episodes ``D_k`` and outer (valid) episodes ``D'_k``:

* inner step (policy gradient, REINFORCE with baseline advantages ``A``)::

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

from metarl.baselines import linear_baseline_values
from metarl.estimators import ESTIMATORS, inner_objective
from metarl.episodes import Episodes, discounted_returns, episode_weights, gae, masked_normalize
from metarl.learner import MetaLearner, MetaUpdateStats
from metarl.policies import Params, Policy, detach_params, stack_params
from metarl.trpo import LineSearchResult, conjugate_gradient_with_residual, flatten, line_search, unflatten


@dataclass
class TaskBatch:
    """One phase's episodes, flattened per task for the learner (all on one device).

    Attributes:
        obs: ``[K, M, obs_dim]`` with ``M = N * T``.
        actions: ``[K, M, act_dim]`` or ``[K, M]``.
        advantages: ``[K, M]``.
        weights: ``[K, M]``, summing to 1 per task, equal per episode (``episode_weights``).
        episodes_per_task: N (to subsample whole episodes).
        mask: ``[K, M]``, 1 where a step happened (``Episodes.mask`` flattened); episode
            ``n`` of task ``k`` is ``[k, n * T : (n + 1) * T]`` in time order, which the
            ``dice`` estimator needs. ``None``: taken as ``weights > 0``.
        old_logp: ``[K, M]`` log-probabilities of the actions under the policy that sampled
            them, when the inner loss is evaluated away from it (``metarl.promp``); ``None``
            at the sampling parameters.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    weights: torch.Tensor
    episodes_per_task: int
    mask: torch.Tensor | None = None
    old_logp: torch.Tensor | None = None

    def step_mask(self) -> torch.Tensor:
        """``mask [K, M]`` (from ``weights > 0`` when the batch has none)."""
        return self.mask if self.mask is not None else (self.weights > 0).to(self.weights.dtype)

    def subsample(self, every: int) -> TaskBatch:
        """Every ``every``-th episode of each task, weights renormalized to sum to 1 per task."""
        if every <= 1:
            return self
        k, n = self.obs.shape[0], self.episodes_per_task

        def pick(x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(k, n, -1, *x.shape[2:])[:, ::every]
            return x.reshape(k, -1, *x.shape[3:])

        w = pick(self.weights)
        w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
        mask = None if self.mask is None else pick(self.mask)
        old_logp = None if self.old_logp is None else pick(self.old_logp)
        return TaskBatch(pick(self.obs), pick(self.actions), pick(self.advantages), w, len(range(0, n, every)), mask, old_logp)


def process_episodes(episodes: Episodes, gamma: float, gae_lambda: float, normalize_advantages: bool = True) -> TaskBatch:
    """Fit the per-task linear baseline and compute GAE advantages.

    Args:
        episodes: ``[K, N, T, ...]`` episodes, already on the learner's device.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task (as pytorch-maml-rl).
    """
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    values = linear_baseline_values(episodes, returns)
    adv = gae(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    weights = episode_weights(episodes.mask)
    if normalize_advantages:
        adv = masked_normalize(adv, episodes.mask, dims=(1, 2), weights=weights)
    k, n, t = episodes.mask.shape
    return TaskBatch(
        obs=episodes.observations.reshape(k, n * t, -1),
        actions=episodes.actions.reshape(k, n * t, *episodes.actions.shape[3:]),
        advantages=adv.reshape(k, n * t),
        weights=weights.reshape(k, n * t),
        episodes_per_task=n,
        mask=episodes.mask.reshape(k, n * t),
    )


def inner_loss(policy: Policy, params: Params, batch: TaskBatch, estimator: str = "plain") -> torch.Tensor:
    """Inner loss of every task -> ``[K]``; ``plain``: ``L_k = -sum_m w_km log pi(a_km|s_km) A_km``.

    Every estimator has this loss's gradient; they differ in its Hessian (see
    ``metarl.estimators.inner_objective``). ``params`` are stacked per task (``[K, ...]``) or shared.
    """
    logp = policy.log_prob(policy.distribution(params, batch.obs), batch.actions)
    if estimator == "plain":  # kept inline: bit-for-bit the original
        return -(batch.weights * logp * batch.advantages).sum(-1)
    return -inner_objective(estimator, logp, batch.advantages, batch.weights, batch.step_mask(), batch.episodes_per_task, batch.old_logp)


def inner_step(policy: Policy, params: Params, batch: TaskBatch, fast_lr: float, create_graph: bool, estimator: str = "plain") -> Params:
    """One policy-gradient step per task: ``theta'_k = theta_k - fast_lr * grad L_k(theta_k)``.

    Args:
        policy: The policy.
        params: Stacked ``[K, ...]`` parameters (part of a graph, or leaves requiring grad).
        batch: That step's episodes.
        fast_lr: Inner step size alpha.
        create_graph: Keep the graph of the gradient (second-order MAML).
        estimator: ``plain``, ``dice`` or ``lvc`` (the Hessian of the inner loss).

    Returns:
        Stacked adapted parameters.
    """
    loss = inner_loss(policy, params, batch, estimator).sum()  # tasks are independent: one backward for all
    return gradient_step(loss, params, fast_lr, create_graph)


def gradient_step(loss: torch.Tensor, params: Params, lr: float, create_graph: bool) -> Params:
    """The model-agnostic inner update ``theta' = theta - lr * grad_theta loss`` on a parameter dict.

    Nothing here knows about RL: ``inner_step`` calls it with the policy-gradient loss, and
    ``metarl.sinusoid`` with a regression loss. With parameters stacked per task (``[K, ...]``)
    and ``loss`` the sum of the K tasks' independent losses, one backward pass adapts all K.

    Args:
        loss: A scalar computed from ``params``.
        params: Name -> tensor (part of a graph, or leaves requiring grad).
        lr: Step size.
        create_graph: Keep the gradient's graph (second-order MAML differentiates through it).

    Returns:
        The updated parameters, with a graph back to ``params`` when ``create_graph``.

    Raises:
        ValueError: ``loss`` is not a scalar.
    """
    if loss.dim() != 0:
        raise ValueError(f"gradient_step needs a scalar loss (sum the per-task losses), got shape {tuple(loss.shape)}.")
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)
    return {n: params[n] - lr * g for n, g in zip(names, grads)}


def adapt(
    policy: Policy,
    params: Params,
    batches: Sequence[TaskBatch],
    fast_lr: float,
    first_order: bool = False,
    create_graph: bool = True,
    stacked: Params | None = None,
    estimator: str = "plain",
) -> Params:
    """Adapt shared ``params`` to every task: one inner step per batch in ``batches``.

    Args:
        policy: The policy.
        params: Shared parameters (leaves of the meta-graph, or detached with grad enabled).
        batches: ``num_steps`` TaskBatches, step i's episodes sampled with step i-1's parameters.
        fast_lr: Inner step size.
        first_order: Drop second-order terms (first-order MAML).
        create_graph: Keep a graph from ``params`` to the adapted parameters.
        stacked: Continue from these stacked parameters (already adapted from ``params``)
            instead of starting from ``params``.
        estimator: The inner loss's estimator (``plain``, ``dice`` or ``lvc``).

    Returns:
        Stacked adapted parameters ``[K, ...]``.
    """
    if not batches:
        raise ValueError("adapt needs at least one batch of inner-loop episodes.")
    k = batches[0].obs.shape[0]
    with torch.enable_grad():
        shared = stack_params(params, k)
        current = shared if stacked is None else stacked
        if not create_graph or first_order:
            current = {n: p.detach().requires_grad_(True) for n, p in current.items()}
        for batch in batches:
            current = inner_step(policy, current, batch, fast_lr, create_graph=create_graph and not first_order, estimator=estimator)
            if not create_graph or first_order:
                current = {n: p.detach().requires_grad_(True) for n, p in current.items()}
        if first_order and create_graph:
            # theta' = theta + (theta' - theta)|detached: gradient flows to theta with J = I.
            current = {n: shared[n] + (p - shared[n]).detach() for n, p in current.items()}
    return current if create_graph else detach_params(current)


def surrogate_and_kl(policy: Policy, adapted: Params, valid: TaskBatch, old_dist: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over tasks of the TRPO surrogate loss and of ``KL(old || new)`` on the valid episodes."""
    return surrogate_and_kl_of(policy, policy.distribution(adapted, valid.obs), valid, old_dist)


def surrogate_and_kl_of(policy: Policy, dist: tuple[torch.Tensor, ...], valid: TaskBatch, old_dist: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``surrogate_and_kl`` given the adapted policy's distribution on ``valid.obs``."""
    ratio = torch.exp(policy.log_prob(dist, valid.actions) - policy.log_prob(old_dist, valid.actions))
    loss = -(valid.weights * ratio * valid.advantages).sum(-1).mean()
    kl = (valid.weights * policy.kl(old_dist, dist)).sum(-1).mean()
    return loss, kl


def kl_hvp_fast(
    policy: Policy,
    params: Params,
    trains: Sequence[TaskBatch],
    valid: TaskBatch,
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
            after the last one, ``len(trains) + 1`` dicts, when the caller has them already.
        estimator: The inner loss's estimator; its Hessian is the one used here.
    """
    k = valid.obs.shape[0]
    names = list(params)
    like = [params[n] for n in names]
    hessian_graphs = []  # per inner step: (leaf params theta_{i-1}, inner gradient there)
    point = {n: p.detach() for n, p in stack_params(params, k).items()}
    with torch.enable_grad():
        for i, batch in enumerate(trains):
            leaf = {n: p.detach().clone().requires_grad_(True) for n, p in (points[i] if points else point).items()}
            if not first_order:
                grads = torch.autograd.grad(inner_loss(policy, leaf, batch.subsample(subsample), estimator).sum(), list(leaf.values()), create_graph=True)
                hessian_graphs.append((list(leaf.values()), grads))
            if points is None:
                point = detach_params(inner_step(policy, leaf, batch, fast_lr, create_graph=False, estimator=estimator))
        if points is not None:
            point = detach_params(points[-1])
        adapted = {n: p.clone().requires_grad_(True) for n, p in point.items()}
        valid_sub = valid.subsample(subsample)
        old_dist = tuple(d.detach() for d in policy.distribution(point, valid_sub.obs))
        kl = (valid_sub.weights * policy.kl(old_dist, policy.distribution(adapted, valid_sub.obs))).sum(-1).mean()
        kl_grads = torch.autograd.grad(kl, list(adapted.values()), create_graph=True)

    def hvp_list(leaves: list[torch.Tensor], grads: Sequence[torch.Tensor], vec: list[torch.Tensor]) -> list[torch.Tensor]:
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
    trains: Sequence[TaskBatch],
    valid: TaskBatch,
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
    trains = [b.subsample(subsample) for b in trains]
    valid = valid.subsample(subsample)
    names = list(params)
    like = [params[n] for n in names]
    with torch.enable_grad():
        adapted = adapt(policy, params, trains, fast_lr, first_order, create_graph=True, estimator=estimator)
        old_dist = tuple(d.detach() for d in policy.distribution(adapted, valid.obs))
        _, kl = surrogate_and_kl(policy, adapted, valid, old_dist)
        grads = torch.autograd.grad(kl, like, create_graph=True)
    flat_grad = flatten(grads)

    def hvp(v_flat: torch.Tensor) -> torch.Tensor:
        return flatten(torch.autograd.grad(torch.dot(flat_grad, v_flat), like, retain_graph=True)) + damping * v_flat

    return hvp


@dataclass
class TRPOSettings:
    """Hyperparameters of the MAML-TRPO meta-update (see ``metarl.config.TrainConfig``)."""

    fast_lr: float = 0.1
    first_order: bool = False
    max_kl: float = 1e-2
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_max_steps: int = 15
    ls_backtrack_ratio: float = 0.8
    curvature_subsample: int = 1
    exact_hvp: bool = False
    estimator: str = "plain"
    """Inner-loss estimator: ``plain``, ``dice`` or ``lvc`` (``metarl.estimators``)."""

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}.")


@torch.enable_grad()
def meta_gradient(
    policy: Policy, trains: Sequence[TaskBatch], valid: TaskBatch, cfg: TRPOSettings, adapted: Params | None = None
) -> tuple[torch.Tensor, torch.Tensor, Params, tuple[torch.Tensor, ...]]:
    """The post-adaptation surrogate loss at theta and its gradient (what TRPO's step solves with).

    Args:
        policy: The policy; its module parameters are theta.
        trains: ``num_steps`` inner batches.
        valid: The post-adaptation batch.
        cfg: The settings (``fast_lr``, ``first_order``, ``estimator``).
        adapted: The adaptation with its graph, if built already.

    Returns:
        ``(loss, flat gradient of the loss w.r.t. theta, adapted parameters, their detached
        distribution on valid.obs)``; ``-gradient`` estimates the meta-gradient
        ``grad_theta mean_k J_k(theta'_k)`` (see ``metarl.exact``).

    Raises:
        FloatingPointError: The gradient is not finite.
    """
    params = policy.get_params()
    if adapted is None:
        adapted = adapt(policy, params, trains, cfg.fast_lr, cfg.first_order, create_graph=True, estimator=cfg.estimator)
    dist = policy.distribution(adapted, valid.obs)
    old_dist = tuple(d.detach() for d in dist)
    loss, _ = surrogate_and_kl_of(policy, dist, valid, old_dist)
    grad = flatten(torch.autograd.grad(loss, list(params.values())))
    if not torch.isfinite(grad).all():
        raise FloatingPointError("The meta-gradient is NaN or inf: lower fast_lr or max_kl, or check the rewards for extreme values.")
    return loss, grad, adapted, old_dist


@torch.enable_grad()
def maml_trpo_step(policy: Policy, trains: Sequence[TaskBatch], valid: TaskBatch, cfg: TRPOSettings, adapted: Params | None = None) -> MetaUpdateStats:
    """One MAML-TRPO meta-update of the policy's parameters, in place.

    Args:
        policy: The policy; its module parameters are the meta-parameters theta.
        trains: ``num_steps`` inner batches (processed episodes), on the policy's device.
        valid: The post-adaptation batch.
        cfg: The TRPO settings.
        adapted: ``adapt(policy, policy.get_params(), trains, ...)`` with its graph, if the
            caller built it already (saves one pass over the inner data).

    Returns:
        ``MetaUpdateStats``; if the line search rejects every step, theta is unchanged.
    """
    t0 = time.perf_counter()
    params = policy.get_params()
    names = list(params)
    like = [params[n] for n in names]

    loss, grad, adapted, old_dist = meta_gradient(policy, trains, valid, cfg, adapted)
    t1 = time.perf_counter()

    if cfg.exact_hvp:
        hvp = kl_hvp_exact(policy, params, trains, valid, cfg.fast_lr, cfg.first_order, cfg.cg_damping, cfg.curvature_subsample, cfg.estimator)
    else:
        points = [stack_params(params, valid.obs.shape[0]), adapted] if len(trains) == 1 else None
        hvp = kl_hvp_fast(policy, params, trains, valid, cfg.fast_lr, cfg.first_order, cfg.cg_damping, cfg.curvature_subsample, points, cfg.estimator)
    step_dir, residual = conjugate_gradient_with_residual(hvp, grad, cfg.cg_iters)
    shs = 0.5 * torch.dot(step_dir, grad - residual)  # = 0.5 s^T H s, without another product
    full_step = step_dir * torch.sqrt(cfg.max_kl / shs.clamp(min=1e-12))

    old_flat = flatten([p.detach() for p in like])
    t2 = time.perf_counter()

    def evaluate(fraction: float) -> tuple[float, float]:
        new_params = dict(zip(names, unflatten(old_flat - fraction * full_step, like)))
        new_adapted = adapt(policy, new_params, trains, cfg.fast_lr, cfg.first_order, create_graph=False, estimator=cfg.estimator)
        with torch.no_grad():
            new_loss, kl = surrogate_and_kl(policy, new_adapted, valid, old_dist)
        return float(new_loss), float(kl)

    result: LineSearchResult = line_search(evaluate, float(loss.detach()), cfg.max_kl, cfg.ls_max_steps, cfg.ls_backtrack_ratio)
    if result.accepted:
        policy.load_params(dict(zip(names, unflatten(old_flat - result.step_fraction * full_step, like))))
    t3 = time.perf_counter()
    return MetaUpdateStats(float(loss.detach()), result.loss, result.kl, result.accepted, result.step_fraction, result.backtracks, float(grad.norm()), t1 - t0, t2 - t1, t3 - t2)


class MAMLTRPO(MetaLearner):
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

    One meta-iteration with it is the example of ``metarl.learner``.
    """

    name = "maml-trpo"
    keeps_adaptation_graph = True
    settings: TRPOSettings

    def __init__(self, policy: Policy, settings: TRPOSettings, gamma: float = 0.99, gae_lambda: float = 1.0, normalize_advantages: bool = True, device: torch.device | str = "cpu") -> None:
        super().__init__(policy, settings, gamma, gae_lambda, normalize_advantages, device)

    def step(self, train_episodes: Sequence[Episodes], valid_episodes: Episodes) -> MetaUpdateStats:
        """The MAML-TRPO meta-update from the inner and post-adaptation episodes."""
        trains, adapted = self.take_chain(train_episodes)
        return maml_trpo_step(self.policy, trains, self.process(valid_episodes), self.settings, adapted)
