"""One typed configuration per run: loaded from YAML, validated up front, saved with the run.

Defaults equal pytorch-maml-rl's ``configs/maml/2d-navigation.yaml``. Packaged configs live
in ``metarl/configs/`` and are named without their extension (``--config 2d-navigation``).

Example:
    >>> cfg = load_config("2d-navigation", overrides=["num_iterations=10", "seed=3"])
    >>> cfg.num_iterations
    10
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from metarl.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    """Everything that defines a meta-training run."""

    family: str = "Navigation2D"
    """Task family id (short name or Gymnasium id)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gymnasium.make`` of the family."""
    horizon: int | None = None
    """Steps per episode; ``None`` uses the env's registered ``max_episode_steps``."""
    seed: int = 0
    """Seeds tasks, policy initialization and action noise."""
    num_iterations: int = 500
    """Meta-iterations (pytorch-maml-rl's ``num-batches``); with ``init_from``, the total counting the source's."""
    init_from: str | None = None
    """A run directory whose last checkpoint this run continues with its own settings (a warm
    start: another estimator, inner step or budget): the policy, iteration count and RNG
    states are the source's, ``progress.csv`` begins with its rows; the family and the policy
    shape must match. null: start from a fresh policy."""
    meta_batch_size: int = 20
    """Tasks per meta-iteration (K)."""
    episodes_per_task: int = 20
    """Episodes per task and phase (N, pytorch-maml-rl's ``fast-batch-size``)."""
    num_steps: int = 1
    """Inner policy-gradient steps."""
    fast_lr: float = 0.1
    """Inner step size alpha."""
    first_order: bool = False
    """First-order MAML (no gradient through the inner step)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    normalize_advantages: bool = True
    """Standardize advantages per task."""
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the policy MLP ([] for a linear policy, e.g. tabular softmax)."""
    activation: str = "tanh"
    """Hidden activation: tanh or relu."""
    init_std: float = 1.0
    """Initial standard deviation of the Gaussian policy."""
    max_kl: float = 1e-2
    """TRPO trust-region radius."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """Damping added to the KL Hessian."""
    ls_max_steps: int = 15
    """Line-search step sizes to try."""
    ls_backtrack_ratio: float = 0.8
    """Line-search shrink factor."""
    curvature_subsample: int = 10
    """Use every s-th episode for the curvature (Hessian-vector) products; 1 = all (exact, as
    pytorch-maml-rl). 10 is ~4.8x faster per iteration on 2D navigation with no measurable
    effect on learning (benchmarks/results/subsample_learning.json). With fewer episodes
    per task than s, the first episode of each task is used."""
    learner: str = "maml-trpo"
    """Meta-learner: maml-trpo, promp, maml-ppo or reptile (``metarl.learners``, which also checks
    the learner-specific fields below: ``learner_settings``)."""
    estimator: str | None = None
    """Meta-gradient estimator of the inner loss: plain (pytorch-maml-rl), dice (DiCE with the
    loaded-DiCE baseline, unbiased) or lvc (ProMP's low-variance curvature); see
    ``metarl.estimators``. null: the learner's own (lvc for promp, plain otherwise)."""
    outer_lr: float | None = None
    """Outer step size of promp / maml-ppo (Adam, default 1e-3) and reptile (epsilon, default
    1.0); null: the learner's default. MAML-TRPO's step is set by max_kl instead."""
    clip_eps: float = 0.3
    """promp / maml-ppo: clipping range of the likelihood ratio."""
    ppo_steps: int = 5
    """promp / maml-ppo: Adam steps per meta-batch."""
    inner_kl_coef: float | None = None
    """promp: penalty on KL(pre-update old || new) (default 5e-4); maml-ppo: 0 (default)."""
    device: str = "auto"
    """Where the meta-update runs: auto, cpu or cuda (rollouts always run on the CPU)."""
    torch_threads: int = 0
    """Torch intra-op threads; 0 = load-aware: one per idle core, at most 4 (``runtime.LoadAwareThreads``)."""
    sampler: str = "local"
    """Where episodes are sampled: local (this process) or ray (``num_workers`` Ray actors, the
    ``ray`` extra; the same episodes as local, see ``metarl.ray_sampler``)."""
    num_workers: int = 2
    """sampler: ray: actors, one CPU each; a meta-batch is split by tasks across them."""
    ray_address: str | None = None
    """sampler: ray: an existing cluster's address (``ray start --head`` prints it, or auto);
    null starts a local Ray for this run."""
    sampler_timeout_s: float = 600.0
    """sampler: ray: the longest wait for one phase's episodes before the run stops with an error."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many iterations (and at the end)."""
    tensorboard: bool = True
    """Write TensorBoard events (needs the ``tensorboard`` extra)."""

    def validate(self) -> TrainConfig:
        """Check every value; raise ``ConfigError`` naming the key and what to do.

        Types first (a config built in Python, or mutated after loading, is checked like
        a YAML one: ``gamma=True`` or ``fast_lr="abc"`` is an error, not a crash later),
        then each field's range, and every float must be finite.
        """
        _check_types(self)
        if self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}.")
        if not self.family.strip():
            raise ConfigError("family must name a task family (Navigation2D, or package.module:ClassName), got ''.")
        positive_ints = (
            "num_iterations",
            "meta_batch_size",
            "episodes_per_task",
            "num_steps",
            "cg_iters",
            "ls_max_steps",
            "curvature_subsample",
            "checkpoint_every",
            "ppo_steps",
        )
        for key in positive_ints:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}.")
        for key in ("fast_lr", "max_kl", "init_std"):
            value = getattr(self, key)
            if not value > 0:
                raise ConfigError(f"{key} must be > 0, got {value!r}.")
        if not self.cg_damping >= 0:  # also rejects NaN
            raise ConfigError(f"cg_damping must be >= 0, got {self.cg_damping!r}.")
        for key in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)!r}.")
        if not 0.0 < self.ls_backtrack_ratio < 1.0:
            raise ConfigError(f"ls_backtrack_ratio must be in (0, 1), got {self.ls_backtrack_ratio!r}.")
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"horizon must be a positive integer or null, got {self.horizon!r}.")
        if any(not isinstance(h, int) or isinstance(h, bool) or h < 1 for h in self.hidden_sizes):
            raise ConfigError(
                f"hidden_sizes must be a list of positive integers ([] for a linear policy), got {self.hidden_sizes!r}."
            )
        if self.activation not in ("tanh", "relu"):
            raise ConfigError(f"activation must be 'tanh' or 'relu', got {self.activation!r}.")
        if self.outer_lr is not None and not self.outer_lr > 0:
            raise ConfigError(f"outer_lr must be > 0 (or null for the learner's default), got {self.outer_lr!r}.")
        if not self.clip_eps > 0:
            raise ConfigError(f"clip_eps must be > 0, got {self.clip_eps!r}.")
        if self.inner_kl_coef is not None and not self.inner_kl_coef >= 0:
            raise ConfigError(
                f"inner_kl_coef must be >= 0 (or null for the learner's default), got {self.inner_kl_coef!r}."
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}.")
        if self.sampler not in ("local", "ray"):
            raise ConfigError(f"sampler must be local or ray, got {self.sampler!r}.")
        if not 1 <= self.num_workers <= MAX_WORKERS:
            raise ConfigError(f"num_workers must be an integer in [1, {MAX_WORKERS}], got {self.num_workers!r}.")
        if not self.sampler_timeout_s > 0:
            raise ConfigError(f"sampler_timeout_s must be > 0 seconds, got {self.sampler_timeout_s!r}.")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("ray_address must be a cluster address (host:port or auto), or null for a local Ray.")
        if self.init_from is not None and not self.init_from.strip():
            raise ConfigError("init_from must be a run directory to continue from, or null for a fresh policy.")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads must be >= 0 (0 = automatic), got {self.torch_threads!r}.")
        for f in dataclasses.fields(self):  # after the ranges, whose messages say more (NaN fails them)
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}.")
        if self.torch_threads > MAX_TORCH_THREADS:
            raise ConfigError(
                f"torch_threads must be at most {MAX_TORCH_THREADS} (0 = automatic: one per core, at most 4), "
                f"got {self.torch_threads}."
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-safe)."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the config as YAML."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


MAX_TORCH_THREADS = 1024
"""Above this ``torch_threads`` is refused: torch aborts far above it (the machine a run is
resumed or evaluated on may have other cores, so the bound is not this machine's count)."""

MAX_WORKERS = 100_000
"""Above this ``num_workers`` is refused (a typo, not a cluster)."""


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the field type ``hint`` (ints count as floats; floats must be finite)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return True


def _check_types(config: TrainConfig) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"{f.name} must be of type {f.type}, got {value!r}.")


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Convert a YAML / command-line value to the field's type, or raise ConfigError."""
    hint = typing.get_type_hints(TrainConfig)[key]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)  # family=123 is a typo, not the family "123"
            return value
        if origin is list:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            items = list(value)
            if any(isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) for v in items):
                raise ValueError(value)  # int() would silently turn 8.7 into 8 and true into 1
            return [int(v) for v in items]
        if origin is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key} must be of type {annotation}, got {value!r}.") from e
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a config; unknown keys raise with a did-you-mean."""
    if not isinstance(data, dict):
        raise ConfigError(f"A config must be a mapping of keys to values, got {type(data).__name__}.")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown config key {key!r}.{hint} Valid keys: {', '.join(fields)}.")
        values[key] = _coerce(key, value, str(fields[key].type))
    return TrainConfig(**values).validate()


def packaged_configs() -> list[str]:
    """Names of the configs shipped with metarl."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_text(name: str) -> str:
    """The YAML text of a packaged config (comments included).

    Raises:
        ConfigError: No packaged config of that name, with a did-you-mean.
    """
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, packaged_configs(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"No packaged config {name!r}.{hint} Packaged configs: {', '.join(packaged_configs())}.")
    return path.read_text()


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a packaged config by name or a YAML file by path, apply ``key=value`` overrides, validate.

    Raises:
        ConfigError: Missing file, malformed YAML, unknown key or invalid value.
    """
    data: dict[str, Any] = {}
    if name_or_path is not None:
        path = Path(name_or_path)
        if not path.exists():
            packaged = CONFIG_DIR / f"{name_or_path}.yaml"
            if not packaged.exists():
                raise ConfigError(
                    f"No config file {str(name_or_path)!r}; packaged configs: {', '.join(packaged_configs())}."
                )
            path = packaged
        if not path.is_file():
            raise ConfigError(f"--config {path} is a directory, not a YAML file; name a .yaml file or packaged config.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path} is not a text file ({e.reason}); a config is YAML, key: value lines.") from e
        except OSError as e:
            raise ConfigError(f"Cannot read the config {path}: {e.strerror or e}.") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}.")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"Overrides take the form key=value, got {item!r}.")
        key, value = item.split("=", 1)
        try:
            data[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = str(e).splitlines()[0]
            raise ConfigError(f"The override {item!r} is not valid YAML ({problem}); quote it in the shell.") from e
    return config_from_dict(data)
