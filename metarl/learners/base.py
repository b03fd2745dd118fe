"""What every meta-learner shares: the sampling-time adaptation, the stats of an update, checkpoint state.

A meta-learner turns sampled episodes into an ``Adaptation`` (whose parameters the sampler
uses next) and an ``Adaptation`` plus the post-adaptation episodes into a meta-update of
the shared initial parameters. All of them adapt the same way, with the inner
policy-gradient step of ``metarl.adaptation`` (so evaluation and fine-tuning are identical
across learners); they differ only in the outer step. One meta-iteration (what
``metarl.trainer.Trainer`` does)::

    adaptation = None
    params = learner.initial_params()
    for _ in range(num_steps):
        adaptation = learner.adapt(sampler.sample(params, tasks, n), adaptation)
        params = adaptation.params
    post_episodes = sampler.sample(params, tasks, n)
    stats = learner.step(adaptation, post_episodes)

The registry that builds a learner from a config is ``metarl.learners``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch

from metarl.adaptation import Adaptation, InnerLoop, TaskBatch
from metarl.episodes import Episodes
from metarl.policies import Params, Policy


class AdaptSettings(Protocol):
    """The inner-loop fields every learner's settings carry (read-only: settings are frozen)."""

    @property
    def fast_lr(self) -> float: ...

    @property
    def first_order(self) -> bool: ...

    @property
    def estimator(self) -> str: ...


SettingsT = TypeVar("SettingsT", bound=AdaptSettings)


@dataclass(frozen=True)
class MetaUpdateStats:
    """What one meta-update did (part of one row of ``progress.csv``); build it by keyword."""

    loss_before: float
    """The learner's outer loss before the update."""
    loss_after: float
    """The same loss after the update (on the same episodes)."""
    kl_after: float
    """Mean KL(old || new) of the post-adaptation policies on the post-adaptation episodes."""
    accepted: bool
    """Whether the update was applied (TRPO's line search may reject every step)."""
    step_fraction: float
    """The fraction of the full step taken (1 for optimizer-based learners)."""
    backtracks: int
    """Line-search backtracking steps (0 for optimizer-based learners)."""
    grad_norm: float
    """Norm of the meta-gradient (Reptile: of theta - mean phi)."""
    grad_seconds: float = 0.0
    """Surrogate and meta-gradient (through the inner step)."""
    cg_seconds: float = 0.0
    """Curvature graphs, conjugate gradient and step scaling (TRPO only)."""
    line_search_seconds: float = 0.0
    """Line search (TRPO); the remaining optimizer steps (ProMP, MAML-PPO)."""


class MetaLearner(Generic[SettingsT]):
    """Base class: the sampling-time adaptation (an ``InnerLoop``) and checkpoint state.

    Rollouts stay on the CPU; episodes move to ``device`` for the learner's math.

    Args:
        policy: The policy (on ``device``); its parameters are the meta-parameters.
        settings: The learner's hyperparameters (with ``fast_lr``, ``first_order``, ``estimator``).
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the meta-update runs.
    """

    name: str = "meta-learner"
    keeps_adaptation_graph: ClassVar[bool] = False
    """Keep the sampling-time adaptation's graph for ``step`` (MAML-TRPO reuses it)."""

    def __init__(
        self,
        policy: Policy,
        settings: SettingsT,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        self.policy = policy
        self.settings = settings
        self.device = torch.device(device)
        self.inner = InnerLoop(
            policy=policy,
            fast_lr=settings.fast_lr,
            first_order=settings.first_order,
            estimator=settings.estimator,
            gamma=gamma,
            gae_lambda=gae_lambda,
            normalize_advantages=normalize_advantages,
            device=self.device,
            keep_graph=self.keeps_adaptation_graph,
        )

    def process(self, episodes: Episodes) -> TaskBatch:
        """Move episodes to the learner's device and compute advantages."""
        return self.inner.process(episodes)

    def initial_params(self) -> Params:
        """The current meta-parameters, detached, on the CPU (for the sampler)."""
        return self.inner.initial_params()

    def adapt(self, episodes: Episodes, previous: Adaptation | None = None, keep_graph: bool = True) -> Adaptation:
        """One inner step on ``episodes``, from theta or continuing ``previous`` (``InnerLoop.adapt``).

        Pass ``keep_graph=False`` when no meta-update follows (evaluation).
        """
        return self.inner.adapt(episodes, previous, keep_graph)

    def step(self, adaptation: Adaptation, post_episodes: Episodes) -> MetaUpdateStats:
        """The meta-update from an adaptation and the episodes sampled with its parameters (in place)."""
        raise NotImplementedError

    @staticmethod
    def _check(adaptation: Adaptation) -> None:
        if not isinstance(adaptation, Adaptation) or adaptation.num_steps < 1:
            raise ValueError(
                "step needs the Adaptation that learner.adapt returned (at least one inner step), got "
                f"{type(adaptation).__name__}."
            )

    def state_dict(self) -> dict[str, Any]:
        """The learner's own state for checkpoints (optimizer moments); the policy is saved apart."""
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``.

        Raises:
            ValueError: The state belongs to another learner.
        """
        if state.get("name", self.name) != self.name:
            raise ValueError(
                f"The checkpoint was written by the {state.get('name')!r} learner, this run uses {self.name!r}."
            )
