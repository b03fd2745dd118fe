"""Episodes of a meta-batch, and the pure functions that turn rewards into advantages.

Layout: every per-step tensor is ``[K tasks, N episodes, T steps, ...]``, padded to the
longest episode, with ``mask [K, N, T]`` equal to 1 where a step happened. The pure
functions work along the *last* axis (time) and accept any leading batch shape; names
follow rlax (``r_t`` rewards, ``v_t`` values, ``m_t`` mask).

An episode that ends (terminated, truncated or padded out) is treated as terminal: the
value after its last step is 0, as in pytorch-maml-rl.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarl.errors import NonFiniteBatchError


def _check_time_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise ValueError(f"Shapes must match (all [..., T]): {shapes}.")
    if len(first) < 1 or first[-1] < 1:
        raise ValueError(f"Expected tensors of shape [..., T] with T >= 1, got {shapes}.")


def discounted_returns(r_t: torch.Tensor, m_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted reward-to-go ``G_t = sum_{l>=0} gamma^l r_{t+l}`` within each episode.

    Args:
        r_t: Rewards ``[..., T]``.
        m_t: Mask ``[..., T]`` (1 where the step happened, 0 after the episode ended).
        gamma: Discount factor in [0, 1].

    Returns:
        ``G_t [..., T]``, zero where ``m_t`` is zero.
    """
    _check_time_shapes(r_t=r_t, m_t=m_t)
    r_t = torch.where(m_t > 0, r_t, torch.zeros_like(r_t))  # padding may hold NaN; NaN * 0 is NaN
    g_t = torch.empty_like(r_t)
    g_next = torch.zeros_like(r_t[..., 0])
    for t in range(r_t.shape[-1] - 1, -1, -1):
        g_next = r_t[..., t] + gamma * g_next * m_t[..., t]
        g_t[..., t] = g_next
    return g_t * m_t


def gae(r_t: torch.Tensor, v_t: torch.Tensor, m_t: torch.Tensor, gamma: float, lambda_: float) -> torch.Tensor:
    """Generalized advantage estimation (Schulman et al. 2016).

    ``delta_t = r_t + gamma * v_{t+1} * m_{t+1} - v_t`` and
    ``A_t = delta_t + gamma * lambda * m_{t+1} * A_{t+1}``, with ``v_T = 0``.

    Args:
        r_t: Rewards ``[..., T]``.
        v_t: Value estimates ``[..., T]``.
        m_t: Mask ``[..., T]``.
        gamma: Discount factor.
        lambda_: GAE parameter (1.0 gives returns minus baseline).

    Returns:
        Advantages ``[..., T]``, zero where ``m_t`` is zero.
    """
    _check_time_shapes(r_t=r_t, v_t=v_t, m_t=m_t)
    valid = m_t > 0  # padding may hold NaN (check_finite allows it); NaN * 0 is NaN, so select
    r_t = torch.where(valid, r_t, torch.zeros_like(r_t))
    v_t = torch.where(valid, v_t, torch.zeros_like(v_t))
    adv = torch.empty_like(r_t)
    a_next = torch.zeros_like(r_t[..., 0])
    v_next = torch.zeros_like(r_t[..., 0])
    m_next = torch.zeros_like(r_t[..., 0])
    for t in range(r_t.shape[-1] - 1, -1, -1):
        delta = r_t[..., t] + gamma * v_next * m_next - v_t[..., t]
        a_next = delta + gamma * lambda_ * m_next * a_next
        adv[..., t] = a_next
        v_next, m_next = v_t[..., t], m_t[..., t]
    return adv * m_t


def masked_normalize(
    x: torch.Tensor, m: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-8, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Standardize ``x`` over ``dims`` using only entries where ``m`` is 1; zero elsewhere.

    Args:
        x: Values.
        m: Mask of the same shape.
        dims: Dimensions to standardize over.
        eps: Added to the standard deviation.
        weights: Optional non-negative weights (zero where ``m`` is 0) for the mean and
            variance, e.g. ``episode_weights`` so every episode counts equally; default
            ``m`` (every step counts equally).
    """
    if x.shape != m.shape:
        raise ValueError(f"x {tuple(x.shape)} and mask {tuple(m.shape)} must have the same shape.")
    w = m if weights is None else weights
    total = w.sum(dims, keepdim=True).clamp(min=1e-12)
    mean = (x * w).sum(dims, keepdim=True) / total
    var = (w * ((x - mean) * m) ** 2).sum(dims, keepdim=True) / total
    return (x - mean) / (var.sqrt() + eps) * m


def episode_weights(m_t: torch.Tensor) -> torch.Tensor:
    """Per-step weights that give every episode the same total weight, 1 per task.

    For a mask ``[K, N, T]``: ``w = m / (length of the episode) / (episodes of the task)``,
    i.e. the mean over episodes of each episode's mean over its own steps, as
    pytorch-maml-rl's ``weighted_mean`` (an episode that ends early is not down-weighted).
    """
    if m_t.dim() != 3:
        raise ValueError(f"episode_weights expects a mask [K, N, T], got {tuple(m_t.shape)}.")
    per_episode = m_t / m_t.sum(-1, keepdim=True).clamp(min=1.0)
    return per_episode / per_episode.sum((1, 2), keepdim=True).clamp(min=1e-12)


@dataclass
class Episodes:
    """Trajectories of K tasks x N episodes, padded to T steps.

    Attributes:
        observations: ``[K, N, T, obs_dim]`` observation before each action.
        actions: ``[K, N, T, act_dim]`` (continuous) or ``[K, N, T]`` (discrete).
        rewards: ``[K, N, T]``.
        mask: ``[K, N, T]`` float, 1 where the step happened.
        success: ``[K, N, T]`` float, 1 where the step's ``info["success"]`` was true, for
            families that report success (Meta-World); ``None`` for the others.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    success: torch.Tensor | None = None

    def __post_init__(self) -> None:
        k, n, t = self.rewards.shape
        if (
            self.mask.shape != (k, n, t)
            or self.observations.shape[:3] != (k, n, t)
            or self.actions.shape[:3] != (k, n, t)
        ):
            raise ValueError(
                "Episodes need observations [K, N, T, obs_dim], actions [K, N, T(, act_dim)], rewards and mask [K, N, "
                "T]; got "
                f"{tuple(self.observations.shape)}, {tuple(self.actions.shape)}, {tuple(self.rewards.shape)}, "
                f"{tuple(self.mask.shape)}."
            )
        if self.success is not None and self.success.shape != (k, n, t):
            raise ValueError(f"Episodes need success [K, N, T] = {(k, n, t)}, got {tuple(self.success.shape)}.")

    @property
    def num_tasks(self) -> int:
        return self.rewards.shape[0]

    @property
    def episodes_per_task(self) -> int:
        return self.rewards.shape[1]

    @property
    def num_steps(self) -> int:
        """Number of real (unpadded) env steps in the batch."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode ``[K, N]``."""
        return (self.rewards * self.mask).sum(-1)

    def episode_success(self) -> torch.Tensor | None:
        """Whether every episode succeeded at any of its steps ``[K, N]`` (float 0/1, Meta-World's
        success), or ``None`` when the family reports no success."""
        if self.success is None:
            return None
        return ((self.success * self.mask) > 0).any(-1).to(self.rewards.dtype)

    def success_rate(self) -> float:
        """The fraction of episodes that succeeded at any step (NaN when the family reports no success)."""
        success = self.episode_success()
        return float("nan") if success is None else float(success.mean())

    def check_finite(self) -> None:
        """Raise ``NonFiniteBatchError`` naming the field and task if anything is NaN/inf."""
        for name in ("observations", "actions", "rewards"):
            x = getattr(self, name)
            m = self.mask.bool()
            if not torch.isfinite(x[m]).all():
                m_x = m.reshape(*m.shape, *([1] * (x.dim() - m.dim()))).expand_as(x)
                bad = (~torch.isfinite(x) & m_x).reshape(x.shape[0], -1).any(-1)
                task = int(bad.nonzero()[0, 0]) if bad.any() else -1
                raise NonFiniteBatchError(
                    f"The batch has NaN or inf in {name} (first in task {task}). Check the environment's "
                    "step() output and the policy's parameters (a diverged policy produces NaN actions)."
                )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Episodes:
        """A copy on ``device``; floating tensors cast to ``dtype`` if given."""

        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype if (dtype is not None and x.is_floating_point()) else x.dtype)

        return Episodes(
            move(self.observations),
            move(self.actions),
            move(self.rewards),
            move(self.mask),
            None if self.success is None else move(self.success),
        )
