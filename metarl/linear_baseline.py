"""Linear feature baseline (Duan et al. 2016, "Benchmarking deep RL for continuous control").

Per task, the value of a state is linear in the features
``[clip(obs, -10, 10), clip(obs, -10, 10)^2, t/100, (t/100)^2, (t/100)^3, 1]`` and the
coefficients are the ridge-regression solution fitted to the discounted returns of that
task's episodes. All K tasks are fitted at once with a batched Cholesky solve.
"""

from __future__ import annotations

import torch

from metarl.episodes import Episodes


def baseline_features(observations: torch.Tensor) -> torch.Tensor:
    """Features of every step.

    Args:
        observations: ``[K, N, T, obs_dim]``.

    Returns:
        ``[K, N, T, 2 * obs_dim + 4]``.
    """
    if observations.dim() != 4:
        raise ValueError(f"baseline_features expects observations [K, N, T, obs_dim], got {tuple(observations.shape)}.")
    k, n, t, _ = observations.shape
    obs = observations.clamp(-10.0, 10.0)
    al = (torch.arange(t, dtype=obs.dtype, device=obs.device) / 100.0).view(1, 1, t, 1).expand(k, n, t, 1)
    return torch.cat([obs, obs * obs, al, al * al, al * al * al, torch.ones_like(al)], dim=-1)


def fit_linear(
    x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, reg: float = 1e-5, max_tries: int = 8
) -> torch.Tensor:
    """Batched weighted ridge regression ``argmin_c sum_i w_i (x_i c - y_i)^2 + reg * s * |c|^2``.

    ``s`` is the mean diagonal of ``X^T W X`` (so ``reg`` is scale-free, plus a tiny absolute
    floor). If a Cholesky factorization fails the regularization grows 10x per try, so the
    result is finite even for degenerate (all-zero, constant) batches.

    Args:
        x: Features ``[K, M, F]``.
        y: Targets ``[K, M]``.
        w: Non-negative weights ``[K, M]`` (the mask).
        reg: Relative ridge coefficient.
        max_tries: Attempts before falling back to the pseudo-inverse.

    Returns:
        Coefficients ``[K, F]``.
    """
    if x.dim() != 3 or y.shape != x.shape[:2] or w.shape != y.shape:
        raise ValueError(
            f"fit_linear expects x [K, M, F], y [K, M], w [K, M]; got {tuple(x.shape)}, {tuple(y.shape)}, "
            f"{tuple(w.shape)}."
        )
    xw = x * w.unsqueeze(-1)
    xtx = xw.transpose(1, 2) @ x  # [K, F, F]
    xty = xw.transpose(1, 2) @ y.unsqueeze(-1)  # [K, F, 1]
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    scale = xtx.diagonal(dim1=1, dim2=2).mean(-1).clamp(min=1e-8).view(-1, 1, 1)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(xtx + reg * scale * eye)
        if not bool(info.any()):
            coeffs = torch.cholesky_solve(xty, chol).squeeze(-1)
            if bool(torch.isfinite(coeffs).all()):
                return coeffs
        reg *= 10.0
    return (torch.linalg.pinv(xtx + reg * scale * eye) @ xty).squeeze(-1)


def linear_baseline_values(episodes: Episodes, returns: torch.Tensor, reg: float = 1e-5) -> torch.Tensor:
    """Fit the linear feature baseline per task and evaluate it on the same episodes.

    Args:
        episodes: The batch (observations ``[K, N, T, obs_dim]``, mask ``[K, N, T]``).
        returns: Discounted returns ``[K, N, T]`` (the regression targets).
        reg: Relative ridge coefficient.

    Returns:
        Values ``[K, N, T]`` (zero on padded steps).
    """
    valid = episodes.mask.unsqueeze(-1) > 0  # padding may hold NaN (check_finite allows it); NaN * 0 is NaN
    feats = baseline_features(torch.where(valid, episodes.observations, torch.zeros_like(episodes.observations)))
    k, n, t, f = feats.shape
    coeffs = fit_linear(feats.reshape(k, n * t, f), returns.reshape(k, n * t), episodes.mask.reshape(k, n * t), reg)
    return (feats @ coeffs.view(k, 1, f, 1)).squeeze(-1) * episodes.mask
