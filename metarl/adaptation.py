"""The inner loop every learner shares: process episodes, take policy-gradient steps, adapt.

For tasks ``T_k`` with inner episodes ``D_k``, one inner step is the policy gradient
(REINFORCE with baseline advantages ``A``)::

    theta'_k = theta - alpha * grad_theta L_k(theta),
    L_k(theta) = - sum_{(s,a) in D_k} w * log pi_theta(a|s) * A(s,a)

(``w`` averages over each episode's steps, then over the task's episodes, as
pytorch-maml-rl); ``num_steps`` steps, each on fresh episodes sampled with the current
adapted parameters. The inner objective's *gradient* is always this policy gradient; its
*Hessian*, which second-order meta-gradients use through ``d theta' / d theta``, depends on
the ``estimator`` (``metarl.estimators``: ``plain``, ``dice`` or ``lvc``).

All K tasks adapt at once: the parameters are stacked along a task dimension, so one
backward pass of ``sum_k L_k`` yields every task's inner gradient.

The functions are pure (parameters in, parameters out). ``InnerLoop`` bundles them with
their settings for the sampling-time adaptation of a meta-iteration and of evaluation: its
``adapt`` returns an ``Adaptation``, the explicit value that a learner's ``step`` consumes::

    inner = InnerLoop(policy, fast_lr=0.1)
    adaptation = None
    params = inner.initial_params()
    for _ in range(num_steps):
        adaptation = inner.adapt(sampler.sample(params, tasks, n), adaptation)
        params = adaptation.params          # stacked [K, ...], for the sampler
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from metarl.episodes import Episodes, discounted_returns, episode_weights, gae, masked_normalize
from metarl.estimators import inner_objective
from metarl.linear_baseline import linear_baseline_values
from metarl.policies import Params, Policy, detach_params, stack_params


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
            them, when the inner loss is evaluated away from it (``metarl.learners.promp``); ``None``
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
        return TaskBatch(
            pick(self.obs), pick(self.actions), pick(self.advantages), w, len(range(0, n, every)), mask, old_logp
        )


def process_episodes(
    episodes: Episodes, gamma: float, gae_lambda: float, normalize_advantages: bool = True
) -> TaskBatch:
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
    return -inner_objective(
        estimator, logp, batch.advantages, batch.weights, batch.step_mask(), batch.episodes_per_task, batch.old_logp
    )


def inner_step(
    policy: Policy, params: Params, batch: TaskBatch, fast_lr: float, create_graph: bool, estimator: str = "plain"
) -> Params:
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
    ``examples/sinusoid.py`` with a regression loss. With parameters stacked per task (``[K, ...]``)
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
            current = inner_step(
                policy, current, batch, fast_lr, create_graph=create_graph and not first_order, estimator=estimator
            )
            if not create_graph or first_order:
                current = {n: p.detach().requires_grad_(True) for n, p in current.items()}
        if first_order and create_graph:
            # theta' = theta + (theta' - theta)|detached: gradient flows to theta with J = I.
            current = {n: shared[n] + (p - shared[n]).detach() for n, p in current.items()}
    return current if create_graph else detach_params(current)


@dataclass(frozen=True)
class Adaptation:
    """The result of adapting the meta-parameters to a meta-batch of tasks (``InnerLoop.adapt``).

    Attributes:
        params: Adapted parameters, stacked ``[K, ...]``, detached, on the CPU: what the
            sampler samples the next episodes with.
        episodes: The inner episodes of each step, in order.
        batches: The same episodes processed (advantages, weights) on the learner's device.
        graph: The adapted parameters with their autograd graph back to the policy's
            parameters, when the adaptation kept it (second-order meta-gradients reuse it);
            ``None`` otherwise.
    """

    params: Params
    episodes: tuple[Episodes, ...]
    batches: tuple[TaskBatch, ...]
    graph: Params | None = None

    @property
    def num_steps(self) -> int:
        """How many inner steps were taken."""
        return len(self.batches)


@dataclass
class InnerLoop:
    """The sampling-time adaptation: process episodes, one inner step per call.

    Args:
        policy: The policy; its (module) parameters are theta, the starting point.
        fast_lr: Inner step size alpha.
        first_order: Drop second-order terms (first-order MAML).
        estimator: The inner loss's estimator (``plain``, ``dice`` or ``lvc``).
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the math runs (episodes move there; rollouts stay on the CPU).
        keep_graph: Keep the adaptation's graph back to theta in ``Adaptation.graph``
            (MAML-TRPO's meta-gradient reuses it).
    """

    policy: Policy
    fast_lr: float
    first_order: bool = False
    estimator: str = "plain"
    gamma: float = 0.99
    gae_lambda: float = 1.0
    normalize_advantages: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    keep_graph: bool = False

    def process(self, episodes: Episodes) -> TaskBatch:
        """Move episodes to the device (in the policy's dtype) and compute advantages."""
        dtype = next(self.policy.parameters()).dtype
        return process_episodes(episodes.to(self.device, dtype), self.gamma, self.gae_lambda, self.normalize_advantages)

    def initial_params(self) -> Params:
        """The current meta-parameters theta, detached, on the CPU (for the sampler)."""
        return {n: p.detach().cpu() for n, p in self.policy.get_params().items()}

    def adapt(self, episodes: Episodes, previous: Adaptation | None = None, keep_graph: bool = True) -> Adaptation:
        """One inner step on ``episodes``: from theta, or continuing ``previous``.

        Args:
            episodes: ``[K, N, T, ...]`` episodes sampled with ``previous.params`` (theta
                when ``previous`` is ``None``).
            previous: The adaptation so far, or ``None`` for the first step.
            keep_graph: ``False`` when no meta-update follows (evaluation): no graph is
                kept even if the loop keeps one.

        Returns:
            The adaptation after this step.

        Raises:
            ValueError: ``episodes`` has another number of tasks than ``previous``.
        """
        batch = self.process(episodes)
        k = batch.obs.shape[0]
        if previous is not None and previous.batches and previous.batches[0].obs.shape[0] != k:
            raise ValueError(
                f"The episodes have {k} tasks, the adaptation they continue has {previous.batches[0].obs.shape[0]}."
            )
        steps = (*previous.episodes, episodes) if previous is not None else (episodes,)
        batches = (*previous.batches, batch) if previous is not None else (batch,)
        graph_start = previous.graph if previous is not None else None
        if keep_graph and self.keep_graph and (previous is None or graph_start is not None):
            theta = self.policy.get_params()
            adapted = adapt(
                self.policy,
                theta,
                [batch],
                self.fast_lr,
                self.first_order,
                create_graph=True,
                stacked=graph_start,
                estimator=self.estimator,
            )
            return Adaptation({n: p.detach().cpu() for n, p in adapted.items()}, steps, batches, adapted)
        start = self.initial_params() if previous is None else previous.params
        leaves = {n: p.to(self.device).detach().requires_grad_(True) for n, p in start.items()}
        if previous is None:
            leaves = {n: p.detach().requires_grad_(True) for n, p in stack_params(leaves, k).items()}
        with torch.enable_grad():
            stepped = inner_step(self.policy, leaves, batch, self.fast_lr, create_graph=False, estimator=self.estimator)
        return Adaptation({n: p.detach().cpu() for n, p in stepped.items()}, steps, batches, None)
