"""Sinusoid regression (Finn et al. 2017, "Model-Agnostic Meta-Learning", section 5.1).

    python examples/sinusoid.py [--iterations 2000]   # MAML vs pretrained on held-out tasks

MAML is model-agnostic: this example meta-learns a regressor with the *same* inner update
the RL learner uses, ``metarl.adaptation.gradient_step``, applied to a regression loss.

Tasks: ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5.0]``, phase ``phi ~ U[0, pi]``
and inputs ``x ~ U[-5, 5]``. The network is a 1-40-40-1 ReLU MLP (``metarl.policies.mlp``)
with the mean-squared error ``L_k(theta) = mean_m (f_theta(x_km) - y_km)^2``.

* MAML (second order, one inner step as in the paper)::

      theta'_k = theta - alpha * grad_theta L_k^support(theta)
      min_theta  mean_k L_k^query(theta'_k)          (Adam, lr beta)

  with K support and K query points per task (K shots), 25 tasks per meta-batch,
  alpha = 0.01, beta = 1e-3. All tasks adapt at once: the parameters are stacked along a
  task dimension (``stack_params``) and ``gradient_step`` differentiates ``sum_k L_k``.

* Pretrained baseline: the same network regressing ``y`` from ``x`` on the same mixed
  batches (all 2K points of every task), Adam lr 1e-3, same number of iterations.

* Evaluation on held-out tasks: ``steps`` plain gradient steps of the support MSE with step
  size alpha (``gradient_step`` again, for both methods), query MSE after each step.

Example:
    >>> cfg = SinusoidConfig(iterations=100, eval_tasks=50)
    >>> maml = train_maml(cfg)
    >>> batch = sample_batch(cfg.eval_tasks, cfg.shots, cfg.eval_points, eval_generator(cfg), cfg)
    >>> curve = evaluate(maml.regressor, batch, cfg.inner_lr, cfg.eval_steps)  # [steps + 1, K]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch

from metarl.adaptation import gradient_step
from metarl.policies import MLPPolicy, Params, detach_params, mlp, stack_params
from metarl.stats import normal_interval


@dataclass
class SinusoidConfig:
    """One sinusoid-regression run (defaults: Finn et al. 2017 except ``iterations``).

    Raises:
        ValueError: On construction, for any invalid value (see ``validate``).
    """

    iterations: int = 10_000
    """Meta-iterations of MAML, and iterations of the pretrained baseline (the paper: 70,000)."""
    meta_batch_size: int = 25
    """Tasks per iteration."""
    shots: int = 10
    """K: support points per task (and query points per task during meta-training)."""
    inner_lr: float = 0.01
    """alpha: inner step size, used for meta-training and for fine-tuning at evaluation."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training."""
    first_order: bool = False
    """First-order MAML (no gradient through the inner step's gradient)."""
    outer_lr: float = 1e-3
    """beta: Adam step size of the meta-update and of the pretrained baseline."""
    hidden_sizes: tuple[int, ...] = (40, 40)
    """Hidden layer widths of the ReLU MLP."""
    amplitude_range: tuple[float, float] = (0.1, 5.0)
    """Amplitudes ``A ~ U[low, high]``."""
    phase_range: tuple[float, float] = (0.0, math.pi)
    """Phases ``phi ~ U[low, high]``."""
    input_range: tuple[float, float] = (-5.0, 5.0)
    """Inputs ``x ~ U[low, high]``."""
    seed: int = 0
    """Seeds the network initialization and the training tasks."""
    eval_seed: int = 1_000_003
    """Seeds the held-out evaluation tasks (must differ from ``seed``)."""
    eval_tasks: int = 600
    """Held-out tasks for evaluation."""
    eval_points: int = 100
    """Query points per held-out task."""
    eval_steps: int = 10
    """Fine-tuning steps at evaluation (MSE is reported after 0..eval_steps)."""
    dtype: str = "float32"
    """``float32`` or ``float64``."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(self.hidden_sizes)
        self.amplitude_range = tuple(self.amplitude_range)  # type: ignore[assignment]
        self.phase_range = tuple(self.phase_range)  # type: ignore[assignment]
        self.input_range = tuple(self.input_range)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> SinusoidConfig:
        """Check every value; return ``self``.

        Raises:
            ValueError: Naming the field, the bad value and what is allowed.
        """
        for name in ("meta_batch_size", "shots", "inner_steps", "eval_points", "eval_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SinusoidConfig.{name} must be an integer >= 1, got {value!r}.")
        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or self.iterations < 0:
            raise ValueError(f"SinusoidConfig.iterations must be an integer >= 0, got {self.iterations!r}.")
        if not isinstance(self.eval_tasks, int) or self.eval_tasks < 2:
            raise ValueError(
                "SinusoidConfig.eval_tasks must be an integer >= 2 (for a confidence interval), got "
                f"{self.eval_tasks!r}."
            )
        for name in ("inner_lr", "outer_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"SinusoidConfig.{name} must be a finite number > 0, got {value!r}.")
        if not self.hidden_sizes or any(not isinstance(h, int) or h < 1 for h in self.hidden_sizes):
            raise ValueError(
                f"SinusoidConfig.hidden_sizes must be a non-empty list of integers >= 1, got {self.hidden_sizes!r}."
            )
        for name in ("amplitude_range", "phase_range", "input_range"):
            value = getattr(self, name)
            if len(value) != 2 or not all(math.isfinite(v) for v in value) or not value[0] < value[1]:
                raise ValueError(f"SinusoidConfig.{name} must be (low, high) with finite low < high, got {value!r}.")
        if self.seed == self.eval_seed:
            raise ValueError(
                f"SinusoidConfig.eval_seed must differ from seed ({self.seed}): evaluation tasks are held out."
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"SinusoidConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}.")
        return self

    @property
    def torch_dtype(self) -> torch.dtype:
        """``self.dtype`` as a ``torch.dtype``."""
        return torch.float64 if self.dtype == "float64" else torch.float32

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view (JSON-ready)."""
        return asdict(self)


class SinusoidBatch(NamedTuple):
    """K tasks with their support and query sets.

    Attributes:
        amplitude: ``[K]``.
        phase: ``[K]``.
        x_support: ``[K, S, 1]``.
        y_support: ``[K, S, 1]``.
        x_query: ``[K, Q, 1]``.
        y_query: ``[K, Q, 1]``.
    """

    amplitude: torch.Tensor
    phase: torch.Tensor
    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor


def sinusoid(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``y = A sin(x - phi)`` for ``x [K, M, 1]``, ``amplitude [K]``, ``phase [K]`` -> ``[K, M, 1]``.

    Raises:
        ValueError: On mismatched shapes.
    """
    if x.dim() != 3 or x.shape[-1] != 1 or amplitude.shape != (x.shape[0],) or phase.shape != (x.shape[0],):
        raise ValueError(
            f"sinusoid needs x [K, M, 1], amplitude [K], phase [K]; got {tuple(x.shape)}, {tuple(amplitude.shape)}, "
            f"{tuple(phase.shape)}."
        )
    return amplitude[:, None, None] * torch.sin(x - phase[:, None, None])


def _uniform(
    shape: tuple[int, ...], bounds: tuple[float, float], generator: torch.Generator, dtype: torch.dtype
) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


def sample_batch(
    num_tasks: int,
    support_points: int,
    query_points: int,
    generator: torch.Generator,
    config: SinusoidConfig,
    query_grid: bool = False,
) -> SinusoidBatch:
    """Draw ``num_tasks`` tasks and their support / query sets from ``generator``.

    Args:
        num_tasks: K.
        support_points: S (K-shot: S = K).
        query_points: Q.
        generator: A seeded ``torch.Generator`` (the only source of randomness).
        config: Gives the amplitude, phase and input ranges and the dtype.
        query_grid: Query inputs on an even grid over ``input_range`` instead of uniform draws.

    Returns:
        A ``SinusoidBatch`` (all tensors in ``config.dtype``).

    Raises:
        ValueError: For a non-positive count.
    """
    if num_tasks < 1 or support_points < 1 or query_points < 1:
        raise ValueError(
            f"sample_batch needs counts >= 1, got num_tasks={num_tasks}, support_points={support_points}, "
            f"query_points={query_points}."
        )
    dtype = config.torch_dtype
    amplitude = _uniform((num_tasks,), config.amplitude_range, generator, dtype)
    phase = _uniform((num_tasks,), config.phase_range, generator, dtype)
    x_support = _uniform((num_tasks, support_points, 1), config.input_range, generator, dtype)
    if query_grid:
        grid = torch.linspace(*config.input_range, query_points, dtype=dtype)
        x_query = grid.reshape(1, query_points, 1).expand(num_tasks, query_points, 1).contiguous()
    else:
        x_query = _uniform((num_tasks, query_points, 1), config.input_range, generator, dtype)
    return SinusoidBatch(
        amplitude, phase, x_support, sinusoid(x_support, amplitude, phase), x_query, sinusoid(x_query, amplitude, phase)
    )


def train_generator(config: SinusoidConfig) -> torch.Generator:
    """The generator of the training tasks (seeded with ``config.seed``)."""
    return torch.Generator().manual_seed(config.seed)


def eval_generator(config: SinusoidConfig) -> torch.Generator:
    """The generator of the held-out tasks (seeded with ``config.eval_seed``)."""
    return torch.Generator().manual_seed(config.eval_seed)


def make_regressor(config: SinusoidConfig) -> MLPPolicy:
    """The 1-hidden_sizes-1 ReLU MLP holding the initial parameters, initialized from ``config.seed``.

    Xavier-uniform weights, zero biases (``MLPPolicy``); the global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        regressor = MLPPolicy(obs_dim=1, out_dim=1, hidden_sizes=config.hidden_sizes, activation="relu")
    return regressor.to(config.torch_dtype)


def predict(params: Params, x: torch.Tensor, num_layers: int) -> torch.Tensor:
    """The ReLU MLP's output: shared params with ``x [..., 1]``, or stacked ``[K, ...]`` params with ``x [K, M, 1]``."""
    return mlp(params, x, num_layers, "relu")


def task_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean-squared error per task: ``pred, y [K, M, 1]`` -> ``[K]``.

    Raises:
        ValueError: On mismatched or non-``[K, M, 1]`` shapes.
    """
    if pred.shape != y.shape or pred.dim() != 3 or pred.shape[-1] != 1:
        raise ValueError(
            f"task_mse needs pred and y of the same shape [K, M, 1], got {tuple(pred.shape)} and {tuple(y.shape)}."
        )
    return ((pred - y) ** 2).mean(dim=(1, 2))


def _check_stacked(params: Params, x: torch.Tensor) -> None:
    w = params["layers.0.weight"]
    if w.dim() != 3 or x.dim() != 3 or w.shape[0] != x.shape[0]:
        raise ValueError(
            "Expected parameters stacked per task [K, ...] and inputs [K, M, 1] with the same K, got weight "
            f"{tuple(w.shape)} and x {tuple(x.shape)}."
        )


def adapt(
    params: Params, x: torch.Tensor, y: torch.Tensor, num_layers: int, lr: float, steps: int, create_graph: bool
) -> Params:
    """``steps`` inner steps per task: ``theta_k <- theta_k - lr * grad L_k^support(theta_k)``.

    One ``gradient_step`` on ``sum_k L_k`` adapts every task (the tasks are independent).

    Args:
        params: Stacked ``[K, ...]`` parameters with a graph to (or being) leaves that require grad.
        x: Support inputs ``[K, S, 1]``.
        y: Support targets ``[K, S, 1]``.
        num_layers: Layers of the MLP.
        lr: Step size alpha.
        steps: Number of steps.
        create_graph: Differentiate through the steps (second-order MAML).

    Returns:
        The stacked adapted parameters.

    Raises:
        ValueError: For unstacked parameters or mismatched shapes.
    """
    _check_stacked(params, x)
    for _ in range(steps):
        loss = task_mse(predict(params, x, num_layers), y).sum()
        params = gradient_step(loss, params, lr, create_graph)
    return params


def maml_loss(
    params: Params,
    batch: SinusoidBatch,
    num_layers: int,
    inner_lr: float,
    inner_steps: int = 1,
    first_order: bool = False,
) -> torch.Tensor:
    """MAML's meta-objective ``mean_k L_k^query(theta'_k)`` for shared ``params`` (scalar)."""
    stacked = stack_params(params, batch.x_support.shape[0])
    adapted = adapt(
        stacked, batch.x_support, batch.y_support, num_layers, inner_lr, inner_steps, create_graph=not first_order
    )
    return task_mse(predict(adapted, batch.x_query, num_layers), batch.y_query).mean()


def pretrain_loss(params: Params, batch: SinusoidBatch, num_layers: int) -> torch.Tensor:
    """The pretrained baseline's objective: MSE of shared ``params`` on every point of the mixed tasks."""
    x = torch.cat([batch.x_support, batch.x_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    return task_mse(predict(params, x, num_layers), y).mean()


@dataclass
class TrainResult:
    """A trained regressor and its training curve."""

    regressor: MLPPolicy
    """Holds the learned (initial) parameters."""
    losses: list[float]
    """Training loss per iteration."""
    seconds: float
    """Wall time of the training loop."""


def _train(
    config: SinusoidConfig,
    objective: Callable[[Params, SinusoidBatch, int], torch.Tensor],
    log_every: int,
    log: Callable[[str], None] | None,
    name: str,
) -> TrainResult:
    regressor = make_regressor(config)
    params = regressor.get_params()
    optimizer = torch.optim.Adam(regressor.parameters(), lr=config.outer_lr)
    generator = train_generator(config)
    losses: list[float] = []
    start = time.perf_counter()
    for it in range(config.iterations):
        batch = sample_batch(config.meta_batch_size, config.shots, config.shots, generator, config)
        loss = objective(params, batch, regressor.num_layers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log is not None and log_every > 0 and (it + 1) % log_every == 0:
            recent = losses[-log_every:]
            log(f"{name} iteration {it + 1}/{config.iterations}: loss {sum(recent) / len(recent):.3f}")
    return TrainResult(regressor, losses, time.perf_counter() - start)


def train_maml(config: SinusoidConfig, log_every: int = 0, log: Callable[[str], None] | None = None) -> TrainResult:
    """Meta-train with MAML (Adam on ``maml_loss``); tasks from ``train_generator(config)``.

    Args:
        config: The run.
        log_every: Call ``log`` with the mean loss every this many iterations (0: never).
        log: E.g. ``print``.
    """

    def objective(params: Params, batch: SinusoidBatch, num_layers: int) -> torch.Tensor:
        return maml_loss(params, batch, num_layers, config.inner_lr, config.inner_steps, config.first_order)

    return _train(config, objective, log_every, log, "maml")


def train_pretrained(
    config: SinusoidConfig, log_every: int = 0, log: Callable[[str], None] | None = None
) -> TrainResult:
    """Train the baseline on all tasks jointly (Adam on ``pretrain_loss``), same init and tasks as MAML."""
    return _train(config, pretrain_loss, log_every, log, "pretrained")


def fine_tune(params: Params, x: torch.Tensor, y: torch.Tensor, num_layers: int, lr: float, steps: int) -> list[Params]:
    """Plain gradient descent on each task's support MSE, without a graph to the start.

    Args:
        params: Shared parameters (stacked here to K) or already stacked ``[K, ...]``.
        x: Support inputs ``[K, S, 1]``.
        y: Support targets ``[K, S, 1]``.
        num_layers: Layers of the MLP.
        lr: Step size alpha.
        steps: Number of steps.

    Returns:
        ``steps + 1`` stacked parameter dicts: after 0, 1, ..., ``steps`` steps (detached).
    """
    if params["layers.0.weight"].dim() == 2:
        params = stack_params(params, x.shape[0])
    _check_stacked(params, x)
    current = {k: v.detach().clone() for k, v in params.items()}
    path = [current]
    with torch.enable_grad():
        for _ in range(steps):
            leaves = {k: v.requires_grad_() for k, v in detach_params(current).items()}
            loss = task_mse(predict(leaves, x, num_layers), y).sum()
            current = detach_params(gradient_step(loss, leaves, lr, create_graph=False))
            path.append(current)
    return path


def evaluate(regressor: MLPPolicy, batch: SinusoidBatch, lr: float, steps: int) -> torch.Tensor:
    """Query MSE of every task after 0..``steps`` fine-tuning steps on its support set.

    Returns:
        ``[steps + 1, K]``: row ``i`` is the query MSE after ``i`` steps.
    """
    path = fine_tune(regressor.get_params(), batch.x_support, batch.y_support, regressor.num_layers, lr, steps)
    with torch.no_grad():
        return torch.stack([task_mse(predict(p, batch.x_query, regressor.num_layers), batch.y_query) for p in path])


def mean_ci(values: torch.Tensor, z: float = 1.96) -> tuple[float, float]:
    """Mean of ``values [N]`` and the half-width of its normal-approximation confidence interval (95% by default).

    Raises:
        ValueError: With fewer than two values.
    """
    if values.dim() != 1 or values.numel() < 2:
        raise ValueError(f"mean_ci needs a 1-D tensor of at least 2 values, got shape {tuple(values.shape)}.")
    mean, half, _ = normal_interval(values.double().numpy(), z)
    return mean, half


def main(argv: list[str] | None = None) -> int:
    """Train MAML and the pretrained baseline briefly and print the held-out query MSE per step."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Sinusoid regression: MAML vs a pretrained regressor (Finn et al. 2017, 5.1)."
    )
    parser.add_argument(
        "--iterations", type=int, default=2000, help="meta-iterations of each method (the paper: 70000)"
    )
    parser.add_argument("--eval-tasks", type=int, default=100, help="held-out tasks")
    args = parser.parse_args(argv)
    cfg = SinusoidConfig(iterations=args.iterations, eval_tasks=args.eval_tasks).validate()
    batch = sample_batch(cfg.eval_tasks, cfg.shots, cfg.eval_points, eval_generator(cfg), cfg)
    for name, result in (("maml", train_maml(cfg)), ("pretrained", train_pretrained(cfg))):
        curve = evaluate(result.regressor, batch, cfg.inner_lr, cfg.eval_steps)
        cells = [f"{m:.3f} +- {h:.3f}" for m, h in (mean_ci(row) for row in curve)]
        print(f"{name:>10}: query MSE after 0..{cfg.eval_steps} steps: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
