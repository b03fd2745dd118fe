"""Task families by name: metarl's ids, any Gymnasium id, or your own ``module:Class``.

``make_family(family, **kwargs)`` is the one way the library gets a family: it resolves
the name (``resolve_family_id``: short names such as ``Navigation2D``, Gymnasium ids,
``package.module:ClassName`` specs that it imports and registers on first use), makes the
env without Gymnasium's passive checker, and checks the task API (``metarl.task_api``).
Importing this module registers metarl's own families (``metarl.envs``).

Example:
    >>> env = make_family("Navigation2D")
    >>> env.spec.id
    'metarl/Navigation2D-v0'
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
from types import ModuleType
from typing import Any, Callable

import gymnasium as gym

import metarl.envs  # noqa: F401  (registers metarl's families with Gymnasium)
from metarl.errors import FamilyConstructionError, MetarlError, TaskAPIError, UnknownFamilyError
from metarl.task_api import check_task_family


def known_family_ids() -> list[str]:
    """All registered Gymnasium ids under the ``metarl/`` namespace."""
    return sorted(k for k in gym.registry if k.startswith("metarl/"))


def resolve_family_id(family: str) -> str:
    """Turn a family name, a Gymnasium id or a ``module:ClassName`` spec into a registered id.

    Accepted forms:

    * a metarl short name or id: ``"Navigation2D"``, ``"metarl/HalfCheetahVel-v0"``;
    * any registered Gymnasium id (with the task API), e.g. one your package registers;
    * ``"package.module:ClassName"``: a ``gymnasium.Env`` subclass (or a function returning
      one) in an importable module. It is registered with Gymnasium on first use under
      the id ``"package.module.ClassName"`` (the ``:`` replaced by ``.``) with
      ``entry_point="package.module:ClassName"``. The module is imported from
      ``sys.path``, then from the current directory (as ``python -m`` would). If the class
      has a positive integer class attribute ``max_episode_steps`` (or else ``horizon``),
      it is registered with that ``max_episode_steps``; otherwise with none, and training
      needs ``horizon`` in the config. Gymnasium's own ``"module:EnvId"`` form (a module
      that registers ``EnvId`` when imported) works too.

    Raises:
        UnknownFamilyError: With close matches ("did you mean ..."); for a ``module:Class``
            spec, when the module cannot be imported, has no such attribute, or the
            attribute is not a ``gymnasium.Env``.
    """
    ids = known_family_ids()
    if family in gym.registry:
        return family
    if ":" in family:
        return _register_spec(family)
    for candidate in (f"{family}-v0", f"metarl/{family}", f"metarl/{family}-v0"):
        if candidate in gym.registry:
            return candidate
    short = {i.removeprefix("metarl/").rsplit("-v", 1)[0]: i for i in ids}
    choices = list(dict.fromkeys([*short, *ids, *gym.registry]))  # ids are also in the registry: no repeats
    close = difflib.get_close_matches(family, choices, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownFamilyError(
        f"Unknown task family {family!r}.{hint} metarl families: {', '.join(short) or 'none'}; "
        "a registered Gymnasium id with the task API, or your own class as 'package.module:ClassName', also works."
    )


def spec_family_id(spec: str) -> str:
    """The Gymnasium id a ``"package.module:ClassName"`` spec is registered under (``"package.module.ClassName"``).

    Gymnasium reads a ``:`` in an id as ``module:EnvId``, so the spec itself cannot serve as the id.
    """
    return spec.replace(":", ".")


def _register_spec(spec: str) -> str:
    """Import the module of ``"package.module:Name"`` and register ``Name`` with Gymnasium; return its id."""
    module_name, _, attr = spec.partition(":")
    form = "A family spec takes the form 'package.module:ClassName' (e.g. 'mymodule:MyFamily')"
    if not module_name or not attr or ":" in attr or not all(part.isidentifier() for part in module_name.split(".")):
        raise UnknownFamilyError(f"Malformed task family spec {spec!r}. {form}.")
    env_id = spec_family_id(spec)
    existing = gym.registry.get(env_id)
    if existing is not None and _entry_point_spec(existing.entry_point) == spec:
        return env_id
    module = _import_family_module(module_name, spec)
    if attr in gym.registry:  # Gymnasium's "module:EnvId": the module registered EnvId on import
        return attr
    obj = getattr(module, attr, None)
    if obj is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        envs = [n for n in public if isinstance(getattr(module, n), type) and issubclass(getattr(module, n), gym.Env)]
        close = difflib.get_close_matches(attr, public, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(f'{module_name}:{c}') for c in close)}?" if close else ""
        listed = (
            f" gymnasium.Env classes in {module_name}: {', '.join(envs)}."
            if envs
            else f" {module_name} defines no gymnasium.Env class."
        )
        raise UnknownFamilyError(
            f"Module {module_name!r} has no attribute {attr!r} (from family spec {spec!r}).{hint}{listed}"
        )
    if isinstance(obj, type):
        if not issubclass(obj, gym.Env):
            raise UnknownFamilyError(
                f"{spec} is a class but not a gymnasium.Env subclass (its bases: "
                f"{', '.join(b.__name__ for b in obj.__mro__[1:])}); "
                "a task family must subclass gymnasium.Env and add sample_tasks(n), set_task(task) and get_task()."
            )
        entry_point: str | Callable[..., gym.Env] = spec
    elif callable(obj):
        entry_point = functools.partial(_make_from_factory, spec)
    else:
        raise UnknownFamilyError(
            f"{spec} is an object of type {type(obj).__name__}, not a gymnasium.Env subclass or a function returning "
            "one; "
            "point the spec at your task-family class."
        )
    if existing is not None:
        raise UnknownFamilyError(
            f"The id {env_id!r} of family spec {spec!r} is already registered with Gymnasium for "
            f"{existing.entry_point!r}; use that id as the family, or rename the class."
        )
    gym.register(id=env_id, entry_point=entry_point, max_episode_steps=_class_horizon(obj))
    return env_id


def _entry_point_spec(entry_point: Any) -> str | None:
    """The ``module:Name`` spec behind a registered entry point made by ``_register_spec``."""
    if isinstance(entry_point, str):
        return entry_point
    if isinstance(entry_point, functools.partial) and entry_point.func is _make_from_factory:
        return str(entry_point.args[0])
    return None


def _class_horizon(obj: Any) -> int | None:
    """A positive integer class attribute ``max_episode_steps`` (or else ``horizon``), or ``None``."""
    for name in ("max_episode_steps", "horizon"):
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _import_family_module(module_name: str, spec: str) -> ModuleType:
    """Import ``module_name``, from ``sys.path`` and then from the current directory.

    Raises:
        UnknownFamilyError: The module (or something it imports) is missing, or importing it raised.
    """
    cwd = os.getcwd()
    for attempt in range(2):
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            missing = e.name or ""
            ours = missing == module_name or module_name.startswith(missing + ".")
            if not ours:
                raise UnknownFamilyError(
                    f"Importing module {module_name!r} (family spec {spec!r}) failed: a module it imports is missing "
                    f"({e}). "
                    f"Install {missing.split('.')[0]!r} or fix the import in {module_name}."
                ) from e
            on_path = any(os.path.abspath(p or ".") == cwd for p in sys.path)
            if attempt == 0 and not on_path:
                sys.path.append(cwd)  # as `python -m` does; appended so that it shadows no installed package
                importlib.invalidate_caches()
                continue
            raise UnknownFamilyError(
                f"Cannot import module {module_name!r} of family spec {spec!r}: {e}. The module must be importable "
                f"from the current directory ({cwd}) or from PYTHONPATH: run from the folder that holds "
                f"{module_name.split('.')[0]}.py (or its package), or add that folder to PYTHONPATH."
            ) from e
        except Exception as e:  # noqa: BLE001 - the user's module raised while importing
            raise UnknownFamilyError(
                f"Importing module {module_name!r} (family spec {spec!r}) raised {type(e).__name__}: {e}. "
                f"Fix the module; `python -c 'import {module_name}'` shows the traceback."
            ) from e
    raise AssertionError("unreachable")


def _make_from_factory(spec: str, **kwargs: Any) -> gym.Env:
    """Entry point of a ``module:function`` spec: call the function and check that it returned an env.

    Raises:
        TaskAPIError: The function returned something other than a ``gymnasium.Env``.
    """
    module_name, _, attr = spec.partition(":")
    env = getattr(importlib.import_module(module_name), attr)(**kwargs)
    if not isinstance(env, gym.Env):
        raise TaskAPIError(
            f"{spec}(...) returned an object of type {type(env).__name__}, not a gymnasium.Env; make the function "
            "return your task-family env."
        )
    return env


def make_family(family: str, **kwargs: Any) -> gym.Env:
    """Create a task family by id or ``module:ClassName`` spec and check that it implements the task API.

    Args:
        family: ``"Navigation2D"``, ``"metarl/Navigation2D-v0"``, any registered Gymnasium id,
            or ``"package.module:ClassName"`` (see ``resolve_family_id``).
        **kwargs: Passed to ``gymnasium.make``, hence to the family's constructor.

    Raises:
        UnknownFamilyError: The id is not registered, or the spec's module or class is missing.
        TaskAPIError: The env lacks ``sample_tasks`` / ``set_task`` / ``get_task``.
    """
    env_id = resolve_family_id(family)
    env = make_env(env_id, **kwargs)
    check_task_family(env, name=env_id)
    return env


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of a registered id, without Gymnasium's passive env checker or the task-API check.

    Raises:
        TaskAPIError: A ``module:function`` family returned something other than an env.
        FamilyConstructionError: The constructor rejected ``kwargs`` (a ``TypeError`` naming an
            argument, or a ``ValueError`` when ``kwargs`` were given), or raised anything else
            (the cause is chained); metarl's own errors pass through.
    """
    try:
        return gym.make(env_id, disable_env_checker=True, **kwargs)
    except TaskAPIError as e:
        if isinstance(e.__cause__, TaskAPIError):  # gymnasium re-raises an entry point's TypeError with a suffix
            raise e.__cause__ from None
        raise
    except MetarlError:
        raise
    except TypeError as e:
        if kwargs and "argument" in str(e):
            raise FamilyConstructionError(
                f"{env_id} does not accept env_kwargs {kwargs}: {e}. Fix env_kwargs in the config to match the "
                "family's constructor."
            ) from e
        raise _construction_failed(env_id, kwargs, e) from e
    except ValueError as e:  # a constructor's own check of a value (metarl's families check theirs)
        if kwargs:
            raise FamilyConstructionError(
                f"{env_id} rejected env_kwargs {kwargs}: {e} Fix env_kwargs in the config."
            ) from e
        raise _construction_failed(env_id, kwargs, e) from e
    except Exception as e:
        raise _construction_failed(env_id, kwargs, e) from e


def _construction_failed(env_id: str, kwargs: dict[str, Any], error: Exception) -> FamilyConstructionError:
    """The error for a family constructor that raised: names the family, its arguments and the cause."""
    given = f" with env_kwargs {kwargs}" if kwargs else ""
    return FamilyConstructionError(
        f"Creating the task family {env_id}{given} raised {type(error).__name__}: {error}. Fix its constructor "
        "(`metarl check-env` builds it and checks the task API); `python -c` importing and constructing it "
        "shows the traceback."
    )
