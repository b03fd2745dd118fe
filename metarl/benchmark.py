"""The MAML paper's evaluation protocol, against baselines, over seeds.

For a config (task family + MAML settings) and a budget, for every seed:

* **maml**: meta-train (or load a run) with the config's learner;
* **pretrained**: SB3 PPO on the family, a new task every episode (``metarl.reference_methods``);
* **oracle**: SB3 PPO that observes the task;
* **random**: a fresh initialization.

Every method is then evaluated on the same held-out tasks (fixed seed, disjoint from
training) with the same sampler seed: return after 0..K inner policy-gradient steps, the
very inner step MAML uses. MAML adapts with the step size it was meta-trained with; each
baseline with the step size from ``budget.lr_grid`` that gives the best one-step return on
training tasks (as the MAML paper's evaluation). Aggregates over seeds x tasks with
``metarl.stats``: mean and IQM with stratified-bootstrap 95% intervals.

Outputs in ``out``: ``benchmark.json`` (raw per-task returns and the summary),
``benchmark.md`` (table), ``adaptation.png`` (return vs adaptation steps, 95% bands) and
``learning_curve.png`` (MAML's pre- and post-adaptation return vs meta-iteration, a line per
seed) and ``baselines/seed<k>/<method>.pt`` (each trained PPO baseline's policy, copied along
and evaluated again when reused). ``benchmark.md`` also states MAML's meta-iterations and the PPO budget, and the
per-seed means after one step.

Each seed's results are kept in ``out/seeds/seed<k>.json`` as soon as it finishes, so a
benchmark that fails or is interrupted loses no finished seed: the same call with
``resume=True`` (``metarl benchmark ... --resume``) runs only the seeds left, and within them
loads the PPO baselines already trained and continues MAML from its last checkpoint. The
folder is removed once ``benchmark.json`` is written.

Example:
    >>> report = run_benchmark("2d-navigation", "smoke", seeds=[0], out="runs/bench-smoke")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from metarl.adaptation import InnerLoop
from metarl.checkpoint import load_checkpoint
from metarl.config import TrainConfig, config_from_dict, load_config
from metarl.errors import CheckpointError
from metarl.evaluate import adaptation_returns, adaptation_scores
from metarl.families import make_family
from metarl.learners import LEARNER_LABELS
from metarl.logger import read_csv
from metarl.plots import plot_benchmark
from metarl.policies import Policy
from metarl.reference_methods import TaskObservationEnv, load_baseline, save_baseline, sb3_to_metarl, train_ppo
from metarl.run_lock import RunLock
from metarl.runtime import build_policy, seed_streams
from metarl.sampler import Sampler
from metarl.stats import aggregate
from metarl.task_api import sample_tasks, sample_test_tasks, seed_family
from metarl.trainer import Trainer

METHODS = ("maml", "pretrained", "oracle", "random")
EVAL_TASK_SEED = 20_240_101
"""Held-out tasks: the same for every method, seed and family (disjoint from the training streams)."""
EVAL_SAMPLER_SEED = 7_000_000
"""Action noise and reset seeds of the evaluation (common random numbers across methods)."""


@dataclass(frozen=True)
class Budget:
    """How much compute one benchmark spends."""

    name: str
    maml_iterations: int | None
    """Meta-iterations (``None``: the config's ``num_iterations``)."""
    ppo_timesteps: int
    """Environment steps of the pretrained PPO baseline (and of the oracle without ``oracle_timesteps``)."""
    eval_tasks: int
    eval_episodes: int
    max_steps: int
    """Evaluate after 0..max_steps adaptation steps."""
    lr_grid: tuple[float, ...]
    """Candidate fine-tuning step sizes of the baselines."""
    lr_tasks: int
    """Training tasks used to pick a baseline's step size."""
    config_overrides: tuple[str, ...] = field(default_factory=tuple)
    """Applied to the config (the smoke budget shrinks the meta-batch)."""
    oracle_timesteps: int | None = None
    """Environment steps of the oracle (``None``: ``ppo_timesteps``). The oracle is an upper
    reference and must clearly beat every meta-learned method: give it more where it does not."""
    ppo_normalize: bool = False
    """The PPO baselines train on running-normalized observations and rewards (``train_ppo``)."""
    ppo_batch_size: int = 64
    """PPO's minibatch. The defaults are the recipe of benchmarks written before these fields."""

    def timesteps(self, method: str) -> int:
        """The PPO environment steps of baseline ``method`` (``pretrained`` or ``oracle``)."""
        if method == "oracle" and self.oracle_timesteps is not None:
            return self.oracle_timesteps
        return self.ppo_timesteps


PPO_RECIPES: dict[str, dict[str, Any]] = {
    "normalized": {"ppo_normalize": True, "ppo_batch_size": 256},
    "plain": {key: Budget.__dataclass_fields__[key].default for key in ("ppo_normalize", "ppo_batch_size")},
}
"""``--ppo-recipe``: ``normalized`` (the budgets' default) or ``plain`` (SB3's defaults, the
``Budget`` field defaults: the recipe of every benchmark before 2026-12-02, whose
``benchmark.json`` lacks these keys)."""

BUDGETS = {
    "smoke": Budget(
        "smoke",
        2,
        2048,
        eval_tasks=4,
        eval_episodes=2,
        max_steps=2,
        lr_grid=(0.1,),
        lr_tasks=2,
        config_overrides=("meta_batch_size=4", "episodes_per_task=4"),
        **PPO_RECIPES["normalized"],
    ),
    "full": Budget(
        "full",
        None,
        250_000,
        eval_tasks=40,
        eval_episodes=20,
        max_steps=3,
        lr_grid=(0.01, 0.03, 0.1, 0.3, 1.0),
        lr_tasks=10,
        # RL Baselines3 Zoo's MuJoCo recipe. A probe on AntDir's oracle (600k steps, one seed):
        # normalization and minibatch 256 reached +196 per training episode where plain PPO with
        # minibatch 64 reached +120, in 0.54x the time (docs/results.md, "The benchmark protocol").
        **PPO_RECIPES["normalized"],
    ),
}

# Meta-World's evaluation (its docs/evaluation): 40 test goals per test class (ML1: 40 of its
# 50 test goals; ML10 and ML45: 5 test classes x 40 = 200), adapted with the meta-training's
# 10 episodes, scored after 0..2 steps. Meta-World scores 3 separate episodes of the adapted
# policy; here the 10 episodes sampled with the adapted parameters are scored (the same
# distribution, a lower-variance estimate).
BUDGETS["metaworld-ml1"] = replace(BUDGETS["full"], name="metaworld-ml1", eval_episodes=10, max_steps=2)
BUDGETS["metaworld-ml10"] = replace(BUDGETS["metaworld-ml1"], name="metaworld-ml10", eval_tasks=200)


def get_budget(name: str) -> Budget:
    """A named budget, or ValueError naming the choices."""
    if name not in BUDGETS:
        raise ValueError(f"Unknown budget {name!r}; choose one of {', '.join(BUDGETS)}.")
    return BUDGETS[name]


def _adapter(policy: Policy, config: TrainConfig, fast_lr: float) -> InnerLoop:
    """The inner step every method is fine-tuned with (MAML's, plain estimator, on the CPU)."""
    return InnerLoop(
        policy=policy,
        fast_lr=fast_lr,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        normalize_advantages=config.normalize_advantages,
    )


def _family_env(config: TrainConfig, oracle: bool) -> Any:
    """The family env the sampler steps (the oracle's sees the task)."""
    if oracle:
        return TaskObservationEnv(config.family, **config.env_kwargs)
    return make_family(config.family, **config.env_kwargs)


def _horizon(config: TrainConfig) -> int:
    env = make_family(config.family, **config.env_kwargs)
    horizon = config.horizon or (env.spec.max_episode_steps if env.spec is not None else None)
    if not horizon:
        raise ValueError(f"{config.family} has no registered episode length: set `horizon` in the config.")
    return int(horizon)


def choose_step_size(
    policy: Policy, config: TrainConfig, env: Any, grid: Sequence[float], num_tasks: int, episodes: int, seed: int
) -> tuple[float, dict[str, float]]:
    """The step size in ``grid`` with the best mean one-step return on training tasks.

    Returns:
        ``(best step size, {step size: one-step return})``.
    """
    if len(grid) == 1:
        return float(grid[0]), {}
    seed_family(env, seed)
    tasks = sample_tasks(env, num_tasks)
    scores = {}
    sampler = Sampler(copy.deepcopy(env), policy, config.horizon or _horizon(config), seed + 1)
    try:
        for lr in grid:
            sampler.reseed(seed + 1)  # every step size sees the same episodes before adapting
            with torch.no_grad():
                scores[str(lr)] = float(
                    adaptation_returns(policy, _adapter(policy, config, lr), sampler, tasks, episodes, max_steps=1)[
                        1
                    ].mean()
                )
    finally:
        sampler.close()
    best = max(grid, key=lambda lr: scores[str(lr)])
    return float(best), scores


def _load_maml(run_dir: Path, config: TrainConfig) -> tuple[Policy, TrainConfig, list[dict[str, Any]]]:

    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    saved = config_from_dict(state["config"])
    if saved.family != config.family:
        raise CheckpointError(
            f"{run_dir} was trained on {saved.family}, the benchmark is on {config.family}: pass runs of the same "
            "family."
        )
    policy = build_policy(saved, make_family(saved.family, **saved.env_kwargs))
    policy.load_state_dict(state["policy"])
    rows = read_csv(run_dir / "progress.csv") if (run_dir / "progress.csv").exists() else []
    return policy, saved, rows


def baseline_file(out: str | Path, seed: int, method: str) -> Path:
    """Where a benchmark in ``out`` keeps seed ``seed``'s trained PPO baseline ``method``.

    The policy as metarl evaluates it (``reference_methods.load_baseline`` reads it), so a
    later evaluation with other settings need not train it again.
    """
    return Path(out) / "baselines" / f"seed{seed}" / f"{method}.pt"


def _say(seed: int, what: str, seconds: float | None = None) -> None:
    """One progress line on stderr (the benchmark runs for minutes to hours, seeds in parallel)."""
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    print(f"benchmark seed {seed}: {what}{took}", file=sys.stderr, flush=True)


REEVALUATION_RTOL = 1e-3
"""How far a reused benchmark's random baseline, evaluated again, may be from its returns, relative to each.

Another CPU rounds the inner step's gradient differently (its BLAS kernels), which moves a
return by ~1e-5 of itself (Meta-World reach: at most 0.04 of ~800 over 120 scores, found
2026-12-03); a changed evaluation (other tasks, noise or policy) moves them by whole percents.
On some pairs of hosts the rounding flips a few episodes of a chaotic family (Meta-World reach,
2026-12-07: up to 76 on 22 of 120 scores), which this refuses: copied returns are reusable on
one machine only (kept policies, evaluated again, on any)."""


def check_reevaluation(seed: int, now: list[list[float]], before: list[list[float]]) -> float:
    """The largest difference between the random baseline's returns evaluated now and in the reused benchmark.

    Raises:
        ValueError: They differ by more than ``REEVALUATION_RTOL`` of a return, or in shape: the
            evaluation has changed since the reused benchmark was written.
    """
    a, b = np.asarray(now, dtype=float), np.asarray(before, dtype=float)
    if a.shape != b.shape or not np.allclose(a, b, rtol=REEVALUATION_RTOL, atol=1e-6):
        gap = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
        raise ValueError(
            f"Seed {seed}: the random baseline evaluated now differs from the benchmark whose baselines are "
            f"reused (largest difference {gap:.3g}, shapes {a.shape} and {b.shape}), so the evaluation has changed "
            "since it was written; run the benchmark without --baselines-from."
        )
    return float(np.max(np.abs(a - b), initial=0.0))


def run_seed(
    config: TrainConfig,
    budget: Budget,
    seed: int,
    out: str,
    maml_run: str | None = None,
    progress: bool = False,
    threads: int = 1,
    reuse: dict[str, Any] | None = None,
    reuse_methods: Sequence[str] = ("pretrained", "oracle"),
    resume: bool = False,
) -> dict[str, Any]:
    """Train (or load) every method for one seed and evaluate them; safe to run in a worker process.

    With ``resume`` (a benchmark continued after a failure) what the interrupted attempt left
    in ``out`` is used: MAML continues from ``runs/maml-seed<k>``'s last checkpoint, and a PPO
    baseline saved in ``baselines/`` is loaded instead of trained.

    With ``reuse`` (this seed's entry of an earlier ``benchmark.json`` with the same settings,
    ``reusable_baselines``) the PPO baselines in ``reuse_methods`` are not trained again: their
    policies, which ``run_benchmark`` copies into ``out/baselines/``, are loaded and evaluated
    here, so every method is evaluated on this machine. For a benchmark written before its
    policies were kept, their returns are copied instead, and the random baseline is evaluated
    again and must come out the same (``check_reevaluation``), the check that the evaluation
    itself has not changed since.

    Returns:
        ``{"seed", "returns": {method: [steps + 1][tasks]}, "step_sizes", "lr_scores",
        "learning_curve", "seconds"}``, and ``"success"`` (per-task success rates, the same
        layout) for a family that reports success.
    """

    torch.set_num_threads(threads)
    config = replace(config, seed=seed)
    horizon = _horizon(config)
    timings: dict[str, float] = {}
    policies: dict[str, Policy] = {}
    t0 = time.perf_counter()
    if maml_run is not None:
        policies["maml"], trained_config, rows = _load_maml(Path(maml_run), config)
        maml_lr = trained_config.fast_lr
        maml_config = trained_config.to_dict()
    else:
        run_dir = Path(out) / "runs" / f"maml-seed{seed}"
        if resume and (run_dir / "checkpoints" / "last.pt").is_file():
            trainer = Trainer.resume(run_dir, progress=progress)
            _say(seed, f"continuing MAML in {run_dir} from iteration {trainer.iteration}")
            trainer.train()
            rows = read_csv(run_dir / "progress.csv")  # every iteration's row, not only this call's
        else:
            cfg = replace(
                config,
                num_iterations=budget.maml_iterations or config.num_iterations,
                checkpoint_every=max(1, config.checkpoint_every),
            )
            trainer = Trainer(cfg.validate(), run_dir, progress=progress)
            rows = trainer.train()
        policies["maml"], maml_lr = trainer.policy.cpu(), trainer.config.fast_lr
        maml_config = trainer.config.to_dict()
    timings["maml"] = time.perf_counter() - t0
    _say(
        seed,
        f"{LEARNER_LABELS.get(maml_config['learner'], 'MAML')} "
        f"{'loaded from ' + str(maml_run) if maml_run else 'trained'} ({len(rows)} iterations)",
        timings["maml"],
    )
    hidden = tuple(config.hidden_sizes)
    if config.activation != "tanh":
        raise ValueError("The PPO baselines use tanh MLPs: benchmark a config with activation: tanh.")
    reused = tuple(reuse_methods) if reuse is not None else ()
    # a reused baseline without its policy (a benchmark from before they were kept): its returns are copied
    copied = tuple(m for m in reused if not baseline_file(out, seed, m).is_file())
    for name, oracle in (("pretrained", False), ("oracle", True)):
        if name in copied:
            continue
        kept = baseline_file(out, seed, name)
        if (resume or name in reused) and kept.is_file():  # trained with these settings (run_benchmark checks)
            policies[name], kept_info = load_baseline(kept)
            if kept_info.get("timesteps") != budget.timesteps(name):
                raise ValueError(
                    f"{kept} was trained with {kept_info.get('timesteps')} env steps, this benchmark's {name} with "
                    f"{budget.timesteps(name)}: delete the file to train it again, or pick another --out."
                )
            timings[name] = 0.0
            why = "reused from --baselines-from" if name in reused else "trained before the benchmark was interrupted"
            _say(seed, f"PPO {name} loaded from {kept} ({why})")
            continue
        t = time.perf_counter()
        _say(seed, f"training PPO {name} ({budget.timesteps(name):,} env steps) ...")
        model = train_ppo(
            config.family,
            horizon,
            budget.timesteps(name),
            seed,
            hidden,
            config.init_std,
            oracle=oracle,
            env_kwargs=config.env_kwargs,
            normalize=budget.ppo_normalize,
            batch_size=budget.ppo_batch_size,
        )
        ppo_policy = sb3_to_metarl(model, hidden)
        policies[name] = ppo_policy
        timings[name] = time.perf_counter() - t
        info = {"method": name, "seed": seed, "family": config.family, "env_kwargs": dict(config.env_kwargs)}
        info |= {"horizon": horizon, "timesteps": budget.timesteps(name), "ppo_normalize": budget.ppo_normalize}
        save_baseline(baseline_file(out, seed, name), ppo_policy, info | {"ppo_batch_size": budget.ppo_batch_size})
        _say(seed, f"PPO {name} trained", timings[name])
    torch.manual_seed(seed_streams(seed)["init"] + 1)
    policies["random"] = build_policy(config, make_family(config.family, **config.env_kwargs))

    returns: dict[str, list[list[float]]] = {}
    success: dict[str, list[list[float]]] = {}
    step_sizes: dict[str, float] = {"maml": maml_lr}
    lr_scores: dict[str, dict[str, float]] = {}
    reevaluation_gap: float | None = None
    # Each method's evaluation is seeded on its own, so the order changes no number; the check of
    # copied returns runs first, before the other methods' evaluations it would otherwise waste.
    order = ("random", *(m for m in METHODS if m != "random")) if copied else METHODS
    for name in order:
        if name in copied:
            assert reuse is not None
            returns[name], step_sizes[name] = reuse["returns"][name], reuse["step_sizes"][name]
            lr_scores[name] = reuse["lr_scores"].get(name, {})
            if "success" in reuse:
                success[name] = reuse["success"][name]
            timings[name] = 0.0
            continue
        _say(seed, f"evaluating {name} after 0..{budget.max_steps} steps on {budget.eval_tasks} held-out tasks ...")
        policy = policies[name].float()
        env = _family_env(config, oracle=name == "oracle")
        if name != "maml":
            train_seed = seed_streams(seed)["tasks"] + 17
            step_sizes[name], lr_scores[name] = choose_step_size(
                policy, config, env, budget.lr_grid, budget.lr_tasks, budget.eval_episodes, train_seed
            )
        seed_family(env, EVAL_TASK_SEED)
        tasks = sample_test_tasks(env, budget.eval_tasks)  # the meta-test split where the family has one
        sampler = Sampler(env, policy, horizon, EVAL_SAMPLER_SEED)
        t = time.perf_counter()
        with torch.no_grad():
            r, rate = adaptation_scores(
                policy,
                _adapter(policy, config, step_sizes[name]),
                sampler,
                tasks,
                budget.eval_episodes,
                budget.max_steps,
            )
        sampler.close()  # its env copies (Meta-World: ~19 MB each) before the next method's
        timings[f"eval_{name}"] = time.perf_counter() - t
        returns[name] = r.tolist()
        if rate is not None:
            success[name] = rate.tolist()
        if copied and name == "random":
            assert reuse is not None
            reevaluation_gap = check_reevaluation(seed, returns[name], reuse["returns"]["random"])
    curve = {
        "iteration": [int(r["iteration"]) for r in rows],
        "pre_return": [float(r["pre_return"]) for r in rows],
        "post_return": [float(r["post_return"]) for r in rows],
    }
    if rows and "post_success" in rows[0]:
        curve |= {key: [float(r[key]) for r in rows] for key in ("pre_success", "post_success")}
    return {
        "seed": seed,
        "returns": {m: returns[m] for m in METHODS},
        **({"success": {m: success[m] for m in METHODS if m in success}} if success else {}),
        "step_sizes": {m: step_sizes[m] for m in METHODS},
        "lr_scores": {m: lr_scores[m] for m in METHODS if m in lr_scores},
        "learning_curve": curve,
        "maml_config": maml_config,
        "seconds": timings,
        **({"baselines_reused": list(reused)} if reused else {}),
        # the reused baselines whose returns were copied (no policy kept), not evaluated here
        **({"baselines_returns_copied": list(copied)} if copied else {}),
        # how far the random baseline evaluated again came from the reused benchmark's (within REEVALUATION_RTOL)
        **({"random_reevaluation_gap": reevaluation_gap} if reevaluation_gap is not None else {}),
    }


# What the baselines' training and evaluation depend on: a benchmark that differs in none of these
# gets the same pretrained, oracle and random returns.
BASELINE_CONFIG_KEYS = (
    "family",
    "env_kwargs",
    "horizon",
    "hidden_sizes",
    "activation",
    "init_std",
    "gamma",
    "gae_lambda",
    "normalize_advantages",
)
BASELINE_BUDGET_KEYS = ("eval_tasks", "eval_episodes", "max_steps", "lr_grid", "lr_tasks")
"""Budget settings every baseline depends on; each PPO baseline also on its own steps (``Budget.timesteps``)."""


def reusable_baselines(
    path: str | Path, config: TrainConfig, budget: Budget, seeds: Sequence[int]
) -> tuple[list[dict | None], tuple[str, ...]]:
    """The per-seed entries of the benchmark at ``path`` (its ``benchmark.json`` or folder), checked reusable.

    A PPO baseline is reusable when the earlier benchmark trained it with as many steps as
    this one would, so a benchmark that only raises ``oracle_timesteps`` reuses the pretrained
    baseline and trains the oracle again.

    Returns:
        ``(entries, methods)``: one entry per seed in ``seeds`` (``None`` for a seed the earlier
        benchmark lacks: its baselines are trained, so a benchmark can reuse the seeds that
        ran and add more), and the PPO baselines reused (their policies, or their returns).

    Raises:
        ValueError: No such file, or it differs from this benchmark in a setting the baselines
            depend on (named), or trained neither PPO baseline with this benchmark's steps, or
            shares no seed with it.
    """
    file = Path(path) / "benchmark.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ValueError(f"--baselines-from {path}: no benchmark.json there.")
    try:
        old = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--baselines-from {file} is not valid JSON ({e}).") from e
    new_config, new_budget = config.to_dict(), asdict(budget)
    for key in BASELINE_CONFIG_KEYS:
        if old["config"].get(key) != new_config[key]:
            raise ValueError(
                f"--baselines-from {file}: its {key} is {old['config'].get(key)!r}, this benchmark's "
                f"{new_config[key]!r}; the baselines would differ. Benchmark with the same settings or train the "
                "baselines again."
            )
    for key in BASELINE_BUDGET_KEYS:
        if list(np.atleast_1d(old["budget"].get(key))) != list(np.atleast_1d(new_budget[key])):
            raise ValueError(
                f"--baselines-from {file}: its budget's {key} is {old['budget'].get(key)!r}, this benchmark's "
                f"{new_budget[key]!r}. Use the same budget (and --ppo-timesteps)."
            )
    for key, before in PPO_RECIPES["plain"].items():  # a benchmark.json without the key: the plain recipe
        if (was := old["budget"].get(key, before)) != new_budget[key]:
            raise ValueError(
                f"--baselines-from {file}: its PPO baselines were trained with {key}={was!r}, "
                f"this benchmark's recipe has {new_budget[key]!r}; pass --ppo-recipe "
                f"{'plain' if was == before else 'normalized'} to reuse them, or run without --baselines-from."
            )
    old_steps = {"pretrained": old["budget"].get("ppo_timesteps")}
    old_steps["oracle"] = old["budget"].get("oracle_timesteps") or old_steps["pretrained"]
    methods = tuple(m for m in ("pretrained", "oracle") if old_steps[m] == budget.timesteps(m))
    if not methods:
        raise ValueError(
            f"--baselines-from {file}: its budget's ppo_timesteps is {old_steps['pretrained']!r} (oracle "
            f"{old_steps['oracle']!r}), this benchmark's {budget.timesteps('pretrained')!r} (oracle "
            f"{budget.timesteps('oracle')!r}): neither PPO baseline would be the same. Use the same "
            "--ppo-timesteps (or change only --oracle-timesteps)."
        )
    if old.get("eval_task_seed") != EVAL_TASK_SEED:
        raise ValueError(
            f"--baselines-from {file} used other held-out tasks (eval_task_seed {old.get('eval_task_seed')})."
        )
    by_seed = {s["seed"]: s for s in old["per_seed"]}
    if not any(s in by_seed for s in seeds):
        raise ValueError(
            f"--baselines-from {file} has none of seeds {', '.join(map(str, seeds))} (it has {sorted(by_seed)})."
        )
    return [by_seed.get(s) for s in seeds], methods


def summarize(
    per_seed: list[dict[str, Any]], reps: int = 2000, key: str = "returns"
) -> dict[str, list[dict[str, Any]]]:
    """Per method and adaptation step: mean, IQM, bootstrap CIs over ``[seeds, tasks]`` of ``key``
    (``"returns"``, or ``"success"``: the per-task success rates)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in METHODS:
        scores = np.array([s[key][name] for s in per_seed])  # [seeds, steps + 1, tasks]
        out[name] = [{"steps": k, **asdict(aggregate(scores[:, k], reps=reps, seed=k))} for k in range(scores.shape[1])]
    return out


def claim(
    summary: dict[str, list[dict[str, Any]]],
    step: int = 1,
    per_seed: list[dict[str, Any]] | None = None,
    reps: int = 2000,
    key: str = "returns",
) -> dict[str, Any]:
    """Does MAML after ``step`` steps beat pretrained and random with non-overlapping 95% CIs?

    With ``per_seed`` also the paired comparison: the bootstrap interval of MAML's return minus
    the other method's on the same held-out tasks (every method is evaluated on the same tasks
    with the same random numbers), which the spread of the tasks' own difficulty does not widen.
    ``key="success"`` makes the same claim on success rates (``summary`` their summary).
    """
    if len(summary["maml"]) <= step:
        return {}
    maml = summary["maml"][step]
    result: dict[str, Any] = {}
    for other in ("pretrained", "random"):
        o = summary[other][step]
        result[other] = {
            "maml_mean": maml["mean"],
            "other_mean": o["mean"],
            "non_overlapping": maml["mean_ci"][0] > o["mean_ci"][1],
        }
        if per_seed is not None:
            diff = np.array([np.subtract(s[key]["maml"][step], s[key][other][step]) for s in per_seed])
            paired = aggregate(diff, reps=reps, seed=step)
            result[other]["paired_difference"] = {"mean": paired.mean, "mean_ci": list(paired.mean_ci)}
    return result


def claim_text(
    verdict: dict[str, Any], what: str = "", scale: float = 1.0, unit: str = "", learner: str = "MAML"
) -> str:
    """The claim's lines for ``benchmark.md`` (``what``: e.g. ``" success rate"``; values times ``scale``;
    ``learner``: the meta-learner's name, see ``learner_label``)."""
    lines = []
    for k, v in verdict.items():
        line = (
            f"- {learner}{what} after one step {scale * v['maml_mean']:.2f}{unit} vs {k} {scale * v['other_mean']:.2f}"
            f"{unit}: 95% CIs {'do not overlap' if v['non_overlapping'] else 'OVERLAP'}."
        )
        if "paired_difference" in v:
            low, high = (scale * x for x in v["paired_difference"]["mean_ci"])
            mean = scale * v["paired_difference"]["mean"]
            line += f" Paired over the same tasks, {learner} minus {k}: {mean:+.2f}{unit} [{low:+.2f}, {high:+.2f}]."
        lines.append(line)
    return "\n".join(lines)


def format_table(summary: dict[str, list[dict[str, Any]]], title: str, labels: dict[str, str] | None = None) -> str:
    """Markdown: one row per method (named by ``labels`` where given), mean [95% CI] and IQM per adaptation step."""
    steps = len(next(iter(summary.values())))
    head = (
        "| method | " + " | ".join(f"{k} step{'s' if k != 1 else ''}: mean [95% CI] | IQM" for k in range(steps)) + " |"
    )
    lines = [f"### {title}", "", head, "|---|" + "---:|---:|" * steps]
    for name, rows in summary.items():
        cells = [f"{r['mean']:.2f} [{r['mean_ci'][0]:.2f}, {r['mean_ci'][1]:.2f}] | {r['iqm']:.2f}" for r in rows]
        lines.append(f"| {(labels or {}).get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learner_label(per_seed: list[dict[str, Any]]) -> str:
    """The meta-learner's name for reports: "MAML" for MAML-TRPO, "ProMP", ... ("/"-joined when seeds differ).

    Read from each seed's training config; results written before it was recorded were MAML-TRPO.
    """
    names = {(s.get("maml_config") or {}).get("learner") or "maml-trpo" for s in per_seed}
    return "/".join(sorted(LEARNER_LABELS.get(n, n) for n in names))


def maml_labels(per_seed: list[dict[str, Any]]) -> dict[str, str]:
    """``format_table``'s row names: the ``maml`` row says which meta-learner it is when that is not MAML-TRPO."""
    label = learner_label(per_seed)
    return {} if label == "MAML" else {"maml": f"maml ({label})"}


def maml_iterations(per_seed: list[dict[str, Any]]) -> list[int]:
    """MAML's meta-iterations in each seed (the last iteration of its learning curve; 0 without one)."""
    return [max(s["learning_curve"]["iteration"], default=0) for s in per_seed]


def seed_means(per_seed: list[dict[str, Any]], method: str, step: int) -> list[float]:
    """``method``'s mean return over held-out tasks after ``step`` adaptation steps, per seed."""
    return [float(np.mean(s["returns"][method][step])) for s in per_seed if len(s["returns"][method]) > step]


def describe_budget(per_seed: list[dict[str, Any]], budget: Budget) -> str:
    """One line: MAML's meta-iterations per seed (from its learning curve) and the PPO budget."""
    iterations = "/".join(map(str, maml_iterations(per_seed)))
    seeds = "/".join(str(s["seed"]) for s in per_seed)
    if budget.timesteps("oracle") == budget.ppo_timesteps:
        ppo = f"PPO pretrained and oracle {budget.ppo_timesteps:,} env steps each per seed"
    else:
        ppo = f"PPO pretrained {budget.ppo_timesteps:,} and oracle {budget.timesteps('oracle'):,} env steps per seed"
    if budget.ppo_normalize:
        ppo += f" (observations and rewards normalized, minibatch {budget.ppo_batch_size})"
    return (
        f"Training: {learner_label(per_seed)} {iterations} meta-iterations (seeds {seeds}); "
        f"{ppo}; "
        f"evaluation on {budget.eval_tasks} held-out tasks x {budget.eval_episodes} episodes after "
        f"0..{budget.max_steps} steps."
    )


def per_seed_means(per_seed: list[dict[str, Any]], step: int = 1) -> str:
    """One line per method: its mean return after ``step`` adaptation steps in each seed."""
    lines = [
        f"Per-seed means after {step} step{'s' if step != 1 else ''} (seeds "
        f"{'/'.join(str(s['seed']) for s in per_seed)}):"
    ]
    for name in METHODS:
        lines.append(f"- {name}: " + " / ".join(f"{m:.2f}" for m in seed_means(per_seed, name, step)))
    return "\n".join(lines)


def run_benchmark(
    config: str | TrainConfig,
    budget: str | Budget = "smoke",
    seeds: Sequence[int] = (0,),
    out: str | Path = "runs/benchmark",
    overrides: Sequence[str] = (),
    maml_runs: Sequence[str] | None = None,
    jobs: int = 1,
    ppo_timesteps: int | None = None,
    progress: bool = False,
    baselines_from: str | Path | None = None,
    oracle_timesteps: int | None = None,
    ppo_recipe: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the protocol of the module docstring and write its outputs to ``out``.

    Args:
        config: A packaged config name, YAML path or ``TrainConfig``.
        budget: ``smoke`` (CI, under a minute) or ``full`` (the published protocol), or a ``Budget``.
        seeds: Training seeds (one MAML run and one of each baseline per seed).
        out: Output folder (refused if it already holds a benchmark).
        overrides: ``key=value`` config overrides.
        maml_runs: Existing MAML run directories, one per seed, instead of training.
        jobs: Seeds run in parallel processes (one torch thread each).
        ppo_timesteps: Override the budget's PPO steps (both baselines').
        progress: Show MAML's progress bar.
        baselines_from: An earlier benchmark (folder or ``benchmark.json``) with the same
            settings whose PPO baselines to reuse instead of training them (``run_seed``).
        oracle_timesteps: The oracle's PPO steps, when it needs more than the pretrained
            baseline to be a credible upper reference (default: ``ppo_timesteps``).
        ppo_recipe: A key of ``PPO_RECIPES`` (default: the budget's).
        resume: Continue the unfinished benchmark in ``out`` (called again with the same
            arguments): the seeds it finished are kept, the others run (``run_seed``).

    Returns:
        The report written to ``benchmark.json``.

    Raises:
        ValueError: Bad budget, seeds or run list, or ``resume`` with other settings than the
            unfinished benchmark's; FileExistsError: ``out`` holds a benchmark (or, without
            ``resume``, an unfinished one). A seed's own error is raised once the seeds running
            beside it have finished and been kept.
    """
    b = get_budget(budget) if isinstance(budget, str) else budget
    if ppo_timesteps is not None:
        if ppo_timesteps < 1:
            raise ValueError(f"ppo_timesteps must be >= 1, got {ppo_timesteps}.")
        b = replace(b, ppo_timesteps=ppo_timesteps)
    if oracle_timesteps is not None:
        if oracle_timesteps < 1:
            raise ValueError(f"oracle_timesteps must be >= 1, got {oracle_timesteps}.")
        b = replace(b, oracle_timesteps=oracle_timesteps)
    if ppo_recipe is not None:
        if ppo_recipe not in PPO_RECIPES:
            raise ValueError(f"Unknown PPO recipe {ppo_recipe!r}; choose one of {', '.join(PPO_RECIPES)}.")
        b = replace(b, **PPO_RECIPES[ppo_recipe])
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}.")
    if maml_runs is not None and len(maml_runs) != len(seeds):
        raise ValueError(f"Pass one MAML run per seed: {len(maml_runs)} runs for seeds {seeds}.")
    cfg = (
        config
        if isinstance(config, TrainConfig)
        else load_config(config, [*b.config_overrides, "tensorboard=false", "torch_threads=1", *overrides])
    )
    for run in maml_runs or []:  # fail before anything is written
        load_checkpoint(Path(run) / "checkpoints" / "last.pt")
    reuse: list[dict | None] = [None] * len(seeds)
    reuse_methods: tuple[str, ...] = ()
    if baselines_from is not None:
        reuse, reuse_methods = reusable_baselines(baselines_from, cfg, b, seeds)
    out = Path(out)
    settings = json.loads(
        json.dumps(
            {
                "config": cfg.to_dict(),
                "budget": asdict(b),
                "seeds": seeds,
                "maml_runs": list(maml_runs) if maml_runs is not None else None,
                "baselines_from": str(baselines_from) if baselines_from is not None else None,
            }
        )
    )
    kept_dir = out / KEPT_SEEDS_DIR
    taken = f"{out} already holds a benchmark; pick another --out or delete it (results are never overwritten)."
    with RunLock(out, "benchmark"):  # a second benchmark into the same folder waits for none: it is refused
        if (out / "progress.csv").exists() or (out / "checkpoints").exists():
            raise FileExistsError(
                f"{out} holds a training run; a benchmark writes its own folder: pick another --out "
                "(pass the run with --maml-runs to evaluate it)."
            )
        if (out / "benchmark.json").exists():
            raise FileExistsError(taken)
        if resume:
            kept = kept_seeds(out, settings)
        elif (kept_dir / "settings.json").exists():
            finished = sorted(kept_seeds(out, None))
            raise FileExistsError(
                f"{out} holds an unfinished benchmark (seeds finished: {', '.join(map(str, finished)) or 'none'}); "
                "continue it by running the same command with --resume, or pick another --out."
            )
        elif (out / "runs").exists() or (out / "baselines").exists():
            raise FileExistsError(taken)
        else:
            kept = {}
            kept_dir.mkdir(parents=True, exist_ok=True)
            _write_json(kept_dir / "settings.json", settings)
        t0 = time.perf_counter()
        if baselines_from is not None:  # the reused baselines' policies, which run_seed evaluates, travel along
            source = Path(baselines_from) if Path(baselines_from).is_dir() else Path(baselines_from).parent
            for s, entry in zip(seeds, reuse):
                for m in reuse_methods if entry is not None else ():
                    if baseline_file(source, s, m).is_file() and not baseline_file(out, s, m).is_file():
                        baseline_file(out, s, m).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(baseline_file(source, s, m), baseline_file(out, s, m))
        runs = list(maml_runs) if maml_runs is not None else [None] * len(seeds)
        results: dict[int, dict[str, Any]] = dict(kept)
        for s in kept:
            _say(s, f"kept from the interrupted benchmark ({kept_dir / f'seed{s}.json'})")
        todo = [i for i, s in enumerate(seeds) if s not in kept]
        failed: dict[int, BaseException] = {}

        def seed_args(i: int, show: bool) -> tuple[Any, ...]:  # _run_seed_and_keep's, positional for the pool
            return (str(kept_dir), cfg, b, seeds[i], str(out), runs[i], show, 1, reuse[i], reuse_methods, resume)

        if jobs > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
                futures = {seeds[i]: pool.submit(_run_seed_and_keep, *seed_args(i, False)) for i in todo}
                for s, future in futures.items():  # every seed runs to its end: a failing one stops no other
                    try:
                        results[s] = future.result()
                    except Exception as e:
                        failed[s] = e
                    except KeyboardInterrupt as e:  # Ctrl-C reaches the workers too: they stop where they are
                        failed[s] = e
                        break
        else:
            for i in todo:
                try:
                    results[seeds[i]] = _run_seed_and_keep(*seed_args(i, progress))
                except BaseException as e:  # Ctrl-C too: say what is kept before it propagates
                    failed[seeds[i]] = e
                    break
        if failed:
            finished = sorted(kept_seeds(out, None))  # from the files: a worker may have finished meanwhile
            interrupted = any(isinstance(e, KeyboardInterrupt) for e in failed.values())
            print(
                f"benchmark: {'interrupted' if interrupted else 'seed(s) ' + ', '.join(map(str, failed)) + ' failed'}; "
                f"the finished seeds ({', '.join(map(str, finished)) or 'none'}) are kept in {kept_dir}. "
                f"{'Run' if interrupted else 'Fix the cause and run'} the same command with --resume to run only the "
                "others.",
                file=sys.stderr,
                flush=True,
            )
            raise next(iter(failed.values()))
        per_seed = [results[s] for s in seeds]
        summary = summarize(per_seed)
        success = summarize(per_seed, key="success") if all("success" in s for s in per_seed) else None
        verdict: dict[str, Any] = claim(summary, per_seed=per_seed)
        success_verdict = claim(success, per_seed=per_seed, key="success") if success else {}
        title = (
            f"{cfg.family}: {len(seeds)} seed(s) x {b.eval_tasks} held-out tasks x {b.eval_episodes} episodes "
            f"({b.name} budget)"
        )
        report: dict[str, Any] = {
            "family": cfg.family,
            "budget": asdict(b),
            "seeds": seeds,
            "config": cfg.to_dict(),
            "maml_runs": maml_runs,
            **({"baselines_from": str(baselines_from)} if baselines_from is not None else {}),
            "maml_iterations": maml_iterations(per_seed),  # what each seed's MAML ran (config: what --config says)
            "eval_task_seed": EVAL_TASK_SEED,
            "summary": summary,
            **({"success_summary": success} if success else {}),
            "claim_one_step": verdict,
            **({"claim_one_step_success": success_verdict} if success_verdict else {}),
            "per_seed": per_seed,
            **({"resumed": {"kept_seeds": sorted(kept)}} if resume else {}),
            "wall_seconds": time.perf_counter() - t0,  # of this call (a resumed benchmark's last part)
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        }
        (out / "benchmark.json").write_text(json.dumps(report, indent=1))
        learner, labels = learner_label(per_seed), maml_labels(per_seed)
        text = format_table(summary, title, labels)
        if success:
            text += "\n" + format_table(success, "Success rate (episodes that succeed at any step)", labels)
        if verdict:
            text += "\n" + claim_text(verdict, learner=learner) + "\n"
        if success_verdict:
            text += claim_text(success_verdict, " success rate", 100.0, "%", learner=learner) + "\n"
        text += "\n" + describe_budget(per_seed, b) + "\n"
        text += "\n" + per_seed_means(per_seed, step=1) + "\n"
        text += (
            "\nStep sizes (MAML: its meta-training step; baselines: best one-step return on training tasks): "
            + ", ".join(f"{m} " + "/".join(f"{s['step_sizes'][m]:g}" for s in per_seed) for m in METHODS)
            + "\n"
        )
        (out / "benchmark.md").write_text(text)
        plot_benchmark(summary, per_seed, out, cfg.family, success, learner=learner, labels=labels)
        shutil.rmtree(kept_dir)  # benchmark.json holds every seed now
        return report


KEPT_SEEDS_DIR = "seeds"
"""The folder of ``out`` where an unfinished benchmark keeps its settings and each finished seed."""


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a crash leaves the old file or the new one, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _run_seed_and_keep(kept_dir: str, *args: Any) -> dict[str, Any]:
    """``run_seed(*args)``, its result then kept in ``kept_dir/seed<k>.json`` (in the worker that ran it)."""
    entry = run_seed(*args)
    _write_json(Path(kept_dir) / f"seed{entry['seed']}.json", entry)
    return entry


def kept_seeds(out: str | Path, settings: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """The seeds an unfinished benchmark in ``out`` finished: ``{seed: its per-seed entry}``.

    Args:
        out: The benchmark's folder.
        settings: What the benchmark that continues it runs with (config, budget, seeds, MAML
            runs, reused baselines), which must equal the unfinished one's; ``None``: unchecked.

    Raises:
        ValueError: ``out`` holds no unfinished benchmark, or it ran with other settings (named).
    """
    folder = Path(out) / KEPT_SEEDS_DIR
    if not (folder / "settings.json").is_file():
        raise ValueError(
            f"--resume: {out} holds no unfinished benchmark (no {KEPT_SEEDS_DIR}/settings.json); run without "
            "--resume to start one."
        )
    try:
        before = json.loads((folder / "settings.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--resume: {folder / 'settings.json'} is not valid JSON ({e}).") from e
    if settings is not None:
        for key in settings:
            if before.get(key) == settings[key]:
                continue
            old, new = before.get(key), settings[key]
            if isinstance(old, dict) and isinstance(new, dict):
                diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
                what = "; ".join(f"{key} {k}: {old.get(k)!r} before, {new.get(k)!r} now" for k in diff)
            else:
                what = f"{key}: {old!r} before, {new!r} now"
            raise ValueError(
                f"--resume: the unfinished benchmark in {out} ran with other settings ({what}); continue it with the "
                "same command it was started with, or pick another --out."
            )
    kept = {}
    for file in sorted(folder.glob("seed*.json")):
        entry = json.loads(file.read_text())
        kept[int(entry["seed"])] = entry
    return kept
