"""Exact expected returns and MAML objectives of tabular softmax policies (float64, differentiable).

For a tabular task ``(P [S, A, S], R [S, A], mu_0 [S])``, horizon ``H``, discount ``gamma``
and a stationary policy ``pi [S, A]``, backward induction gives::

    V_H = 0,   Q_t(s, a) = R(s, a) + gamma * sum_s' P(s, a, s') V_{t+1}(s'),
    V_t(s) = sum_a pi(a|s) Q_t(s, a),   J = sum_s mu_0(s) V_0(s) = E[sum_{t<H} gamma^t r_t].

The policy is ``metarl.policies.CategoricalMLPPolicy(S, A, hidden_sizes=())`` on one-hot
states: ``logits[s, a] = W[a, s] + b[a]`` (a bandit's single state has observation 1).

The library's inner loss weights every step by ``1 / (N * H)`` (``episode_weights``) and
drops ``gamma^t`` from the policy gradient, so with ``gamma = 1`` and episodes of exactly
``H`` steps its expected gradient is ``-grad J / H``. ``maml_objective`` therefore uses the
*per-step* return ``Jbar = J / H`` (``per_step=True``)::

    F(theta) = mean_k Jbar_k(theta + alpha * grad Jbar_k(theta))

whose gradient is the meta-gradient ``-grad`` of MAML-TRPO's outer loss estimates.

Example:
    >>> policy = CategoricalMLPPolicy(10, 5, hidden_sizes=()).double()
    >>> value, grad = maml_objective_and_grad(policy.get_params(), models, fast_lr=0.5, horizon=10)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from metarl.adaptation import InnerLoop
from metarl.learners.maml_trpo import TRPOSettings, meta_gradient
from metarl.policies import CategoricalMLPPolicy, Params
from metarl.sampler import Sampler

Model = tuple[np.ndarray, np.ndarray, np.ndarray]


def policy_table(params: Params, num_states: int) -> torch.Tensor:
    """``pi [S, A]`` of the linear softmax policy on one-hot states (or the constant 1 when S = 1).

    Raises:
        ValueError: The parameters are not a single linear layer of matching size.
    """
    if set(params) != {"layers.0.weight", "layers.0.bias"}:
        raise ValueError(
            f"Exact returns need a linear softmax policy (hidden_sizes=()), got parameters {sorted(params)}."
        )
    w, b = params["layers.0.weight"], params["layers.0.bias"]  # [A, obs_dim], [A]
    if w.shape[1] == num_states:
        logits = w.T + b  # obs = e_s
    elif w.shape[1] == 1 and num_states == 1:
        logits = (w[:, 0] + b).unsqueeze(0)  # obs = [1]
    else:
        raise ValueError(f"The policy sees {w.shape[1]} observation dims; the task has {num_states} states.")
    return torch.softmax(logits, dim=-1)


def expected_return(params: Params, model: Model, horizon: int, gamma: float = 1.0) -> torch.Tensor:
    """``J = E[sum_{t<H} gamma^t r_t]`` by backward induction (scalar, differentiable in ``params``).

    Args:
        params: ``layers.0.weight [A, S]`` and ``layers.0.bias [A]`` (float64 advised).
        model: ``(P [S, A, S], R [S, A], initial [S])``, e.g. ``task.model()``.
        horizon: Episode length H.
        gamma: Discount.
    """
    p_np, r_np, mu_np = model
    dtype = params["layers.0.weight"].dtype
    p, r, mu = (torch.as_tensor(x, dtype=dtype) for x in (p_np, r_np, mu_np))
    pi = policy_table(params, p.shape[0])
    v = torch.zeros(p.shape[0], dtype=dtype)
    for _ in range(horizon):
        q = r + gamma * torch.einsum("sat,t->sa", p, v)
        v = (pi * q).sum(-1)
    return (mu * v).sum()


def maml_objective(
    params: Params, models: Sequence[Model], fast_lr: float, horizon: int, gamma: float = 1.0, per_step: bool = True
) -> torch.Tensor:
    """``mean_k Jbar_k(theta + fast_lr * grad Jbar_k(theta))`` with its graph to ``params``.

    Args:
        params: Leaves requiring grad (the meta-parameters theta).
        models: One tabular model per task.
        fast_lr: Inner step size alpha.
        horizon: H.
        gamma: Discount.
        per_step: ``Jbar = J / H`` (the library's step weighting), else ``Jbar = J``.
    """
    names = list(params)
    scale = 1.0 / horizon if per_step else 1.0
    values = []
    for model in models:
        j = scale * expected_return(params, model, horizon, gamma)
        grads = torch.autograd.grad(j, [params[n] for n in names], create_graph=True)
        adapted = {n: params[n] + fast_lr * g for n, g in zip(names, grads)}
        values.append(scale * expected_return(adapted, model, horizon, gamma))
    return torch.stack(values).mean()


def maml_objective_and_grad(
    params: Params, models: Sequence[Model], fast_lr: float, horizon: int, gamma: float = 1.0, per_step: bool = True
) -> tuple[float, torch.Tensor]:
    """The exact MAML objective and its flat gradient w.r.t. ``params`` (concatenated in dict order)."""
    leaves = {n: p.detach().to(torch.float64).clone().requires_grad_(True) for n, p in params.items()}
    with torch.enable_grad():
        value = maml_objective(leaves, models, fast_lr, horizon, gamma, per_step)
        grads = torch.autograd.grad(value, list(leaves.values()))
    return float(value.detach()), torch.cat([g.reshape(-1) for g in grads])


def sample_meta_gradients(
    family: str,
    tasks: Sequence,
    policy: CategoricalMLPPolicy,
    fast_lr: float,
    estimator: str,
    episodes_per_task: int,
    num_batches: int,
    seed: int = 0,
) -> torch.Tensor:
    """Meta-gradients of MAML-TRPO on ``num_batches`` independently sampled meta-batches.

    Each batch: ``episodes_per_task`` inner episodes per task sampled at theta, one inner
    step (``InnerLoop.adapt``), as many post-adaptation episodes, then ``-meta_gradient`` (the
    gradient TRPO's outer step starts from), with ``gamma = 1``, ``gae_lambda = 1`` and
    unnormalized advantages so that it estimates ``grad F`` of ``maml_objective``.

    Returns:
        ``[num_batches, num_params]`` float64.
    """
    inner = InnerLoop(
        policy=policy, fast_lr=fast_lr, estimator=estimator, gamma=1.0, gae_lambda=1.0, normalize_advantages=False
    )
    settings = TRPOSettings(fast_lr=fast_lr, estimator=estimator)
    sampler = Sampler(family, policy, seed=seed)
    out = []
    for _ in range(num_batches):
        theta = inner.initial_params()
        train = sampler.sample({n: p.float() for n, p in theta.items()}, tasks, episodes_per_task)
        adaptation = inner.adapt(train, keep_graph=False)
        post_episodes = sampler.sample({n: p.float() for n, p in adaptation.params.items()}, tasks, episodes_per_task)
        _, grad, _, _ = meta_gradient(policy, adaptation.batches, inner.process(post_episodes), settings)
        out.append(-grad.detach())
    sampler.close()
    return torch.stack(out)
