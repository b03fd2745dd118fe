"""Policies as pure functions of an explicit parameter dict.

The ``nn.Module`` only *holds* the initial (meta-learned) parameters. Every evaluation
goes through ``policy.distribution(params, obs)`` with a dict of tensors, so adapted
parameters never touch the module (pytorch-maml-rl ``policies/policy.py`` style).

Parameters may carry a leading *task* dimension: with ``params[name]`` of shape
``[K, *shape]`` and observations ``[K, M, obs_dim]``, task ``k``'s observations go through
task ``k``'s parameters, so one forward (and one backward) serves all K tasks.

Distributions are named tuples of tensors: ``Gaussian(mean, log_std)`` and
``Categorical(log_probs)``. ``log_prob``, ``kl`` and ``sample`` are pure functions of them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import torch
from torch import nn

from metarl.errors import UnsupportedSpaceError

Params = dict[str, torch.Tensor]


class Gaussian(NamedTuple):
    """A diagonal Gaussian over actions."""

    mean: torch.Tensor
    """``[..., act_dim]``."""
    log_std: torch.Tensor
    """``[..., act_dim]`` (state-independent, broadcast to the mean's shape)."""


class Categorical(NamedTuple):
    """A categorical distribution over discrete actions."""

    log_probs: torch.Tensor
    """``[..., num_actions]``, normalized (``log_softmax`` of the logits)."""


Dist = tuple[torch.Tensor, ...]
"""Any distribution of this module (``Gaussian`` or ``Categorical``): a tuple of tensors."""


def detach_dist(dist: Dist) -> Dist:
    """The same distribution (same named-tuple type) cut from the autograd graph."""
    return type(dist)(*(t.detach() for t in dist))  # type: ignore[call-arg]


_LOG_2PI = math.log(2.0 * math.pi)


def stack_params(params: Params, num_tasks: int) -> Params:
    """Broadcast shared parameters to a leading task dimension ``[K, *shape]`` (a view)."""
    return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}


def detach_params(params: Params) -> Params:
    """A copy of ``params`` cut from the autograd graph."""
    return {k: v.detach() for k, v in params.items()}


class _Tanh(torch.autograd.Function):
    """``tanh`` computed as ``2 * sigmoid(2x) - 1``, twice differentiable.

    On CPU ``torch.tanh`` runs ~9x slower than ``torch.sigmoid`` (measured here with torch
    2.13, 2.6M floats: 9.5 ms vs 1.1 ms); the activation dominated the meta-update. The
    backward is ``tanh_backward(g, y)``, itself differentiable, so second-order MAML and
    Hessian-vector products work through it.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.sigmoid(2.0 * x).mul_(2.0).sub_(1.0)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.ops.aten.tanh_backward(grad, y)


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)`` (see ``_Tanh``); without autograd it skips the Function's overhead (rollouts)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Tanh.apply(x)
    return torch.sigmoid(2.0 * x).mul_(2.0).sub_(1.0)


def mlp(params: Params, x: torch.Tensor, num_layers: int, activation: str) -> torch.Tensor:
    """``num_layers`` affine layers with ``activation`` between them.

    Works for shared weights ``W [out, in]`` with ``x [..., in]`` and for stacked weights
    ``W [K, out, in]`` with ``x [K, M, in]``.
    """
    act = fast_tanh if activation == "tanh" else torch.relu
    for i in range(num_layers):
        w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
        if w.dim() == 3:  # stacked per task: fused batched x @ W^T + b
            x = torch.baddbmm(b.unsqueeze(-2), x, w.transpose(-1, -2))
        else:
            x = torch.matmul(x, w.transpose(-1, -2)) + b
        if i < num_layers - 1:
            x = act(x)
    return x


class MLPPolicy(nn.Module):
    """Shared machinery: an MLP whose parameters live in the module but are passed explicitly."""

    def __init__(self, obs_dim: int, out_dim: int, hidden_sizes: tuple[int, ...], activation: str) -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}.")
        self.obs_dim = obs_dim
        self.activation = activation
        sizes = (obs_dim, *hidden_sizes, out_dim)
        self.num_layers = len(sizes) - 1
        layers = [nn.Linear(sizes[i], sizes[i + 1]) for i in range(self.num_layers)]
        for layer in layers:  # Xavier-uniform weights and zero biases, as pytorch-maml-rl.
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)

    def get_params(self) -> Params:
        """The module's parameters as a name -> tensor dict (tensors are the live parameters)."""
        return dict(self.named_parameters())

    def load_params(self, params: Params) -> None:
        """Copy ``params`` into the module (used only for the meta-update, never to adapt)."""
        with torch.no_grad():
            for name, p in self.get_params().items():
                p.copy_(params[name])

    def _check_obs(self, params: Params, obs: torch.Tensor) -> None:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"Observations have last dimension {obs.shape[-1]}, the policy expects {self.obs_dim}.")
        stacked = params["layers.0.weight"].dim() == 3
        if stacked and (obs.dim() != 3 or obs.shape[0] != params["layers.0.weight"].shape[0]):
            raise ValueError(
                f"Stacked parameters for {params['layers.0.weight'].shape[0]} tasks need observations of shape "
                f"[K, M, {self.obs_dim}], got {tuple(obs.shape)}."
            )


class GaussianMLPPolicy(MLPPolicy):
    """Diagonal Gaussian with an MLP mean and a state-independent log standard deviation.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden_sizes: Hidden layer widths (default 64-64).
        activation: ``"tanh"`` (default) or ``"relu"``.
        init_std: Initial standard deviation (1.0 as in pytorch-maml-rl).
        min_log_std: Lower clamp on the log standard deviation.
    """

    discrete = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        init_std: float = 1.0,
        min_log_std: float = math.log(1e-6),
    ) -> None:
        super().__init__(obs_dim, act_dim, hidden_sizes, activation)
        self.act_dim = act_dim
        self.min_log_std = min_log_std
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def distribution(self, params: Params, obs: torch.Tensor) -> Dist:
        """``(mean [..., act_dim], log_std [..., act_dim])`` of the action distribution."""
        self._check_obs(params, obs)
        mean = mlp(params, obs, self.num_layers, self.activation)
        log_std = params["log_std"].clamp(min=self.min_log_std)
        if log_std.dim() == 2:  # stacked: [K, act] -> [K, 1, act]
            log_std = log_std.unsqueeze(-2)
        return Gaussian(mean, log_std.expand_as(mean))

    @staticmethod
    def log_prob(dist: Dist, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``actions [..., act_dim]``, summed over action dims -> ``[...]``."""
        mean, log_std = dist
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z * z - log_std - 0.5 * _LOG_2PI).sum(-1)

    @staticmethod
    def kl(old: Dist, new: Dist) -> torch.Tensor:
        """``KL(old || new)`` per sample -> ``[...]``."""
        m0, s0 = old
        m1, s1 = new
        var_ratio = torch.exp(2.0 * (s0 - s1))
        diff = (m0 - m1) * torch.exp(-s1)
        return (0.5 * (var_ratio + diff * diff - 1.0) - (s0 - s1)).sum(-1)

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """The random numbers of ``batch_shape`` actions -> ``[*batch_shape, act_dim]`` standard normals.

        Drawn apart from the distribution so that a slice of a batch can be acted on
        elsewhere with exactly the numbers the whole batch would use (the Ray sampler).
        """
        return torch.randn((*batch_shape, self.act_dim), generator=generator)

    @staticmethod
    def act(dist: Dist, noise: torch.Tensor) -> torch.Tensor:
        """The actions ``mean + std * noise`` -> ``[..., act_dim]``."""
        mean, log_std = dist
        return mean + torch.exp(log_std) * noise

    def sample(self, dist: Dist, generator: torch.Generator | None = None) -> torch.Tensor:
        """One action per distribution, drawn with ``generator``."""
        return self.act(dist, self.noise(tuple(dist[0].shape[:-1]), generator).to(dist[0]))

    @staticmethod
    def entropy(dist: Dist) -> torch.Tensor:
        """Entropy per sample -> ``[...]``."""
        _, log_std = dist
        return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


class CategoricalMLPPolicy(MLPPolicy):
    """Categorical distribution over ``num_actions`` with MLP logits.

    Args:
        obs_dim: Observation size.
        num_actions: Number of discrete actions.
        hidden_sizes: Hidden layer widths.
        activation: ``"tanh"`` (default) or ``"relu"``.
    """

    discrete = True

    def __init__(
        self, obs_dim: int, num_actions: int, hidden_sizes: tuple[int, ...] = (64, 64), activation: str = "tanh"
    ) -> None:
        super().__init__(obs_dim, num_actions, hidden_sizes, activation)
        self.num_actions = num_actions

    def distribution(self, params: Params, obs: torch.Tensor) -> Dist:
        """``(log_probs [..., num_actions],)``: normalized logits."""
        self._check_obs(params, obs)
        return Categorical(torch.log_softmax(mlp(params, obs, self.num_layers, self.activation), dim=-1))

    @staticmethod
    def log_prob(dist: Dist, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of integer ``actions [...]`` -> ``[...]``."""
        return dist[0].gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def kl(old: Dist, new: Dist) -> torch.Tensor:
        """``KL(old || new)`` per sample -> ``[...]``."""
        return (old[0].exp() * (old[0] - new[0])).sum(-1)

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        """The random numbers of ``batch_shape`` actions -> ``[*batch_shape]`` uniforms in [0, 1)."""
        return torch.rand(batch_shape, generator=generator)

    @staticmethod
    def act(dist: Dist, noise: torch.Tensor) -> torch.Tensor:
        """The action indices by inverse CDF: the first action whose cumulative probability exceeds ``noise``."""
        cdf = dist[0].exp().cumsum(-1)
        index = (cdf <= noise.to(cdf).unsqueeze(-1)).sum(-1)
        return index.clamp(max=dist[0].shape[-1] - 1)

    def sample(self, dist: Dist, generator: torch.Generator | None = None) -> torch.Tensor:
        """One action index per distribution, drawn with ``generator``."""
        return self.act(dist, self.noise(tuple(dist[0].shape[:-1]), generator))

    @staticmethod
    def entropy(dist: Dist) -> torch.Tensor:
        """Entropy per sample -> ``[...]``."""
        return -(dist[0].exp() * dist[0]).sum(-1)


Policy = GaussianMLPPolicy | CategoricalMLPPolicy


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: tuple[int, ...],
    activation: str,
    init_std: float = 1.0,
) -> Policy:
    """The policy for these spaces: Gaussian for ``Box`` actions, categorical for ``Discrete``.

    Raises:
        UnsupportedSpaceError: For observation or action spaces the policies cannot handle.
    """
    problem = space_problem(observation_space, action_space)
    if problem:
        raise UnsupportedSpaceError(problem)
    assert isinstance(observation_space, gym.spaces.Box)
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Box):
        return GaussianMLPPolicy(obs_dim, action_space.shape[0], hidden_sizes, activation, init_std)
    assert isinstance(action_space, gym.spaces.Discrete)
    return CategoricalMLPPolicy(obs_dim, int(action_space.n), hidden_sizes, activation)


def space_problem(observation_space: gym.Space, action_space: gym.Space) -> str | None:
    """Why metarl's policies cannot take these spaces (a sentence that says what to do), or ``None``.

    The policies are MLPs: a flat (1-D) ``Box`` observation, and a flat ``Box`` or a
    ``Discrete`` action.
    """
    flatten = (
        "flatten it: return gymnasium.wrappers.FlattenObservation(YourFamily(...)) from a function and pass "
        "family=module:function (the task API stays reachable through env.unwrapped)"
    )
    if not isinstance(observation_space, gym.spaces.Box):
        return (
            f"metarl's policies need a flat Box observation space; this family has {observation_space}. To train on "
            f"it, {flatten}."
        )
    if len(observation_space.shape) != 1:
        return (
            f"metarl's policies are MLPs and need a 1-D Box observation space; this family's has shape "
            f"{observation_space.shape} (an image?). To train an MLP on it, {flatten}."
        )
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return None
    if isinstance(action_space, gym.spaces.Discrete):
        return None
    return (
        f"metarl's policies handle a flat Box or a Discrete action space; this family has {action_space}. "
        "Give the family one of those."
    )
