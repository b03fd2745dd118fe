"""Inner-loop objectives of MAML-RL: same policy gradient, different Hessians.

The meta-gradient of ``J(theta + alpha grad J(theta))`` is
``(I + alpha grad^2 J(theta)) grad J(theta')``, so the inner objective ``S(theta)`` of a
batch of episodes sampled from ``pi_theta`` must estimate both ``grad J`` *and*
``grad^2 J`` without bias. With ``g_t = grad log pi(a_t|s_t)``, ``W_t = sum_{t'<=t} log
pi(a_t'|s_t')`` (within the episode), ``A_t`` the advantage and ``G_t`` the reward-to-go::

    grad^2 J = E[ sum_t A_t (grad^2 log pi_t + g_t g_t^T + g_t u_{t-1}^T + u_{t-1} g_t^T) ],
    u_{t-1} = grad W_{t-1} = sum_{t'<t} g_t'

(up to the baseline, whose terms vanish in expectation). The three objectives, maximized
(the inner loss is ``-S``), with ``w_t`` the per-step weights and ``[x] = x.detach()``:

* ``plain`` (Finn et al. 2017; pytorch-maml-rl, learn2learn, garage)::

      S = sum_t w_t log pi_t A_t          Hessian: sum_t w_t A_t grad^2 log pi_t

  drops ``g_t g_t^T`` and the cross terms: the pre-update sampling distribution's
  dependence on theta is not credited (Rothfuss et al. 2019, section 4).

* ``lvc``, ProMP's low-variance curvature objective (Rothfuss et al. 2019, eq. 8)::

      S = sum_t w_t pi_t / [pi_t] A_t     Hessian: sum_t w_t A_t (grad^2 log pi_t + g_t g_t^T)

  drops only the cross terms: unbiased when past actions do not change future
  advantages (bandits), biased in general, with lower variance.

* ``dice``: DiCE (Foerster et al. 2018) with the baseline of "loaded DiCE" (Mao et al.
  2019, eq. 7), ``box(x) = exp(x - [x])`` (value 1, ``grad box(x) = box(x) grad x``)::

      S = sum_t w_t (box(W_t) - box(W_{t-1})) A_t,   box(W_{-1}) = 1

  Summation by parts turns ``sum_t (box(W_t) - box(W_{t-1})) G_t`` into DiCE's
  ``sum_t box(W_t) r_t`` minus a constant, and the baseline part
  ``box(W_{t-1}) (box(log pi_t) - 1) b(s_t)`` has zero expected derivatives of every
  order; so with ``A_t = G_t - b(s_t)`` every derivative is unbiased. Its Hessian is the
  full one above.
"""

from __future__ import annotations

import difflib

import torch

ESTIMATORS = ("plain", "dice", "lvc")


def check_estimator(name: str) -> str:
    """``name`` if it is an estimator.

    Raises:
        ValueError: Unknown name, with a did-you-mean.
    """
    if name not in ESTIMATORS:
        close = difflib.get_close_matches(str(name), ESTIMATORS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {name!r}.{hint}")
    return name


def magic_box(x: torch.Tensor) -> torch.Tensor:
    """DiCE's magic box ``exp(x - x.detach())``: equals 1, its derivatives are those of ``exp(x)`` at 0."""
    return torch.exp(x - x.detach())


def inner_objective(
    estimator: str,
    logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    episodes_per_task: int,
    old_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """The inner surrogate ``S_k`` of every task (to maximize; see the module docstring).

    Args:
        estimator: ``plain``, ``dice`` or ``lvc``.
        logp: ``log pi(a_m|s_m)`` ``[K, M]``, ``M = N * T``, episode-major (episode ``n``
            is ``[:, n * T : (n + 1) * T]``, in time order).
        advantages: ``A_m`` ``[K, M]`` (no gradient flows through them).
        weights: ``w_m`` ``[K, M]``.
        mask: ``[K, M]``, 1 where a step happened.
        episodes_per_task: N.
        old_logp: ``log pi_old(a_m|s_m)`` of the policy that sampled the episodes, when the
            objective is evaluated at other parameters (ProMP's several steps per batch):
            ``lvc`` and ``dice`` then use the importance weights ``exp(x - x_old)`` in place
            of the magic box ``exp(x - [x])``, equal to it (value and every derivative) at
            the sampling parameters. ``plain`` ignores it.

    Returns:
        ``S [K]``; at the sampling parameters its gradient is ``sum_m w_m A_m grad log pi_m``
        for every estimator.

    Raises:
        ValueError: Unknown estimator or mismatched shapes.
    """
    if not (logp.shape == advantages.shape == weights.shape == mask.shape) or logp.dim() != 2:
        shapes = [tuple(x.shape) for x in (logp, advantages, weights, mask)]
        raise ValueError(f"inner_objective needs logp, advantages, weights and mask of one shape [K, M], got {shapes}.")
    if old_logp is not None and old_logp.shape != logp.shape:
        raise ValueError(f"old_logp must have the shape of logp {tuple(logp.shape)}, got {tuple(old_logp.shape)}.")
    advantages = advantages.detach()
    base = logp.detach() if old_logp is None else old_logp.detach()
    if estimator == "plain":
        return (weights * logp * advantages).sum(-1)
    if estimator == "lvc":
        return (weights * torch.exp(logp - base) * advantages).sum(-1)
    if estimator == "dice":
        k, m = logp.shape
        if m % episodes_per_task:
            raise ValueError(f"{m} steps per task do not split into {episodes_per_task} episodes.")
        # [K, N, T] within-episode log-likelihoods W_t; padding contributes 0
        w_t = (logp * mask).reshape(k, episodes_per_task, -1).cumsum(-1)
        w_old_t = (base * mask).reshape(k, episodes_per_task, -1).cumsum(-1)
        box_t = torch.exp(w_t - w_old_t)  # magic_box(W_t) at the sampling parameters
        box_tm1 = torch.cat([torch.ones_like(box_t[..., :1]), box_t[..., :-1]], dim=-1)  # box(W_{-1}) = 1
        credit = (box_t - box_tm1).reshape(k, m)
        return (weights * credit * advantages).sum(-1)
    raise ValueError(f"Unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}.")
