"""Bad input on the command line gets one clear line, never a traceback, and changes nothing.

Each case calls the CLI's entry point in-process and asserts the exit status 2, a last
stderr line that says ``error:`` (for metarl's own checks exactly one line, starting with
``error:``; argparse's usage errors end with its ``metarl ...: error:`` line), no traceback,
and that an existing run's files are byte-for-byte unchanged and no new run directory was made.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import TINY

from metarl.cli import main
from metarl.config import load_config
from metarl.errors import MetarlError
from metarl.logger import read_csv
from metarl.trainer import Trainer

NEW = "{tmp}/new-run"  # a run directory that must not be created


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """An existing 2-iteration run, a copy with a text file as its checkpoint, odd files."""
    root = tmp_path_factory.mktemp("bad-input")
    run = root / "run"
    Trainer(
        load_config("2d-navigation", TINY + ["num_iterations=2", "checkpoint_every=1"]), run, progress=False
    ).train()
    broken = root / "broken"
    Trainer(load_config("2d-navigation", TINY + ["num_iterations=1"]), broken, progress=False).train()
    (broken / "checkpoints" / "last.pt").write_text("this is not a checkpoint\n")
    (root / "text.pt").write_text("hello\n")
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "bad.yaml").write_text("num_iterations: [1, 2\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "a-file").write_text("x\n")
    return {"root": root, "run": run, "broken": broken}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def train_set(*overrides: str) -> list[str]:
    return ["train", "--config", "2d-navigation", "--no-progress", "--run-dir", NEW, "--set", *TINY, *overrides]


CONFIG_VALUES = [
    ("seed=-1", "seed"),
    ("gamma=true", "gamma"),
    ("gamma=1.5", "gamma"),
    ("gamma=-0.1", "gamma"),
    ("gae_lambda=2", "gae_lambda"),
    ("family=123", "family"),
    ("family=", "family"),
    ("family=NoSuchFamily", "NoSuchFamily"),
    ("family=nosuchmodule:Family", "nosuchmodule"),
    ("family=os:path", "os:path"),
    ("env_kwargs=[1]", "env_kwargs"),
    ("env_kwargs=3", "env_kwargs"),
    ("env_kwargs={no_such_argument: 1}", "no_such_argument"),
    ("max_kl=.inf", "max_kl"),
    ("max_kl=0", "max_kl"),
    ("max_kl=-1", "max_kl"),
    ("cg_damping=.inf", "cg_damping"),
    ("cg_damping=-1", "cg_damping"),
    ("cg_damping=.nan", "cg_damping"),
    ("fast_lr=abc", "fast_lr"),
    ("fast_lr=.inf", "fast_lr"),
    ("fast_lr=0", "fast_lr"),
    ("horizon=abc", "horizon"),
    ("horizon=0", "horizon"),
    ("horizon=-5", "horizon"),
    ("hidden_sizes=64", "hidden_sizes"),
    ("hidden_sizes=[0]", "hidden_sizes"),
    ("hidden_sizes=[8.5]", "hidden_sizes"),
    ("hidden_sizes=[true]", "hidden_sizes"),
    ("device=null", "device"),
    ("device=tpu", "device"),
    ("device=cuda:x", "cuda"),
    ("torch_threads=-1", "torch_threads"),
    ("torch_threads=100000", "torch_threads"),
    ("num_iterations=0", "num_iterations"),
    ("num_iterations=1.5", "num_iterations"),
    ("meta_batch_size=0", "meta_batch_size"),
    ("episodes_per_task=-3", "episodes_per_task"),
    ("num_steps=0", "num_steps"),
    ("cg_iters=0", "cg_iters"),
    ("ls_max_steps=0", "ls_max_steps"),
    ("ls_backtrack_ratio=1", "ls_backtrack_ratio"),
    ("ls_backtrack_ratio=0", "ls_backtrack_ratio"),
    ("curvature_subsample=0", "curvature_subsample"),
    ("checkpoint_every=0", "checkpoint_every"),
    ("activation=sigmoid", "activation"),
    ("init_std=0", "init_std"),
    ("init_std=-1", "init_std"),
    ("learner=prom", "promp"),
    ("outer_lr=0.1", "outer_lr"),
    ("estimator=dic", "dice"),
    ("clip_eps=0", "clip_eps"),
    ("ppo_steps=0", "ppo_steps"),
    ("inner_kl_coef=-1", "inner_kl_coef"),
    ("outer_lr=-1", "outer_lr"),
    ("max_kll=0.1", "max_kl"),
    ("tensorboard=maybe", "tensorboard"),
    ("first_order=2", "first_order"),
    ("normalize_advantages=[1]", "normalize_advantages"),
    ("horizon=1000000000", "GiB"),
    ("meta_batch_size=10000000", "GiB"),
    ("hidden_sizes=[100000, 100000]", "GiB"),
    ("num_iterations", "key=value"),
    ("env_kwargs={a: 1", "not valid YAML"),
    ("=3", "Unknown config key"),
]
if __import__("torch").cuda.is_available():  # pragma: no cover - a GPU machine
    CONFIG_VALUES = [c for c in CONFIG_VALUES if not c[0].startswith("device=cuda")]
else:
    CONFIG_VALUES.append(("device=cuda", "GPU"))

LEARNER_VALUES = [
    (["learner=maml-ppo", "inner_kl_coef=0.01"], "inner KL"),
    (["learner=reptile", "estimator=lvc"], "reptile"),
    (["learner=promp", "clip_eps=-0.2"], "clip_eps"),
]

CLI_CASES = [
    (["train", "--config", "{root}", "--run-dir", NEW], "directory"),
    (["train", "--config", "{root}/binary.yaml", "--run-dir", NEW], "not a text file"),
    (["train", "--config", "{root}/missing.yaml", "--run-dir", NEW], "No config file"),
    (["train", "--config", "{root}/bad.yaml", "--run-dir", NEW], "not valid YAML"),
    (["train", "--config", "{root}/list.yaml", "--run-dir", NEW], "mapping"),
    (["train", "--config", "2d-navigation", "--iterations", "5", "--run-dir", NEW], "--resume"),
    (["train", "--resume", "{run}", "--set", "seed=1"], "--resume continues"),
    (["train", "--resume", "{run}", "--config", "2d-navigation"], "--resume continues"),
    (["train", "--resume", "{run}", "--iterations", "1"], "at iteration 2"),
    (["train", "--resume", "{run}", "--iterations", "2"], "at iteration 2"),
    (["train", "--resume", "{root}/missing"], "not a metarl run directory"),
    (["train", "--resume", "{root}/a-file"], "not a metarl run directory"),
    (["train", "--resume", "{broken}"], "corrupt"),
    (["train", "--config", "2d-navigation", "--run-dir", "{run}", "--set", *TINY], "already holds a run"),
    (["train", "--iterations", "0", "--resume", "{run}"], "must be >= 1"),
    (["train", "--learner", "nope"], "invalid choice"),
    (["evaluate", "{root}/missing"], "No run directory"),
    (["evaluate", "{run}", "--seed", "-1"], "must be >= 0"),
    (["evaluate", "{run}", "--tasks", "0"], "must be >= 1"),
    (["evaluate", "{run}", "--episodes", "0"], "must be >= 1"),
    (["evaluate", "{run}", "--steps", "-1"], "must be >= 0"),
    (["evaluate", "{run}", "--tasks", "many"], "expected an integer"),
    (["evaluate", "{run}", "--checkpoint", "{root}/text.pt"], "corrupt"),
    (["evaluate", "{run}", "--checkpoint", "{root}/missing.pt"], "No checkpoint"),
    (["evaluate", "{broken}"], "corrupt"),
    (["benchmark", "--seeds", "-1", "--out", NEW], "must be >= 0"),
    (["benchmark", "--seeds", "0", "0", "--out", NEW], "distinct"),
    (["benchmark", "--budget", "huge", "--out", NEW], "invalid choice"),
    (["benchmark", "--seeds", "0", "--maml-runs", "{run}", "{run}", "--out", NEW], "one MAML run per seed"),
    (["benchmark", "--maml-runs", "{broken}", "--out", NEW], "corrupt"),
    (["benchmark", "--ppo-timesteps", "0", "--out", NEW], "must be >= 1"),
    (["benchmark", "--oracle-timesteps", "0", "--out", NEW], "must be >= 1"),
    (["benchmark", "--ppo-recipe", "tuned", "--out", NEW], "invalid choice: 'tuned'"),
    (["benchmark", "--jobs", "0", "--out", NEW], "must be >= 1"),
    (["benchmark", "--config", "{root}/missing.yaml", "--out", NEW], "No config file"),
    (["benchmark", "--set", "gamma=7", "--out", NEW], "gamma"),
    (["benchmark", "--out", "{run}", "--maml-runs", "{run}"], "holds a training run"),
    (["check-env", "NoSuchFamily"], "Unknown task family"),
    (["check-env", "os:path"], "os:path"),
    (["check-env", "Navigation2D", "--kwargs", "noequals"], "KEY=VALUE"),
    (["check-env", "Navigation2D", "--kwargs", "a={"], "not valid YAML"),
    (["check-env", "Navigation2D", "--seed", "-1"], "must be >= 0"),
    (["configs", "nope"], "No packaged config 'nope'"),
    (["configs", "2d-navigation", "extra"], "unrecognized arguments"),
    (["nosuchcommand"], "invalid choice"),
    ([], "required"),
]


def run_case(argv: list[str], world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    fill = {"root": world["root"], "run": world["run"], "broken": world["broken"], "tmp": tmp_path}
    for key, value in fill.items():  # not str.format: the arguments themselves hold braces
        argv = [a.replace("{" + key + "}", str(value)) for a in argv]
    before = snapshot(world["run"])
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and "error:" in lines[-1], err
    if not lines[-1].startswith("usage") and lines[0].startswith("error:"):
        assert len(lines) == 1, err  # metarl's own errors are one line
    assert snapshot(world["run"]) == before, "the existing run changed"
    assert not (tmp_path / "new-run").exists(), "a run directory was created"
    return lines[-1]


@pytest.mark.parametrize("override,named", CONFIG_VALUES, ids=[c[0] for c in CONFIG_VALUES])
def test_bad_config_values(override: str, named: str, world, tmp_path, capsys) -> None:
    line = run_case(train_set(override), world, tmp_path, capsys)
    assert line.startswith("error: ") and named in line, line


@pytest.mark.parametrize("overrides,named", LEARNER_VALUES, ids=[" ".join(c[0]) for c in LEARNER_VALUES])
def test_bad_learner_settings(overrides: list[str], named: str, world, tmp_path, capsys) -> None:
    line = run_case(train_set(*overrides), world, tmp_path, capsys)
    assert line.startswith("error: ") and named in line, line


@pytest.mark.parametrize("argv,named", CLI_CASES, ids=[" ".join(c[0])[:60] for c in CLI_CASES])
def test_bad_command_lines(argv: list[str], named: str, world, tmp_path, capsys) -> None:
    line = run_case(argv, world, tmp_path, capsys)
    assert named in line, line


def test_repeated_set_options_accumulate(tmp_path, capsys) -> None:
    """`--set a=1 --set b=2` applies both (argparse used to keep only the last)."""
    run = tmp_path / "run"
    argv = ["train", "--config", "2d-navigation", "--no-progress", "--run-dir", str(run), "--set", *TINY]
    assert main([*argv, "--set", "num_iterations=1", "--set", "seed=3"]) == 0
    saved = load_config(run / "config.yaml")
    assert (saved.num_iterations, saved.seed, saved.meta_batch_size) == (1, 3, 4)


def test_the_suite_is_large_enough() -> None:
    assert len(CONFIG_VALUES) + len(LEARNER_VALUES) + len(CLI_CASES) >= 100


@pytest.mark.parametrize(
    "field,value,named",
    [("family", 123, "family"), ("family", "nope", "Unknown task family"), ("gamma", 2.0, "gamma")],
)
def test_a_config_edited_after_loading_is_validated_on_use(tmp_path, field: str, value: object, named: str) -> None:
    cfg = load_config("2d-navigation", TINY)
    setattr(cfg, field, value)  # plain attribute assignment is not checked ...
    with pytest.raises(MetarlError, match=named):  # ... the Trainer checks before it writes anything
        Trainer(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------
# Resume checks what it trusts; the file system's errors are one line too.


def fresh_run(tmp_path: Path, name: str = "run", iterations: int = 4, seed: int = 0) -> Path:
    run = tmp_path / name
    cfg = load_config("2d-navigation", TINY + [f"num_iterations={iterations}", "checkpoint_every=2", f"seed={seed}"])
    Trainer(cfg, run, progress=False).train()
    return run


def cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    return err[0]


def test_resume_refuses_an_edited_config(tmp_path, capsys) -> None:
    run = fresh_run(tmp_path)
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("max_kl: 0.01", "max_kl: 0.05"))
    before = snapshot(run)
    line = cli_error(["train", "--resume", str(run), "--iterations", "6", "--no-progress"], capsys)
    assert "config.yaml was edited since the checkpoint: max_kl (0.05 in the file, 0.01 in the checkpoint)" in line
    assert snapshot(run) == before


def test_resume_refuses_another_runs_checkpoint(tmp_path, capsys) -> None:
    run, other = fresh_run(tmp_path, "run"), fresh_run(tmp_path, "other", seed=1)
    (run / "checkpoints" / "last.pt").write_bytes((other / "checkpoints" / "last.pt").read_bytes())
    rows = (run / "progress.csv").read_bytes()
    line = cli_error(["train", "--resume", str(run), "--iterations", "6", "--no-progress"], capsys)
    assert "belongs to another run" in line
    assert (run / "progress.csv").read_bytes() == rows


@pytest.mark.parametrize(
    "damage",
    ["cut mid-row", "cut inside a number", "garbage line", "NUL line", "repeated row"],
)
def test_resume_repairs_a_damaged_log_and_keeps_the_original(tmp_path, capsys, damage: str) -> None:
    run = fresh_run(tmp_path, iterations=4)  # checkpoint at 4; log rows 1..4
    path = run / "progress.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    damaged = {
        "cut mid-row": text[: len(text) - len(lines[-1]) // 2],
        "cut inside a number": "".join(lines[:3]) + lines[3][:9] + "\n" + lines[4],
        "garbage line": "".join(lines[:3]) + "%%% not a row %%%\n" + "".join(lines[3:]),
        "NUL line": "".join(lines[:2]) + "\x00\x00\x00\n" + "".join(lines[2:]),
        "repeated row": "".join(lines) + lines[2],
    }[damage]
    path.write_text(damaged)
    assert main(["train", "--resume", str(run), "--iterations", "5", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note: repaired" in err
    rows = read_csv(path)
    iterations = [int(r["iteration"]) for r in rows]
    if damage == "cut mid-row":  # the last row is lost for good: said, not invented
        assert iterations == [1, 2, 3, 5] and "no well-formed row of iteration 4" in err
    elif damage == "cut inside a number":  # row 3 lost its end; rows 1, 2, 4 are kept in order
        assert iterations == [1, 2, 4, 5] and "no well-formed row of iteration 3" in err
    else:
        assert iterations == [1, 2, 3, 4, 5]
    backups = list(run.glob("progress.csv.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged.encode()


def test_a_healthy_log_is_left_alone_on_resume(tmp_path, capsys) -> None:
    run = fresh_run(tmp_path, iterations=2)
    assert main(["train", "--resume", str(run), "--iterations", "3", "--no-progress"]) == 0
    assert "note:" not in capsys.readouterr().err and not list(run.glob("progress.csv.damaged-*"))


def test_a_run_dir_that_is_a_file_or_under_one_is_one_error_line(tmp_path, capsys) -> None:
    (tmp_path / "a-file").write_text("x\n")
    for target in (tmp_path / "a-file", tmp_path / "a-file" / "run"):
        argv = ["train", "--config", "2d-navigation", "--no-progress", "--run-dir", str(target), "--set", *TINY]
        line = cli_error(argv, capsys)
        assert f"Cannot write the run directory {target}" in line
    assert (tmp_path / "a-file").read_text() == "x\n"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_run_dir_is_one_error_line(tmp_path, capsys) -> None:  # pragma: no cover - CI runs as root
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        argv = ["train", "--config", "2d-navigation", "--no-progress", "--run-dir", str(folder / "run"), "--set", *TINY]
        assert "Cannot write the run directory" in cli_error(argv, capsys)
    finally:
        folder.chmod(0o755)


def test_a_full_disk_mid_run_is_one_error_line_and_the_run_resumes(tmp_path, capsys, monkeypatch) -> None:
    """ENOSPC from the checkpoint writer at iteration 4 (simulated: mounting a small tmpfs needs
    privileges CI does not have): one line, the rows and the checkpoint of iteration 2 intact."""
    import errno

    import metarl.trainer as trainer_module

    real = trainer_module.save_checkpoint

    def fill_up(path, state):
        if state["iteration"] >= 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, state)

    monkeypatch.setattr(trainer_module, "save_checkpoint", fill_up)
    run = tmp_path / "run"
    argv = ["train", "--config", "2d-navigation", "--no-progress", "--run-dir", str(run), "--set", *TINY]
    line = cli_error([*argv, "num_iterations=6", "checkpoint_every=2"], capsys)
    assert "No space left on device" in line and f"metarl train --resume {run}" in line
    assert [int(r["iteration"]) for r in read_csv(run / "progress.csv")] == [1, 2, 3, 4]
    monkeypatch.setattr(trainer_module, "save_checkpoint", real)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert [int(r["iteration"]) for r in read_csv(run / "progress.csv")] == [1, 2, 3, 4, 5, 6]
