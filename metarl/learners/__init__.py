"""The meta-learners, and the registry that builds one from a config (the only module naming every learner).

========== ======================================= ===================================================
name       module                                  outer step
========== ======================================= ===================================================
maml-trpo  ``metarl.learners.maml_trpo``           TRPO on the post-adaptation surrogate (Finn 2017)
promp      ``metarl.learners.promp``               clipped surrogate, Adam, inner KL penalty, LVC
maml-ppo   ``metarl.learners.promp``               clipped surrogate, Adam, plain estimator
reptile    ``metarl.learners.reptile``             move theta toward the adapted parameters (Nichol 2018)
========== ======================================= ===================================================

Every learner adapts with ``metarl.adaptation``; ``metarl.learners.base`` shows one
meta-iteration. Each learner's settings own its defaults (``Settings.from_config``): a
config field left ``null`` (``estimator``, ``outer_lr``, ``inner_kl_coef``) means the
learner's own value.

Example:
    >>> from metarl.config import TrainConfig
    >>> learner_settings(TrainConfig(learner="promp")).estimator
    'lvc'
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable

import torch

from metarl.config import TrainConfig
from metarl.errors import ConfigError
from metarl.learners.base import MetaLearner, MetaUpdateStats
from metarl.learners.maml_trpo import MAMLTRPO, TRPOSettings
from metarl.learners.promp import PPOSettings, ProMP
from metarl.learners.reptile import Reptile, ReptileSettings
from metarl.policies import Policy

_REGISTRY: dict[str, tuple[Callable[[TrainConfig], Any], Callable[..., MetaLearner[Any]]]] = {
    "maml-trpo": (TRPOSettings.from_config, MAMLTRPO),
    "promp": (PPOSettings.from_config, functools.partial(ProMP, name="promp")),
    "maml-ppo": (PPOSettings.from_config, functools.partial(ProMP, name="maml-ppo")),
    "reptile": (ReptileSettings.from_config, Reptile),
}
LEARNERS = tuple(_REGISTRY)
"""The learner names a config's ``learner`` accepts."""
LEARNER_LABELS = {"maml-trpo": "MAML", "promp": "ProMP", "maml-ppo": "MAML-PPO", "reptile": "Reptile"}
"""How reports name each learner (a MAML-TRPO run is "MAML", as in the paper)."""


def check_learner(name: str) -> str:
    """``name`` if it is a known learner.

    Raises:
        ConfigError: Unknown name, with a did-you-mean.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), LEARNERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"learner must be one of {', '.join(LEARNERS)}, got {name!r}.{hint}")
    return name


def learner_settings(config: TrainConfig) -> Any:
    """The settings of the learner the config names, its ``null`` fields filled with the learner's own defaults.

    Also the check of a config's learner-specific fields: call it before a run starts.

    Raises:
        ConfigError: Unknown learner, or a value the learner rejects or does not use.
    """
    return _REGISTRY[check_learner(config.learner)][0](config)


def make_learner(config: TrainConfig, policy: Policy, device: torch.device | str = "cpu") -> MetaLearner[Any]:
    """The learner a ``TrainConfig`` names, with its settings taken from the config.

    Args:
        config: A validated config.
        policy: The policy whose parameters are meta-learned (on ``device``).
        device: Where the meta-update runs.

    Raises:
        ConfigError: See ``learner_settings``.
    """
    settings = learner_settings(config)
    build = _REGISTRY[config.learner][1]
    return build(
        policy,
        settings,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        normalize_advantages=config.normalize_advantages,
        device=device,
    )


__all__ = [
    "LEARNERS",
    "LEARNER_LABELS",
    "MAMLTRPO",
    "MetaLearner",
    "MetaUpdateStats",
    "PPOSettings",
    "ProMP",
    "Reptile",
    "ReptileSettings",
    "TRPOSettings",
    "check_learner",
    "learner_settings",
    "make_learner",
]
