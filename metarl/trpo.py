"""Trust-region machinery (Schulman et al. 2015): conjugate gradient and a backtracking line search.

These are pure functions of callables and flat vectors; ``metarl/learners/maml_trpo.py`` supplies the
meta-objective, its gradient and the Hessian-vector product of the KL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vector[i : i + t.numel()].view_as(t))
        i += t.numel()
    if i != vector.numel():
        raise ValueError(f"Vector of size {vector.numel()} does not match parameters of total size {i}.")
    return out


def conjugate_gradient(
    avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given only ``v -> A v``.

    Args:
        avp: The matrix-vector product.
        b: Right-hand side ``[P]``.
        iters: Maximum iterations.
        residual_tol: Stop once ``|r|^2`` falls below this.

    Returns:
        ``x [P]``.
    """
    return conjugate_gradient_with_residual(avp, b, iters, residual_tol)[0]


def conjugate_gradient_with_residual(
    avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """``conjugate_gradient`` that also returns the residual ``r = b - A x`` (as CG tracks it).

    With it, ``x^T A x = x^T (b - r)`` costs no further matrix-vector product.
    """
    if b.dim() != 1:
        raise ValueError(f"conjugate_gradient expects a flat vector b, got shape {tuple(b.shape)}.")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if rr.item() < residual_tol:
            break
        ap = avp(p)
        alpha = rr / torch.dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, r


@dataclass
class LineSearchResult:
    """Outcome of ``line_search``.

    Attributes:
        accepted: Whether a step satisfied both conditions (else the parameters stay).
        step_fraction: Fraction of the full step taken (0.0 if rejected).
        backtracks: Number of step-size reductions before acceptance (or all tried).
        loss: Loss at the returned point.
        kl: KL at the returned point (0.0 if rejected).
    """

    accepted: bool
    step_fraction: float
    backtracks: int
    loss: float
    kl: float


def line_search(
    evaluate: Callable[[float], tuple[float, float]],
    loss_before: float,
    max_kl: float,
    max_steps: int = 15,
    backtrack_ratio: float = 0.8,
) -> LineSearchResult:
    """Backtrack along a proposed step until the loss improves and the KL stays in bounds.

    Tries step fractions ``1, r, r^2, ...`` (``r = backtrack_ratio``) and accepts the first
    with ``loss < loss_before`` and ``kl <= max_kl``, as in pytorch-maml-rl / rllab.

    Args:
        evaluate: ``fraction -> (loss, kl)`` at ``params_old + fraction * full_step``.
        loss_before: The loss at the old parameters.
        max_kl: Trust-region radius.
        max_steps: Step sizes to try.
        backtrack_ratio: Shrink factor per try, in (0, 1).

    Returns:
        A ``LineSearchResult``; when nothing was accepted the caller keeps the old parameters.
    """
    fraction = 1.0
    for i in range(max_steps):
        loss, kl = evaluate(fraction)
        if loss < loss_before and kl <= max_kl:
            return LineSearchResult(True, fraction, i, loss, kl)
        fraction *= backtrack_ratio
    return LineSearchResult(False, 0.0, max_steps, loss_before, 0.0)
