"""Meta-World ML1 / ML10 / ML45 as task families, built on the ``metaworld`` package.

Meta-World (Yu et al. 2019; ``metaworld`` 3.1.1, its v3 environments) is 50 Sawyer-arm
manipulation classes, each with 50 parametric goals (object and target positions) per split.
Its meta-learning benchmarks:

==========================  ================================  ==============================
family                      meta-training tasks               meta-test tasks
==========================  ================================  ==============================
``MetaWorld-ML1``           one class (``env_name``), its     the same class, 50 other goals
                            50 train goals
``MetaWorld-ML10``          10 classes x 50 goals             5 other classes x 50 goals
``MetaWorld-ML45``          45 classes x 50 goals             5 other classes x 50 goals
==========================  ================================  ==============================

A task is ``MetaWorldTask(env_name, goal, split)``: goal ``goal`` (0..49) of class
``env_name`` in ``split``, the goals of ``metaworld.ML1(env_name, seed=benchmark_seed)``
(or ``ML10`` / ``ML45``), so that every process that builds the family with the same
``benchmark_seed`` (a Ray worker, a resumed run) has the same goals. ``sample_tasks(n)``
draws from the meta-training split, ``sample_test_tasks(n)`` from the meta-test split (what
``metarl evaluate`` and ``metarl benchmark`` adapt on): ``n`` distinct (class, goal) pairs
drawn uniformly with ``self.np_random`` while ``n`` does not exceed the split's size, with
replacement beyond it.

What the env is: Meta-World's own env of the task's class (one per class, built on first
use) with the goal hidden from the observation (Meta-World's ML setting): observations are
39 floats (hand, gripper, objects, the previous frame's, and three zeros where MT benchmarks
show the goal), actions 4 floats in ``[-1, 1]`` (hand displacement, gripper; metarl clips a
policy's unbounded Gaussian sample to the box, as the Meta-World wrappers of garage do; with
``action_scale = S`` the policy's box is ``[-S, S]`` and the clipped action is divided by
``S``, garage's ``normalize(env, expected_action_scale=10.)``),
rewards Meta-World's v2 shaped rewards (0 to 10 per step), episodes 500 steps (Meta-World's
``max_path_length``; never terminated early) and ``info["success"]`` 1.0 at the steps
where the task counts as solved: the sampler records it, and the success rate of an
episode is whether it succeeded at any step (Meta-World's evaluation). ``reset`` starts the
task's fixed initial state (Meta-World's goals fix the object and target positions;
``seed`` only seeds ``np_random``).

Installation: ``metaworld`` 3.1.1 pins ``mujoco==3.3.0``; metarl installs it without its
pins next to the ``metaworld`` extra (``pip install 'metarl[metaworld]'`` then ``pip
install --no-deps metaworld==3.1.1``; ``make venv`` does both) and applies the small fix it
needs on today's MuJoCo (``metarl.envs.metaworld_compat``).

Example:
    >>> import gymnasium as gym, metarl
    >>> env = gym.make("metarl/MetaWorld-ML1-v0", env_name="reach-v3")
    >>> metarl.task_api.seed_family(env, 0)
    >>> env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
    >>> obs, info = env.reset()
    >>> obs.shape
    (39,)
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.errors import TaskNotSetError

try:
    import metaworld
except ImportError as e:  # pragma: no cover - without the extra
    raise ImportError(
        "The Meta-World families need the metaworld package: pip install 'metarl[metaworld]' && pip install "
        "--no-deps metaworld==3.1.1 (its mujoco==3.3.0 pin conflicts with metarl's mujoco; see the README)."
    ) from e

from metarl.envs import metaworld_compat  # noqa: E402
from metarl.envs.action_scale import check_action_scale, scaled_box, to_control  # noqa: E402

metaworld_compat.apply()

MAX_PATH_LENGTH = 500  # Meta-World's horizon; its envs raise when stepped past it
OBS_DIM, ACT_DIM = 39, 4
SPLITS = ("train", "test")
GOALS_PER_CLASS = 50


POSITIONS = 6  # object and target positions of a goal (Meta-World's rand_vec; 3 or 6 floats), padded


@dataclass(frozen=True)
class MetaWorldTask:
    """Goal ``goal`` (0..49) of Meta-World class ``env_name`` in ``split`` ("train" or "test").

    ``positions`` is what the goal fixes (Meta-World's ``rand_vec``: the object's initial and
    the target position, 3 or 6 floats), filled in by the family; it is not part of the
    task's identity (two tasks with the same class, goal and split are equal).
    """

    env_name: str
    goal: int
    split: str = "train"
    positions: tuple[float, ...] = field(default=(), compare=False)

    def to_array(self) -> np.ndarray:
        """The positions, zero-padded to 6 floats: what the PPO oracle of ``metarl benchmark`` observes."""
        out = np.zeros(POSITIONS)
        out[: len(self.positions)] = self.positions
        return out


@functools.lru_cache(maxsize=4)
def load_benchmark(kind: str, env_name: str | None, seed: int) -> Any:
    """``metaworld.ML1(env_name, seed)``, ``ML10(seed)`` or ``ML45(seed)``, built once per process.

    Building one constructs each class and resets it 50 times per split (ML1 ~1 s, ML10 ~6 s,
    ML45 ~30 s here), so families of the same benchmark share it.
    """
    if kind == "ML1":
        return metaworld.ML1(env_name, seed=seed)
    return {"ML10": metaworld.ML10, "ML45": metaworld.ML45}[kind](seed=seed)


class MetaWorldFamily(gym.Env):
    """A Meta-World meta-learning benchmark as one task family (see the module docstring).

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: ML1's class (any of the 50, e.g. ``"reach-v3"``); ``None`` for ML10 / ML45.
        benchmark_seed: The seed of Meta-World's goal generation (the same in every process).
        action_scale: ``S``: the policy acts in ``[-S, S]^4`` and Meta-World gets
            ``clip(action, -S, S) / S`` (``metarl.envs.action_scale``; garage's MAML examples on
            Meta-World use 10, 1 is Meta-World's own box).

    Raises:
        ValueError: An unknown benchmark or class, an ``env_name`` given to ML10 / ML45, or an
            ``action_scale`` that is not a finite number > 0.
    """

    metadata = {"render_modes": []}
    reports_success = True  # info["success"] at every step: logs get success-rate columns

    def __init__(
        self, benchmark: str = "ML1", env_name: str | None = None, benchmark_seed: int = 0, action_scale: float = 1.0
    ) -> None:
        if benchmark not in ("ML1", "ML10", "ML45"):
            raise ValueError(f"benchmark must be 'ML1', 'ML10' or 'ML45', got {benchmark!r}.")
        if benchmark == "ML1":
            names = list(metaworld.ML1.ENV_NAMES)
            if env_name not in names:
                raise ValueError(
                    f"MetaWorld-ML1 needs env_name, one of Meta-World's {len(names)} classes (e.g. 'reach-v3', "
                    f"'push-v3', 'pick-place-v3'), got {env_name!r}."
                )
        elif env_name is not None:
            raise ValueError(f"MetaWorld-{benchmark} has fixed classes; leave env_name unset (got {env_name!r}).")
        if isinstance(benchmark_seed, bool) or not isinstance(benchmark_seed, int) or benchmark_seed < 0:
            raise ValueError(f"benchmark_seed must be an integer >= 0, got {benchmark_seed!r}.")
        self.benchmark, self.env_name, self.benchmark_seed = benchmark, env_name, benchmark_seed
        self.action_scale = check_action_scale(action_scale)
        bench = load_benchmark(benchmark, env_name, benchmark_seed)
        self._classes = {"train": dict(bench.train_classes), "test": dict(bench.test_classes)}
        self._goals: dict[tuple[str, str], list[Any]] = {}  # (split, class) -> Meta-World's tasks
        for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
            for task in tasks:
                self._goals.setdefault((split, task.env_name), []).append(task)
        self._population = {
            split: [(name, g) for name in self._classes[split] for g in range(len(self._goals[(split, name)]))]
            for split in SPLITS
        }
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.action_space = scaled_box(gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32), self.action_scale)
        self._envs: dict[str, Any] = {}  # class -> its Meta-World env, built on first use
        self._task: MetaWorldTask | None = None
        self._env: Any = None

    # ------------------------------------------------------------------ task API

    def class_names(self, split: str = "train") -> list[str]:
        """The classes of ``split``."""
        return list(self._classes[self._check_split(split)])

    def sample_tasks(self, n: int) -> list[MetaWorldTask]:
        """``n`` meta-training tasks (distinct while ``n`` fits the split), drawn with ``self.np_random``."""
        return self._sample("train", n)

    def sample_test_tasks(self, n: int) -> list[MetaWorldTask]:
        """``n`` meta-test tasks: ML1's test goals, ML10's / ML45's test classes.

        When ``n`` is a multiple of the test classes (and at most 50 per class), every class gets
        ``n / classes`` distinct goals (Meta-World's evaluation: 40 goals per test class is
        ``n = 200`` for ML10 and ML45); otherwise as ``sample_tasks``.
        """
        classes = self.class_names("test")
        per_class, rest = divmod(n, len(classes)) if n >= 1 else (0, 1)
        if rest or not 1 <= per_class <= GOALS_PER_CLASS or len(classes) == 1:
            return self._sample("test", n)
        return [
            self.validate_task(MetaWorldTask(name, int(goal), "test"))
            for name in classes
            for goal in self.np_random.choice(len(self._goals[("test", name)]), size=per_class, replace=False)
        ]

    def set_task(self, task: MetaWorldTask) -> None:
        """Make the env task ``task``'s class with its goal (call ``reset`` next)."""
        task = self.validate_task(task)
        env = self._envs.get(task.env_name)
        if env is None:
            env = self._envs[task.env_name] = self._classes[task.split][task.env_name]()
        env.set_task(self._goals[(task.split, task.env_name)][task.goal])
        self._task, self._env = task, env

    def get_task(self) -> MetaWorldTask:
        """The current task."""
        self._require_task()
        assert self._task is not None
        return self._task

    def validate_task(self, task: Any) -> MetaWorldTask:
        """``task`` as a ``MetaWorldTask`` of this benchmark (a mapping with its fields also works).

        Raises:
            TypeError, ValueError: Not a task of this benchmark, with what it holds instead.
        """
        if isinstance(task, dict):
            task = MetaWorldTask(**task)
        if not isinstance(task, MetaWorldTask):
            raise TypeError(f"{self._label()}.set_task expects a MetaWorldTask, got {task!r}.")
        split = self._check_split(task.split)
        if task.env_name not in self._classes[split]:
            raise ValueError(
                f"{self._label()} has no class {task.env_name!r} in its {split} split; its classes there: "
                f"{', '.join(self._classes[split])}."
            )
        goals = self._goals[(split, task.env_name)]
        if (
            isinstance(task.goal, bool)
            or not isinstance(task.goal, (int, np.integer))
            or not 0 <= task.goal < len(goals)
        ):
            raise ValueError(f"{self._label()}: goal must be an integer in [0, {len(goals)}), got {task.goal!r}.")
        positions = tuple(float(x) for x in pickle.loads(goals[task.goal].data)["rand_vec"])
        return MetaWorldTask(task.env_name, int(task.goal), split, positions)

    # ------------------------------------------------------------------ gymnasium.Env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._require_task()
        obs, info = self._env.reset()
        return np.asarray(obs, dtype=np.float64), {**info, "task": self._task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._require_task()
        space: Any = self.action_space  # a Box (scaled_box)
        action = to_control(np.asarray(action, dtype=np.float32), space.low, space.high, self.action_scale)
        obs, reward, terminated, truncated, info = self._env.step(action)
        info = {**info, "success": float(info.get("success", 0.0)), "task": self._task}
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated), bool(truncated), info

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._env = None

    # ------------------------------------------------------------------ internals

    def _sample(self, split: str, n: int) -> list[MetaWorldTask]:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sample_tasks needs n >= 1, got {n!r}.")
        population = self._population[split]
        picks = self.np_random.choice(len(population), size=n, replace=n > len(population))
        return [self.validate_task(MetaWorldTask(population[i][0], population[i][1], split)) for i in picks]

    def _check_split(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"A Meta-World task's split is 'train' or 'test', got {split!r}.")
        return split

    def _require_task(self) -> None:
        if self._task is None:
            raise TaskNotSetError(
                f"{self._label()} has no task: call env.set_task(task) (tasks come from env.sample_tasks(n)) before "
                "reset/step."
            )

    def _label(self) -> str:
        return f"MetaWorld-{self.benchmark}" + (f"({self.env_name})" if self.env_name else "")


class MetaWorldML1Env(MetaWorldFamily):
    """ML1: one Meta-World class, 50 meta-training and 50 meta-test goals (``env_name``, e.g. ``"reach-v3"``)."""

    def __init__(self, env_name: str = "reach-v3", benchmark_seed: int = 0, action_scale: float = 1.0) -> None:
        super().__init__("ML1", env_name, benchmark_seed, action_scale)


class MetaWorldML10Env(MetaWorldFamily):
    """ML10: 10 meta-training classes, 5 meta-test classes, 50 goals each."""

    def __init__(self, benchmark_seed: int = 0, action_scale: float = 1.0) -> None:
        super().__init__("ML10", None, benchmark_seed, action_scale)


class MetaWorldML45Env(MetaWorldFamily):
    """ML45: 45 meta-training classes, 5 meta-test classes, 50 goals each."""

    def __init__(self, benchmark_seed: int = 0, action_scale: float = 1.0) -> None:
        super().__init__("ML45", None, benchmark_seed, action_scale)


__all__ = [
    "MAX_PATH_LENGTH",
    "MetaWorldFamily",
    "MetaWorldML10Env",
    "MetaWorldML1Env",
    "MetaWorldML45Env",
    "MetaWorldTask",
    "load_benchmark",
]
