"""User task families: ``module:ClassName`` specs, ``metarl check-env``, and training on them.

The families live in ``tests/user_families.py``, imported as ``user_families`` (pytest puts
``tests/`` on ``sys.path``; subprocesses get it through ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import user_families

from metarl.check_env import (
    CheckResult,
    canonical,
    check_family,
    format_results,
    tasks_equal,
)
from metarl.cli import main
from metarl.errors import TaskAPIError, UnknownFamilyError
from metarl.families import make_family, resolve_family_id
from metarl.logger import read_csv
from metarl.task_api import seed_family

torch.set_num_threads(1)

TESTS_DIR = Path(__file__).parent
METARL = Path(sys.executable).parent / "metarl"
CHECKS = [
    "construct",
    "task-api",
    "sample-tasks",
    "task-seeding",
    "set-get-task",
    "observation-space",
    "gymnasium-checker",
    "task-effect",
    "pickle",
]
TINY = [
    "horizon=10",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "num_iterations=2",
    "hidden_sizes=[8]",
    "tensorboard=false",
    "torch_threads=1",
    "cg_iters=2",
    "device=cpu",
]


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    assert [r.name for r in results] == CHECKS
    return {r.name: r for r in results}


def failed(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if r.failed]


# -- module:ClassName specs --------------------------------------------------------------


def test_spec_registers_under_dotted_id_with_the_spec_as_entry_point() -> None:
    env_id = resolve_family_id("user_families:GoodFamily")
    assert env_id == "user_families.GoodFamily"
    assert gym.registry[env_id].entry_point == "user_families:GoodFamily"
    assert gym.registry[env_id].max_episode_steps is None
    assert resolve_family_id("user_families:GoodFamily") == env_id  # idempotent: registered once
    env = make_family("user_families:GoodFamily")
    assert isinstance(env.unwrapped, user_families.GoodFamily)


def test_class_attribute_max_episode_steps_sets_the_time_limit() -> None:
    env = make_family("user_families:GoodFamilyWithHorizon")
    assert env.spec is not None and env.spec.max_episode_steps == 7
    env.unwrapped.set_task({"goal": 0.5})
    env.reset(seed=0)
    truncated = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(7)]
    assert truncated == [False] * 6 + [True]


def test_spec_kwargs_reach_the_constructor() -> None:
    env = make_family("user_families:GoodFamily", goal_scale=3.0)
    assert env.unwrapped.goal_scale == 3.0
    seed_family(env, 0)
    goals = [t["goal"] for t in env.unwrapped.sample_tasks(200)]
    assert max(abs(g) for g in goals) > 1.0  # beyond the default scale


def test_spec_may_name_a_factory_function() -> None:
    env = make_family("user_families:make_good_family", goal_scale=2.0)
    assert isinstance(env.unwrapped, user_families.GoodFamily) and env.unwrapped.goal_scale == 2.0


def test_factory_returning_something_else_raises_task_api_error() -> None:
    with pytest.raises(
        TaskAPIError,
        match=r"user_families:make_not_an_env\(\.\.\.\) returned an object of type str, not a gymnasium.Env",
    ):
        make_family("user_families:make_not_an_env")


def test_unimportable_module_names_it_and_the_path() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        resolve_family_id("no_such_module_xyz:MyFamily")
    message = str(info.value)
    assert "Cannot import module 'no_such_module_xyz'" in message
    assert "current directory" in message and "PYTHONPATH" in message


def test_missing_class_suggests_close_names() -> None:
    with pytest.raises(UnknownFamilyError) as info:
        resolve_family_id("user_families:GodFamily")
    message = str(info.value)
    assert "Module 'user_families' has no attribute 'GodFamily'" in message
    assert "Did you mean 'user_families:GoodFamily'" in message
    assert "gymnasium.Env classes in user_families: " in message and "GoodFamily, GoodFamilyWithHorizon," in message


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("user_families:NotAnEnv", "user_families:NotAnEnv is a class but not a gymnasium.Env subclass"),
        (
            "user_families:NOT_CALLABLE",
            "is an object of type int, not a gymnasium.Env subclass or a function returning one",
        ),
    ],
)
def test_not_an_env_is_rejected(spec: str, expected: str) -> None:
    with pytest.raises(UnknownFamilyError, match=expected):
        resolve_family_id(spec)


@pytest.mark.parametrize("spec", ["user_families:", ":GoodFamily", "a:b:c", "user-families:GoodFamily"])
def test_malformed_spec_shows_the_form(spec: str) -> None:
    with pytest.raises(UnknownFamilyError, match="'package.module:ClassName'"):
        resolve_family_id(spec)


def test_module_errors_name_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ufam_raises.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "ufam_needs_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        UnknownFamilyError, match=r"Importing module 'ufam_raises' .* raised RuntimeError: boom at import"
    ):
        resolve_family_id("ufam_raises:Env")
    with pytest.raises(UnknownFamilyError, match=r"a module it imports is missing .*no_such_dependency_xyz"):
        resolve_family_id("ufam_needs_dep:Env")


def test_module_in_the_current_directory_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = (TESTS_DIR / "user_families.py").read_text()
    (tmp_path / "ufam_cwd.py").write_text(source)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.chdir(tmp_path)
    assert resolve_family_id("ufam_cwd:GoodFamily") == "ufam_cwd.GoodFamily"
    assert str(tmp_path) in sys.path  # appended, so that it shadows no installed package


def test_gymnasium_module_colon_id_form_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ufam_registers.py").write_text(
        textwrap.dedent(
            """
            import gymnasium as gym
            if "ufam/Registered-v0" not in gym.registry:
                gym.register(id="ufam/Registered-v0", entry_point="user_families:GoodFamily", max_episode_steps=5)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_family_id("ufam_registers:ufam/Registered-v0") == "ufam/Registered-v0"
    assert make_family("ufam_registers:ufam/Registered-v0").spec.max_episode_steps == 5  # type: ignore[union-attr]


def test_unknown_plain_id_mentions_the_spec_form() -> None:
    with pytest.raises(UnknownFamilyError, match="'package.module:ClassName'"):
        resolve_family_id("Qwzx")


# -- check_family ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["user_families:GoodFamily", "Navigation2D", "user_families:make_good_family"])
def test_good_families_pass_every_check(target: str) -> None:
    results = check_family(target)
    assert [r.name for r in results] == CHECKS
    assert all(r.ok for r in results), format_results(results)
    assert format_results(results).endswith(f"All {len(CHECKS)} checks passed.")


def test_missing_horizon_is_a_note() -> None:
    results = by_name(check_family("user_families:GoodFamily"))
    assert any("set `horizon` in the training config" in n for n in results["construct"].notes)
    assert by_name(check_family("user_families:GoodFamilyWithHorizon"))["construct"].notes == ()


def test_gymnasium_checker_warnings_are_notes() -> None:
    notes = by_name(check_family("user_families:GoodFamily"))["gymnasium-checker"].notes
    assert any("minimum value is -infinity" in n for n in notes)
    assert not any("\x1b[" in n for n in notes)  # colors stripped


def test_missing_set_task_fails_task_api_and_skips_the_rest() -> None:
    results = check_family("user_families:NoSetTask")
    assert failed(results) == ["task-api"]
    api = by_name(results)["task-api"]
    assert "NoSetTask has no callable set_task" in api.message and "Add sample_tasks(n)" in api.message
    assert all(r.skipped and r.message == "needs task-api to pass" for r in results[2:])


def test_unseeded_tasks_fail_task_seeding() -> None:
    results = check_family("user_families:UnseededTasks")
    assert failed(results) == ["task-seeding"]
    message = by_name(results)["task-seeding"].message
    assert "the same seed gave different tasks" in message
    assert "Draw tasks from self.np_random" in message and "not the global numpy/random RNG" in message


def test_wrong_observation_shape_fails_observation_space() -> None:
    results = check_family("user_families:WrongObservationShape")
    assert failed(results) == ["observation-space"]
    checks = by_name(results)
    assert checks["observation-space"].message == (
        "reset() returned an observation of shape (2,) but observation_space has shape (1,). "
        "Return observations of shape (1,), or declare observation_space with shape (2,)"
    )
    assert checks["gymnasium-checker"].skipped


def test_set_task_without_effect_fails_task_effect() -> None:
    results = check_family("user_families:TaskIgnored")
    assert failed(results) == ["task-effect"]
    message = by_name(results)["task-effect"].message
    assert message.startswith("set_task changes neither rewards nor observations")


def test_a_raising_step_is_reported_not_raised() -> None:
    results = check_family("user_families:StepRaises")
    checks = by_name(results)
    assert checks["observation-space"].message.startswith(
        "step() at step 0 raised RuntimeError: simulated physics blow-up."
    )
    assert checks["gymnasium-checker"].skipped
    assert checks["task-effect"].failed and checks["pickle"].ok


def test_constructor_errors_are_reported() -> None:
    results = check_family("user_families:GoodFamily", {"goal_scal": 3.0})
    assert failed(results) == ["construct"]
    message = results[0].message
    assert "unexpected keyword argument 'goal_scal'" in message and "--kwargs here, env_kwargs in a config" in message


def test_unresolvable_target_raises() -> None:
    with pytest.raises(UnknownFamilyError):
        check_family("no_such_module_xyz:MyFamily")


@dataclass(frozen=True)
class _Task:
    goal: np.ndarray


def test_tasks_compare_by_value() -> None:
    a = [{"goal": np.array([0.1, 0.2]), "w": float("nan")}, _Task(np.arange(3))]
    b = [{"w": float("nan"), "goal": np.array([0.1, 0.2])}, _Task(np.arange(3))]
    assert tasks_equal(a, b)
    assert not tasks_equal(a, [b[0], _Task(np.arange(3) + 1)])
    assert not tasks_equal(np.array([1.0]), np.array([1.0], dtype=np.float32))  # strict: dtype counts
    assert tasks_equal({"goal": 0.1}, {"goal": np.float32(0.1)}, loose=True)
    assert tasks_equal((1.0, 2.0), np.array([1.0, 2.0]), loose=True)
    assert canonical(np.float64(2.5)) == 2.5


# -- the command line --------------------------------------------------------------------


def test_cli_check_env_good_family_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "user_families:GoodFamily", "--kwargs", "goal_scale=2.0", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("ok   ")] == [f"ok   {name}" for name in CHECKS]


def test_cli_check_env_broken_family_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "user_families:TaskIgnored"]) == 1
    out = capsys.readouterr().out
    assert "FAIL task-effect: set_task changes neither rewards nor observations" in out
    assert "1 of 9 checks failed." in out


def test_cli_check_env_unknown_module_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "no_such_module_xyz:MyFamily"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_module_xyz" in err


def test_cli_check_env_typo_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "user_families:GodFamily"]) == 2
    assert "Did you mean 'user_families:GoodFamily'" in capsys.readouterr().err


def test_cli_check_env_bad_kwargs_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "Navigation2D", "--kwargs", "goal_scale"]) == 2
    assert "--kwargs takes KEY=VALUE pairs, got 'goal_scale'" in capsys.readouterr().err


def test_cli_subprocess_finds_module_on_pythonpath_and_in_the_current_directory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR)}
    done = subprocess.run(
        [str(METARL), "check-env", "user_families:GoodFamily"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ok   pickle" in done.stdout
    env.pop("PYTHONPATH")  # the console script's sys.path lacks the current directory: metarl adds it
    done = subprocess.run(
        [str(METARL), "check-env", "user_families:WrongObservationShape"],
        capture_output=True,
        text=True,
        env=env,
        cwd=TESTS_DIR,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "FAIL observation-space: reset() returned an observation of shape (2,)" in done.stdout


def test_cli_trains_and_evaluates_a_user_family_with_env_kwargs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    user_families.GoodFamily.built_with.clear()
    overrides = ["family=user_families:GoodFamily", "env_kwargs={goal_scale: 3.0}", *TINY]
    assert main(["train", "--set", *overrides, "--run-dir", str(run_dir), "--no-progress"]) == 0
    rows = read_csv(run_dir / "progress.csv")
    assert [r["iteration"] for r in rows] == ["1", "2"]
    # The trainer's family and the sampler's 2 x 2 vector-env copies were all built with the kwargs.
    assert len(user_families.GoodFamily.built_with) >= 1 + 2 * 2
    assert set(user_families.GoodFamily.built_with) == {3.0}
    assert main(["evaluate", str(run_dir), "--tasks", "2", "--steps", "1", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "user_families:GoodFamily at iteration 2: 2 held-out tasks" in out
    assert (run_dir / "eval.json").exists()


def test_training_without_any_horizon_says_to_set_one() -> None:
    from metarl.policies import make_policy
    from metarl.sampler import Sampler

    env = make_family("user_families:GoodFamily")
    policy = make_policy(env.observation_space, env.action_space, (8,), "tanh", 1.0)
    with pytest.raises(ValueError, match="set `horizon` in the config"):
        Sampler("user_families:GoodFamily", policy)
    assert Sampler("user_families:GoodFamilyWithHorizon", policy).horizon == 7


# The families of issue 12's class 7: check-env and training agree on each.
FAMILY_VERDICTS = [
    ("ShortTasks", "sample-tasks", "returned 0 tasks"),
    ("NoneTasks", "sample-tasks", "returned a NoneType"),
    ("RaisingTasks", "sample-tasks", "task file not found"),
    ("RaisingConstructor", "construct", "OSError: simulator licence not found"),
    ("DictObservation", "observation-space", "need a flat Box observation space"),
    ("ImageObservation", "observation-space", "shape (4, 4, 3) (an image?)"),
    ("NanReward", "observation-space", "the reward of step() at step 0 is not finite (nan)"),
    ("InfObservation", "observation-space", "the observation of reset() is not finite (inf)"),
    ("FunctionTasks", "pickle", "cannot be pickled"),
    ("ResetKeepsState", "gymnasium-checker", "state left over from the previous episode"),
]


@pytest.mark.parametrize("family,check,message", FAMILY_VERDICTS, ids=[v[0] for v in FAMILY_VERDICTS])
def test_check_env_names_what_is_wrong_with_each_broken_family(family: str, check: str, message: str) -> None:
    results = by_name(check_family(f"user_families:{family}"))
    assert not results[check].ok and message in results[check].message, results[check]
    assert [name for name, r in results.items() if not r.ok and not r.skipped][0] == check  # the first failure


def test_tasks_holding_functions_are_seeded_correctly() -> None:
    assert by_name(check_family("user_families:FunctionTasks"))["task-seeding"].ok  # no false seeding failure


def test_a_flattened_dict_observation_passes_and_trains(tmp_path: Path) -> None:
    assert all(r.ok for r in check_family("user_families:flat_dict_observation"))
    argv = ["train", "--no-progress", "--run-dir", str(tmp_path / "run"), "--set", *TINY, "num_iterations=1"]
    assert main([*argv, "family=user_families:flat_dict_observation", "horizon=5"]) == 0


TRAIN_ERRORS = [
    ("ShortTasks", "ShortTasks.sample_tasks(2) returned 1 tasks, not 2"),
    ("NoneTasks", "returned a NoneType, not a list of 2 tasks"),
    ("RaisingTasks", "raised RuntimeError: task file not found"),
    ("RaisingConstructor", "raised OSError: simulator licence not found"),
    ("DictObservation", "FlattenObservation"),
    ("ImageObservation", "(an image?)"),
]


@pytest.mark.parametrize("family,message", TRAIN_ERRORS, ids=[v[0] for v in TRAIN_ERRORS])
def test_training_a_broken_family_is_one_error_line_and_writes_nothing(
    family: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--no-progress", "--run-dir", str(run), "--set", *TINY, f"family=user_families:{family}"]
    assert main([*argv, "horizon=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not run.exists()


def test_a_run_that_failed_in_its_first_iteration_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "--no-progress", "--run-dir", str(run), "--set", *TINY, "family=user_families:NanReward"]
    assert main([*argv, "horizon=5"]) == 2
    assert "NaN or inf in rewards" in capsys.readouterr().err
    assert main(["train", "--no-progress", "--resume", str(run)]) == 2  # resumes from iteration 0, fails alike
    err = capsys.readouterr().err
    assert "NaN or inf in rewards" in err and "already holds a run" not in err
