"""Validate a task family before training on it: ``metarl check-env TARGET``.

``check_family`` runs one check per property a meta-RL learner relies on and returns a
``CheckResult`` per check; no exception of the family escapes (a broken family is reported,
never a traceback). Only a target that cannot be resolved at all raises
``UnknownFamilyError``. The checks, in order:

``construct``          the target resolves and ``gymnasium.make`` builds it
``task-api``           ``sample_tasks`` / ``set_task`` / ``get_task`` are callable
``sample-tasks``       ``sample_tasks(n)`` returns a list of ``n`` tasks
``task-seeding``       the same seed gives the same tasks, different seeds different tasks
``set-get-task``       ``get_task()`` returns the task given to ``set_task``
``observation-space``  ``reset`` / ``step`` observations lie in ``observation_space``
``gymnasium-checker``  Gymnasium's ``check_env`` passes (its warnings become notes)
``task-effect``        two tasks give different rewards or observations for the same actions
``pickle``             the env survives a pickle round trip with its task

A check that cannot run because an earlier one failed is reported as skipped.

Example:
    >>> results = check_family("Navigation2D")
    >>> all(r.ok for r in results)
    True
    >>> print(format_results(results))  # doctest: +ELLIPSIS
    ok   construct
    ...
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from metarl.errors import FamilyConstructionError
from metarl.families import make_env, resolve_family_id
from metarl.policies import space_problem
from metarl.task_api import TASK_API, seed_family

NUM_TASKS = 5
"""Tasks drawn per ``sample_tasks`` call in the checks."""
NUM_STEPS = 20
"""Steps of the observation and task-effect rollouts."""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: Short name of the check (``"task-seeding"``).
        ok: Whether it passed.
        message: For a failure, what is wrong and what to do; for a skip, why.
        skipped: The check could not run because an earlier one failed (``ok`` is False).
        notes: Remarks that are not failures (Gymnasium checker warnings, a missing horizon).
    """

    name: str
    ok: bool
    message: str = ""
    skipped: bool = False
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        """Ran and did not pass."""
        return not self.ok and not self.skipped


class _CheckFailed(Exception):
    """Raised inside a check with the message to report."""


class _Blocking(_CheckFailed):
    """A failure that leaves nothing for the later checks to run on."""


def canonical(value: Any, loose: bool = False) -> Any:
    """A nested form of a task that compares by value: numpy arrays, dicts, dataclasses, floats.

    Two tasks are equal when their canonical forms are equal; ``NaN`` equals ``NaN``.

    Args:
        value: The task (or any nesting of tasks, arrays and numbers).
        loose: Ignore the container type (list, tuple, array) and the float precision
            (numbers compare as float32): ``get_task`` may return ``np.float32`` goals for
            the python floats it was given. Strict (the default), an array equals only an
            array of the same dtype, shape and values.
    """
    if isinstance(value, np.ndarray):
        items = canonical(value.tolist(), loose)
        return (
            ("seq", items[1])
            if loose and value.ndim
            else items
            if loose
            else ("ndarray", value.dtype.str, value.shape, items)
        )
    if isinstance(value, np.generic):
        return canonical(value.item(), loose)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and loose:
        value = float(np.float32(value))
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__qualname__,
            tuple((f.name, canonical(getattr(value, f.name), loose)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, dict):
        return ("dict", sorted(((repr(k), canonical(v, loose)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, (list, tuple)):
        return ("seq" if loose else type(value).__name__, tuple(canonical(v, loose) for v in value))
    if hasattr(value, "tolist") and callable(value.tolist):  # torch tensors and the like
        return canonical(np.asarray(value.tolist()), loose)
    if hasattr(value, "__dict__") and not callable(value):
        return (type(value).__qualname__, canonical(vars(value), loose))
    if callable(value) and hasattr(value, "__code__"):  # a function in a task: two draws hold equal copies
        return ("function", getattr(value, "__module__", None), value.__qualname__)
    return value


def tasks_equal(a: Any, b: Any, loose: bool = False) -> bool:
    """Whether two tasks (or lists of tasks) are equal by value (see ``canonical``)."""
    try:
        return bool(canonical(a, loose) == canonical(b, loose))
    except Exception:  # noqa: BLE001 - an __eq__ that cannot answer (e.g. returns an array)
        return pickle.dumps(a) == pickle.dumps(b)


def _call(
    what: str,
    fn: Callable[..., Any],
    *args: Any,
    fix_: str = "Fix the family so that this call succeeds",
    **kwargs: Any,
) -> Any:
    """Call ``fn``; an exception becomes a check failure that names the call and ends with ``fix_``."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        raise _CheckFailed(f"{what} raised {type(e).__name__}: {_clean(str(e))}. {fix_}") from e


def _clean(text: str) -> str:
    """One line without ANSI colors and without a trailing period (messages add their own)."""
    return " ".join(_ANSI.sub("", text).split()).rstrip(".")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _space_mismatch(obs: Any, space: gym.Space, where: str) -> str:
    """Why ``obs`` is not in ``space``, explicitly (shape, dtype, bounds)."""
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(obs)
        if arr.shape != space.shape:
            return (
                f"{where} returned an observation of shape {arr.shape} but observation_space has shape {space.shape}. "
                f"Return observations of shape {space.shape}, or declare observation_space with shape {arr.shape}"
            )
        if not np.can_cast(arr.dtype, space.dtype):
            return (
                f"{where} returned an observation of dtype {arr.dtype} but observation_space has dtype {space.dtype}. "
                f"Cast observations to {space.dtype} (e.g. np.asarray(obs, dtype=np.{space.dtype})), or declare the "
                f"space with dtype {arr.dtype}"
            )
        if not isinstance(obs, np.ndarray):
            return (
                f"{where} returned a {type(obs).__name__}, not a numpy array, for Box observation_space {space}. "
                f"Return np.asarray(obs, dtype=np.{space.dtype})"
            )
        return (
            f"{where} returned an observation outside observation_space's bounds (min {arr.min()}, max {arr.max()}; "
            f"low {space.low.min()}, high {space.high.max()}). Widen the bounds of observation_space or keep "
            "observations inside them"
        )
    return (
        f"{where} returned {_short(obs)}, which is not in observation_space {space}. "
        "Return observations that lie in observation_space"
    )


def _check_finite(value: Any, what: str) -> None:
    """A NaN or inf observation or reward fails: training would stop on its first batch."""
    array = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        bad = array[~np.isfinite(array)].ravel()[0] if array.ndim else array
        raise _CheckFailed(
            f"{what} is not finite ({bad}). Return finite numbers (metarl refuses a batch with NaN or inf): clip "
            "the value, or end the episode (terminated=True) before it diverges"
        )


class _Checker:
    """Runs the checks in order on one env; ``results`` collects their outcomes."""

    def __init__(self, target: str, env_kwargs: dict[str, Any], seed: int) -> None:
        self.target = target
        self.env_kwargs = env_kwargs
        self.seed = seed
        self.results: list[CheckResult] = []
        self.env: gym.Env | None = None
        self.tasks: list[Any] = []
        self.blocked_by: str | None = None

    @property
    def base(self) -> Any:
        assert self.env is not None
        return self.env.unwrapped

    def run(
        self, name: str, check: Callable[[], tuple[str, ...] | None], blocks: bool = False, needs: str | None = None
    ) -> bool:
        """Run one check and record its result.

        Args:
            name: The check's name.
            check: Raises ``_CheckFailed`` with the message, or returns notes.
            blocks: A failure skips every later check (a ``_Blocking`` failure always does).
            needs: Skip this check if the check of this name did not pass.
        """
        blocker = self.blocked_by or (
            needs if needs and not any(r.ok for r in self.results if r.name == needs) else None
        )
        if blocker is not None:
            self.results.append(CheckResult(name, False, f"needs {blocker} to pass", skipped=True))
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the family's own warnings are not a check's result
                notes = check() or ()
        except _CheckFailed as e:
            message = str(e)
            blocks = blocks or isinstance(e, _Blocking)
        except Exception as e:  # noqa: BLE001 - a failure of the family that no check foresaw
            message = f"unexpected {type(e).__name__}: {_clean(str(e))}. Fix the family so that this check can run"
        else:
            self.results.append(CheckResult(name, True, notes=tuple(notes)))
            return True
        self.results.append(CheckResult(name, False, message))
        if blocks:
            self.blocked_by = name
        return False

    # -- the checks --------------------------------------------------------------------
    def construct(self) -> tuple[str, ...]:
        env_id = resolve_family_id(self.target)  # UnknownFamilyError propagates: the CLI exits 2
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.env_kwargs.items())
        fix = "Fix the constructor, or the arguments given to it (--kwargs here, env_kwargs in a config)"
        what = f"gymnasium.make({env_id!r}{', ' if kwargs else ''}{kwargs})"
        try:
            self.env = make_env(env_id, **self.env_kwargs)
        except FamilyConstructionError as e:
            cause = e.__cause__ if isinstance(e.__cause__, Exception) else e
            raise _CheckFailed(f"{what} raised {type(cause).__name__}: {_clean(str(cause))}. {fix}") from e
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            raise _CheckFailed(f"{what} raised {type(e).__name__}: {_clean(str(e))}. {fix}") from e
        if self.env.spec is None or self.env.spec.max_episode_steps is None:
            note = (
                "no max_episode_steps is registered: set `horizon` in the training config (e.g. --set horizon=100), "
                "or give the class a max_episode_steps class attribute"
            )
            return (note,)
        return ()

    def task_api(self) -> None:
        missing = [m for m in TASK_API if not callable(getattr(self.base, m, None))]
        if missing:
            raise _CheckFailed(
                f"{type(self.base).__name__} has no callable {', '.join(missing)}. "
                "Add sample_tasks(n) -> list, set_task(task) and get_task() methods (see envs/navigation.py)"
            )

    def sample_tasks(self) -> None:
        seed_family(self.env, self.seed)  # type: ignore[arg-type]
        for n in (1, NUM_TASKS):
            tasks = _call(f"sample_tasks({n})", self.base.sample_tasks, n)
            if not isinstance(tasks, list):
                raise _CheckFailed(
                    f"sample_tasks({n}) returned a {type(tasks).__name__}, not a list. Return a list of {n} tasks"
                )
            if len(tasks) != n:
                raise _CheckFailed(f"sample_tasks({n}) returned {len(tasks)} tasks. Return exactly n tasks")
        self.tasks = tasks

    def task_seeding(self) -> None:
        def draw(seed: int) -> list[Any]:
            seed_family(self.env, seed)  # type: ignore[arg-type]
            return _call(f"sample_tasks({NUM_TASKS})", self.base.sample_tasks, NUM_TASKS)

        first, again = draw(self.seed), draw(self.seed)
        if not tasks_equal(first, again):
            raise _CheckFailed(
                f"the same seed gave different tasks ({_short(first[0])} then {_short(again[0])}). "
                "Draw tasks from self.np_random (seed_family seeds it), not the global numpy/random RNG"
            )
        if all(tasks_equal(first, draw(self.seed + k)) for k in (1, 2)):
            raise _CheckFailed(
                f"tasks ignore the seed: seeds {self.seed}, {self.seed + 1} and {self.seed + 2} gave the same tasks. "
                "Draw them from self.np_random, not the global numpy/random RNG"
            )

    def set_get_task(self) -> None:
        task = self.tasks[0]
        try:
            self.base.set_task(task)
        except Exception as e:  # noqa: BLE001 - every later check needs set_task
            raise _Blocking(
                f"set_task({_short(task)}) raised {type(e).__name__}: {_clean(str(e))}. Make set_task accept the tasks "
                "sample_tasks returns"
            ) from e
        got = _call("get_task() after set_task", self.base.get_task)
        if not tasks_equal(got, task, loose=True):
            raise _CheckFailed(
                f"get_task() returned {_short(got)} after set_task({_short(task)}). Make get_task return the task last "
                "given to set_task"
            )

    def observation_space(self) -> None:
        base, env = self.base, self.env  # spaces and steps as training sees them (through the family's wrappers)
        assert env is not None
        problem = space_problem(env.observation_space, env.action_space)
        if problem:
            raise _Blocking(problem.removesuffix("."))
        _call("set_task(task)", base.set_task, self.tasks[0])
        space = env.observation_space
        obs, _ = _call("reset(seed=...)", env.reset, seed=self.seed)
        if not _call("observation_space.contains", space.contains, obs):
            raise _CheckFailed(_space_mismatch(obs, space, "reset()"))
        _check_finite(obs, "the observation of reset()")
        env.action_space.seed(self.seed)
        for t in range(NUM_STEPS):
            obs, reward, terminated, truncated, _ = _call(f"step() at step {t}", env.step, env.action_space.sample())
            if not _call("observation_space.contains", space.contains, obs):
                raise _CheckFailed(_space_mismatch(obs, space, f"step() at step {t}"))
            _check_finite(obs, f"the observation of step() at step {t}")
            _check_finite(reward, f"the reward of step() at step {t}")
            if terminated or truncated:
                break

    def gymnasium_checker(self) -> tuple[str, ...]:
        _call("set_task(task)", self.base.set_task, self.tasks[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                check_env(self.base, skip_render_check=True, skip_close_check=True)
            except Exception as e:  # noqa: BLE001 - the checker's verdict
                raise _CheckFailed(
                    f"gymnasium.utils.env_checker.check_env raised {type(e).__name__}: "
                    f"{_clean(str(e)) or 'assertion failed'}. " + self._determinism_hint()
                ) from e
        return tuple(dict.fromkeys(_clean(str(w.message)).removeprefix("WARN: ") for w in caught))

    def _determinism_hint(self) -> str:
        """What to fix after Gymnasium's checker failed: a reset that leaves state behind, if that is it."""
        default = (
            "Fix the env's Gymnasium API (reset/step signatures, return types, seeding through "
            "super().reset(seed=seed))"
        )
        try:
            self.base.action_space.seed(self.seed)
            actions = [self.base.action_space.sample() for _ in range(NUM_STEPS)]
            first, second = (self._rollout(self.tasks[0], actions) for _ in range(2))
        except Exception:  # noqa: BLE001 - the hint is best effort; the checker's message stands
            return default
        if tasks_equal(first, second):
            return default
        step = next(
            (i for i, (a, b) in enumerate(zip(first, second)) if not tasks_equal(a, b)), min(len(first), len(second))
        )
        where = "the first observation" if step == 0 else f"step {step}"
        return (
            f"Likely cause: state left over from the previous episode. Two episodes from reset(seed={self.seed}) "
            f"with the same task and actions differ at {where}: make reset() set every attribute that step() "
            "changes (positions, velocities, counters) and draw its randomness from self.np_random"
        )

    def task_effect(self) -> None:
        base = self.base
        seed_family(self.env, self.seed)  # type: ignore[arg-type]
        tasks = _call(f"sample_tasks({NUM_TASKS})", base.sample_tasks, NUM_TASKS)
        other = next((t for t in tasks[1:] if not tasks_equal(t, tasks[0])), None)
        if other is None:
            raise _CheckFailed(
                f"sample_tasks({NUM_TASKS}) returned {NUM_TASKS} equal tasks. Sample tasks that differ (a task family "
                "needs more than one task)"
            )
        base.action_space.seed(self.seed)
        actions = [base.action_space.sample() for _ in range(NUM_STEPS)]
        rollouts = [self._rollout(task, actions) for task in (tasks[0], other)]
        if tasks_equal(rollouts[0], rollouts[1]):
            raise _CheckFailed(
                f"set_task changes neither rewards nor observations: tasks {_short(tasks[0], 40)} and "
                f"{_short(other, 40)} gave identical "
                f"rollouts for the same reset seed and {NUM_STEPS} actions. Make rewards or dynamics depend on the "
                "task set by set_task"
            )

    def _rollout(self, task: Any, actions: list[Any]) -> list[Any]:
        base = self.base
        _call("set_task(task)", base.set_task, task)
        obs, _ = _call("reset(seed=...)", base.reset, seed=self.seed)
        trace: list[Any] = [np.array(obs, copy=True)]
        for t, action in enumerate(actions):
            obs, reward, terminated, truncated, _ = _call(f"step() at step {t}", base.step, action)
            trace.append((np.array(obs, copy=True), float(reward), bool(terminated)))
            if terminated or truncated:
                break
        return trace

    def pickling(self) -> None:
        base = self.base
        task = self.tasks[0]
        try:
            pickle.dumps(task)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            raise _CheckFailed(
                f"the task {_short(task)} cannot be pickled ({type(e).__name__}: {_clean(str(e))}). Keep functions, "
                "lambdas and handles out of tasks (store the parameters; compute the function in the env): "
                "samplers that run the family in other processes send tasks there"
            ) from e
        _call("set_task(task)", base.set_task, task)
        try:
            data = pickle.dumps(base)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            raise _CheckFailed(
                f"pickle.dumps(env) raised {type(e).__name__}: {_clean(str(e))}. Keep unpicklable handles (files, "
                "locks, "
                "renderers) out of the env's attributes or define __getstate__/__setstate__; samplers copy envs"
            ) from e
        copy = _call("pickle.loads(pickle.dumps(env))", pickle.loads, data)
        got = _call("get_task() on the unpickled env", copy.get_task)
        if not tasks_equal(got, task, loose=True):
            raise _CheckFailed(
                f"the unpickled env's get_task() returned {_short(got)} instead of {_short(task)}. Keep the task in a "
                "picklable attribute of the env"
            )


def check_family(target: str, env_kwargs: dict[str, Any] | None = None, seed: int = 0) -> list[CheckResult]:
    """Run every task-family check on ``target``.

    Args:
        target: A family id (``"Navigation2D"``), a registered Gymnasium id, or
            ``"package.module:ClassName"``.
        env_kwargs: Keyword arguments for ``gymnasium.make`` (the family's constructor).
        seed: Seed of the task sampling, resets and random actions of the checks.

    Returns:
        One ``CheckResult`` per check, in order (see the module docstring).

    Raises:
        UnknownFamilyError: ``target`` cannot be resolved (unknown id, module not
            importable, no such class, not an env).
    """
    checker = _Checker(target, dict(env_kwargs or {}), seed)
    try:
        resolve_family_id(target)  # fail before any check for a target that does not exist
        checker.run("construct", checker.construct, blocks=True)
        checker.run("task-api", checker.task_api, blocks=True)
        checker.run("sample-tasks", checker.sample_tasks, blocks=True)
        checker.run("task-seeding", checker.task_seeding)
        checker.run("set-get-task", checker.set_get_task)
        checker.run("observation-space", checker.observation_space)
        # Gymnasium's checker also rejects observations outside the space, with a vaguer message.
        checker.run("gymnasium-checker", checker.gymnasium_checker, needs="observation-space")
        checker.run("task-effect", checker.task_effect)
        checker.run("pickle", checker.pickling)
    finally:
        if checker.env is not None:
            try:
                checker.env.close()
            except Exception:  # noqa: BLE001 - closing a broken env must not hide the results
                pass
    return checker.results


def format_results(results: list[CheckResult]) -> str:
    """One line per check (``ok   name`` / ``FAIL name: ...`` / ``skip name: ...``), notes indented, then a summary."""
    lines = []
    for r in results:
        if r.ok:
            lines.append(f"ok   {r.name}")
        else:
            lines.append(f"{'skip' if r.skipped else 'FAIL'} {r.name}: {r.message}.")
        lines.extend(f"     note: {note}" for note in r.notes)
    failed = sum(r.failed for r in results)
    skipped = sum(r.skipped for r in results)
    if failed:
        lines.append(f"{failed} of {len(results)} checks failed" + (f", {skipped} skipped" if skipped else "") + ".")
    else:
        lines.append(f"All {len(results)} checks passed.")
    return "\n".join(lines)
