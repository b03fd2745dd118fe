"""What every meta-learner shares, and the registry that builds one from a config.

A meta-learner turns sampled episodes into adapted parameters (for the sampler) and into a
meta-update of the shared initial parameters. All of them adapt the same way, with the
inner policy-gradient step of ``metarl.maml`` (so evaluation and fine-tuning are identical
across learners); they differ only in the outer step:

========== ============================ ===================================================
name       module                       outer step
========== ============================ ===================================================
maml-trpo  ``metarl.maml``              TRPO on the post-adaptation surrogate (Finn 2017)
promp      ``metarl.promp``             clipped surrogate, Adam, inner KL penalty, LVC
maml-ppo   ``metarl.promp``             clipped surrogate, Adam, plain estimator
reptile    ``metarl.reptile``           move theta toward the adapted parameters (Nichol 2018)
========== ============================ ===================================================

One meta-iteration (what ``metarl.trainer.Trainer`` does)::

    params = learner.initial_params()
    trains = []
    for _ in range(num_steps):
        trains.append(sampler.sample(params, tasks, n))
        params = learner.adapt(params, trains[-1])
    valid = sampler.sample(params, tasks, n)
    stats = learner.step(trains, valid)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from metarl.episodes import Episodes
from metarl.policies import Params, Policy, stack_params

LEARNERS = ("maml-trpo", "promp", "maml-ppo", "reptile")


class AdaptSettings(Protocol):
    """The inner-loop fields every learner's settings carry."""

    fast_lr: float
    first_order: bool
    estimator: str


@dataclass
class MetaUpdateStats:
    """What one meta-update did (one row of ``progress.csv``)."""

    loss_before: float
    """The learner's outer loss before the update."""
    loss_after: float
    """The same loss after the update (on the same episodes)."""
    kl_after: float
    """Mean KL(old || new) of the post-adaptation policies on the post-adaptation episodes."""
    accepted: bool
    step_fraction: float
    backtracks: int
    grad_norm: float
    grad_seconds: float = 0.0
    """Surrogate and meta-gradient (through the inner step)."""
    cg_seconds: float = 0.0
    """Curvature graphs, conjugate gradient and step scaling (TRPO only)."""
    line_search_seconds: float = 0.0
    """Line search (TRPO); the remaining optimizer steps (ProMP, MAML-PPO)."""


class MetaLearner:
    """Base class: advantage processing, sampling-time adaptation, checkpoint state.

    Rollouts stay on the CPU; episodes move to ``device`` for the learner's math.

    Args:
        policy: The policy (on ``device``); its parameters are the meta-parameters.
        settings: The learner's hyperparameters (with ``fast_lr``, ``first_order``, ``estimator``).
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        normalize_advantages: Standardize advantages per task.
        device: Where the meta-update runs.
    """

    name = "meta-learner"
    keeps_adaptation_graph = False
    """Keep the sampling-time adaptation's graph for ``step`` (MAML-TRPO reuses it)."""

    def __init__(self, policy: Policy, settings: Any, gamma: float = 0.99, gae_lambda: float = 1.0, normalize_advantages: bool = True, device: torch.device | str = "cpu") -> None:
        self.policy = policy
        self.settings = settings
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.normalize_advantages = normalize_advantages
        self.device = torch.device(device)
        self._chain: dict | None = None  # the adaptation in progress (see adapt)

    def process(self, episodes: Episodes):  # noqa: ANN201 - TaskBatch (import cycle)
        """Move episodes to the learner's device and compute advantages -> ``TaskBatch``."""
        from metarl.maml import process_episodes

        dtype = next(self.policy.parameters()).dtype
        return process_episodes(episodes.to(self.device, dtype), self.gamma, self.gae_lambda, self.normalize_advantages)

    def initial_params(self) -> Params:
        """The current meta-parameters, detached, on the CPU (for the sampler)."""
        return {n: p.detach().cpu() for n, p in self.policy.get_params().items()}

    def adapt(self, params: Params, episodes: Episodes, keep_graph: bool = True) -> Params:
        """One inner step from ``params`` (shared or stacked) on ``episodes``; stacked CPU result.

        When called as in the module example (starting from ``initial_params()``, then from
        each result), learners that want it keep the processed batches and the adaptation
        graph for ``step``. Pass ``keep_graph=False`` when no meta-update follows (evaluation).
        """
        from metarl.maml import adapt, inner_step

        s = self.settings
        batch = self.process(episodes)
        theta = self.policy.get_params()
        name = next(iter(theta))
        shared_start = params[name].dim() == theta[name].dim()
        start: Params | None = None
        keep_graph = keep_graph and self.keeps_adaptation_graph
        if keep_graph and shared_start:  # a new chain starts at theta
            self._chain = {"episodes": [], "batches": [], "adapted": None, "returned": None}
        elif keep_graph and self._chain is not None and params is self._chain["returned"]:
            start = self._chain["adapted"]
        else:  # adapt whatever was given, keep no graph
            self._chain = None
            leaves = {n: p.to(self.device).detach().requires_grad_(True) for n, p in params.items()}
            if shared_start:
                leaves = {n: p.detach().requires_grad_(True) for n, p in stack_params(leaves, batch.obs.shape[0]).items()}
            with torch.enable_grad():
                adapted = inner_step(self.policy, leaves, batch, s.fast_lr, create_graph=False, estimator=s.estimator)
            return {n: p.detach().cpu() for n, p in adapted.items()}
        adapted = adapt(self.policy, theta, [batch], s.fast_lr, s.first_order, create_graph=True, stacked=start, estimator=s.estimator)
        returned = {n: p.detach().cpu() for n, p in adapted.items()}
        assert self._chain is not None
        self._chain.update(adapted=adapted, returned=returned)
        self._chain["episodes"].append(episodes)
        self._chain["batches"].append(batch)
        return returned

    def take_chain(self, train_episodes: Sequence[Episodes]) -> tuple[list, Params | None]:
        """The processed inner batches (and the adaptation graph, if kept) for ``step``."""
        chain, self._chain = self._chain, None
        if chain is not None and len(chain["episodes"]) == len(train_episodes) and all(a is b for a, b in zip(chain["episodes"], train_episodes)):
            return chain["batches"], chain["adapted"]
        return [self.process(e) for e in train_episodes], None

    def step(self, train_episodes: Sequence[Episodes], valid_episodes: Episodes) -> MetaUpdateStats:
        """The meta-update from the inner and post-adaptation episodes (in place)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The learner's own state for checkpoints (optimizer moments); the policy is saved apart."""
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict``.

        Raises:
            ValueError: The state belongs to another learner.
        """
        if state.get("name", self.name) != self.name:
            raise ValueError(f"The checkpoint was written by the {state.get('name')!r} learner, this run uses {self.name!r}.")


def check_learner(name: str) -> str:
    """``name`` if it is a known learner, else a ValueError with a did-you-mean."""
    if name not in LEARNERS:
        close = difflib.get_close_matches(str(name), LEARNERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown learner {name!r}.{hint} Choose one of {', '.join(LEARNERS)}.")
    return name


def make_learner(config: Any, policy: Policy, device: torch.device | str = "cpu") -> MetaLearner:
    """The learner a ``TrainConfig`` names, with its settings taken from the config.

    Args:
        config: A validated ``metarl.config.TrainConfig``.
        policy: The policy whose parameters are meta-learned (on ``device``).
        device: Where the meta-update runs.
    """
    name = check_learner(config.learner)
    common = (config.gamma, config.gae_lambda, config.normalize_advantages, device)
    estimator = config.resolved_estimator()
    if name == "maml-trpo":
        from metarl.maml import MAMLTRPO, TRPOSettings

        fields = ("fast_lr", "first_order", "max_kl", "cg_iters", "cg_damping", "ls_max_steps", "ls_backtrack_ratio", "curvature_subsample")
        return MAMLTRPO(policy, TRPOSettings(estimator=estimator, **{f: getattr(config, f) for f in fields}), *common)
    if name in ("promp", "maml-ppo"):
        from metarl.promp import PPOSettings, ProMP

        settings = PPOSettings(
            fast_lr=config.fast_lr,
            first_order=config.first_order,
            estimator=estimator,
            outer_lr=config.resolved_outer_lr(),
            clip_eps=config.clip_eps,
            ppo_steps=config.ppo_steps,
            inner_kl_coef=config.resolved_inner_kl_coef(),
        )
        return ProMP(policy, settings, *common, name=name)
    from metarl.reptile import Reptile, ReptileSettings

    return Reptile(policy, ReptileSettings(fast_lr=config.fast_lr, outer_lr=config.resolved_outer_lr()), *common)
