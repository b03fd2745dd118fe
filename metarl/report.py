"""The documentation's result tables, written from the committed results files.

Every number in the results tables of ``README.md`` and ``docs/*.md`` comes from a file in
``benchmarks/results/`` through this module, so the documents cannot drift from the
results: a block of a Markdown file between two markers, each on a line of its own,

    <!-- generated: KIND NAME -->
    ...
    <!-- end generated -->

is rendered from the results named by ``KIND`` and ``NAME``:

================  ==============================================  =============================
KIND              reads (under the results folder)                renders
================  ==============================================  =============================
``benchmark``     ``NAME/benchmark.json`` (``metarl benchmark``)  mean [95% CI] per method and
                                                                  adaptation step, the claim,
                                                                  per-seed one-step means
``evaluation``    ``NAME/eval.json`` and ``NAME_seed*/eval.json``  mean +- 95% CI per seed
``runs``          ``NAME/seed*/progress.csv``                     last-10-iteration returns
                                                                  before / after adaptation
``learners``      ``learners.json`` (``bench_learners.py``)       return before / after one step
``speed``         ``meta_iteration*.json``                        seconds per meta-iteration
``sampler``       ``mujoco_sampler.json``                         MuJoCo rollout env-steps/s
================  ==============================================  =============================

Per file, ``update_readme(path, results)`` rewrites the blocks and ``check_readme`` reports
the blocks that differ. ``document_paths(root)`` lists the files that carry blocks
(``README.md`` and ``docs/*.md``); ``check_documents`` and ``update_documents`` apply the
two to all of them (``scripts/readme_tables.py`` and its ``--check``, run by the tests).

Example:
    >>> stale = check_documents(document_paths("."), "benchmarks/results")  # doctest: +SKIP
    >>> stale  # file -> names of its blocks that differ from the results; {} when in sync
    {}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from metarl.benchmark import claim, learner_label, maml_iterations, seed_means
from metarl.logger import read_csv

BLOCK = re.compile(r"^(<!-- generated: (\w+) ([\w.-]+) -->\n)(.*?)^(<!-- end generated -->)", re.DOTALL | re.MULTILINE)
OPENING = re.compile(r"^<!-- generated:.*$", re.MULTILINE)
METHOD_LABELS = {
    "maml": "MAML",
    "pretrained": "pretrained (PPO, a new task each episode)",
    "random": "random initialization",
    "oracle": "oracle (PPO that observes the task)",
}
PYTORCH_MAML_RL_HALFCHEETAH_SECONDS = 11.2
"""pytorch-maml-rl's HalfCheetahVel meta-iteration (40 x 20 x 100), measured while planning
(it does not install on current torch): quoted, as ``benchmarks/bench_meta_iteration.py`` says."""


class ReportError(ValueError):
    """A generated block names results that are missing or of an unknown kind, or is malformed."""


def _num(x: float, signed: bool) -> str:
    return f"{x:+.1f}" if signed else f"{x:.1f}"


def _interval(row: dict[str, Any], signed: bool) -> str:
    low, high = row["mean_ci"]
    return f"{_num(row['mean'], signed)} [{_num(low, signed)}, {_num(high, signed)}]"


def _ppo_steps(budget: dict[str, Any]) -> str:
    """The PPO baselines' budget, as the README states it."""
    oracle = budget.get("oracle_timesteps") or budget["ppo_timesteps"]
    if oracle == budget["ppo_timesteps"]:
        text = f"PPO baselines {budget['ppo_timesteps']:,} env steps each"
    else:
        text = f"PPO pretrained {budget['ppo_timesteps']:,} and oracle {oracle:,} env steps"
    return text + (" (normalized observations and rewards)" if budget.get("ppo_normalize") else "")


def render_benchmark(report: dict[str, Any], name: str) -> str:
    """The table of one ``benchmark.json``: method x adaptation steps, mean [95% CI]."""
    summary, per_seed, budget = report["summary"], report["per_seed"], report["budget"]
    signed = any(r["mean_ci"][1] > 0 for rows in summary.values() for r in rows)
    steps = len(summary["maml"])
    iterations = sorted(set(maml_iterations(per_seed)))
    config = report["config"]
    learner = learner_label(per_seed)
    # what the MAML runs trained with (recorded per seed since --maml-runs may differ from --config)
    trained = [s.get("maml_config") or config for s in per_seed]
    batch = "/".join(sorted({f"{c['meta_batch_size']} tasks x {c['episodes_per_task']} episodes" for c in trained}))
    # the meta-gradient estimator, named when a run chose one (null or absent: the learner's own)
    estimators = sorted({c.get("estimator") or "default" for c in trained})
    # warm starts (init_from): the estimator, or other settings, changed midway
    warm = " after a warm start from earlier runs" if any(c.get("init_from") for c in trained) else ""
    named = warm or not set(estimators) <= {"default", "plain"}
    estimator = f" ({'/'.join(estimators)} meta-gradient estimator{warm})" if named else ""
    lines = [
        f"{report['family']}: {len(per_seed)} seed(s) x {budget['eval_tasks']} held-out tasks x "
        f"{budget['eval_episodes']} episodes, "
        f"horizon {config['horizon']}; {learner} {'/'.join(map(str, iterations))} meta-iterations of "
        f"{batch}{estimator}; {_ppo_steps(budget)}; mean [stratified-bootstrap 95% CI] over seeds x tasks; "
        f"`benchmarks/results/{name}/`.",
        "",
        *_method_table(summary, lambda r: _interval(r, signed), steps, learner),
        "",
    ]
    # Recomputed from the per-task returns, so results written before the paired comparison existed get it too.
    verdicts = claim(summary, per_seed=per_seed) if report.get("claim_one_step") else {}
    for other, verdict in verdicts.items():
        word = "do not overlap" if verdict["non_overlapping"] else "OVERLAP"
        d = verdict["paired_difference"]
        lines.append(
            f"- After one step {learner} {_num(verdict['maml_mean'], signed)} vs {other} "
            f"{_num(verdict['other_mean'], signed)}: 95% CIs {word}; paired over the same tasks, {learner} minus "
            f"{other} {d['mean']:+.1f} [{d['mean_ci'][0]:+.1f}, {d['mean_ci'][1]:+.1f}]."
        )
    if steps > 1:
        parts = [
            f"{learner if method == 'maml' and learner != 'MAML' else method} "
            + " / ".join(_num(m, signed) for m in seed_means(per_seed, method, 1))
            for method in METHOD_LABELS
        ]
        lines.append(
            f"- Per-seed means after one step (seeds {' / '.join(str(s['seed']) for s in per_seed)}): "
            + "; ".join(parts)
            + "."
        )
    if "success_summary" in report:
        lines += ["", *_success_lines(report["success_summary"], per_seed, steps, learner)]
    return "\n".join(lines) + "\n"


def _method_table(
    summary: dict[str, list[dict[str, Any]]],
    cell: Callable[[dict[str, Any]], str],
    steps: int,
    learner: str = "MAML",
) -> list[str]:
    """A Markdown table, method x adaptation steps, of ``cell(row)``; the meta-learner's one-step cell in bold
    (its row named ``learner``: "MAML", "ProMP", ...)."""
    lines = [
        "| method | " + " | ".join(f"{k} step{'s' if k != 1 else ''}" for k in range(steps)) + " |",
        "|---|" + "---|" * steps,
    ]
    for method, label in METHOD_LABELS.items():
        cells = [cell(r) for r in summary[method]]
        if method == "maml" and steps > 1:
            cells[1] = f"**{cells[1]}**"
        lines.append(f"| {learner if method == 'maml' else label} | " + " | ".join(cells) + " |")
    return lines


def _percent(row: dict[str, Any]) -> str:
    low, high = row["mean_ci"]
    return f"{100 * row['mean']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def _success_lines(
    success: dict[str, list[dict[str, Any]]], per_seed: list[dict[str, Any]], steps: int, learner: str = "MAML"
) -> list[str]:
    """The success-rate table (episodes that succeed at any step) and its one-step claim, paired too."""
    lines = [
        "Success rate (episodes that succeed at any step), mean [95% CI] over seeds x tasks:",
        "",
        *_method_table(success, _percent, steps, learner),
        "",
    ]
    for other, verdict in claim(success, per_seed=per_seed, key="success").items():
        d, word = verdict["paired_difference"], "do not overlap" if verdict["non_overlapping"] else "OVERLAP"
        lines.append(
            f"- Success after one step: {learner} {100 * verdict['maml_mean']:.1f}% vs {other} "
            f"{100 * verdict['other_mean']:.1f}%: 95% CIs {word}"
            f"; paired, {learner} minus {other} {100 * d['mean']:+.1f} points [{100 * d['mean_ci'][0]:+.1f}, "
            f"{100 * d['mean_ci'][1]:+.1f}]."
        )
    return lines


def render_evaluation(evals: list[tuple[str, dict[str, Any]]]) -> str:
    """``metarl evaluate`` results of one or more runs: mean +- 95% CI per adaptation step."""
    steps = max(len(e["results"]) for _, e in evals)
    lines = [
        "| adaptation steps | " + " | ".join(label for label, _ in evals) + " |",
        "|---|" + "---|" * len(evals),
    ]
    for k in range(steps):
        cells = []
        for _, e in evals:
            r = e["results"][k] if k < len(e["results"]) else None
            cell = "" if r is None else f"{r['mean']:.1f} ± {r['ci95']:.1f}"
            cells.append(f"**{cell}**" if k == 1 and cell else cell)
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    first = evals[0][1]
    lines += [
        "",
        f"{first['num_tasks']} held-out tasks x {first['episodes_per_task']} episodes per run, after "
        f"{first['iteration']} meta-iterations.",
    ]
    return "\n".join(lines) + "\n"


def render_runs(runs: list[tuple[str, list[dict[str, str]]]], last: int = 10) -> str:
    """Per seed: iterations and the mean training return of the last ``last`` iterations."""
    lines = ["| run | meta-iterations | before adaptation | after one step |", "|---|---|---|---|"]
    for label, rows in runs:
        tail = rows[-last:]
        pre = float(np.mean([float(r["pre_return"]) for r in tail]))
        post = float(np.mean([float(r["post_return"]) for r in tail]))
        lines.append(f"| {label} | {rows[-1]['iteration']} | {pre:+.1f} | {post:+.1f} |")
    lines += ["", f"Mean return on each meta-batch's training tasks over the last {last} meta-iterations."]
    return "\n".join(lines) + "\n"


def render_learners(report: dict[str, Any]) -> str:
    """``bench_learners.py``'s table: return before and after one step per learner."""
    summary = report["summary"]
    order = sorted(summary, key=lambda k: -summary[k]["after"]["mean"])
    lines = ["| learner | before | after one step |", "|---|---|---|"]
    for i, learner in enumerate(order):
        after = _interval(summary[learner]["after"], signed=False)
        lines.append(
            f"| {learner} | {summary[learner]['before']['mean']:.1f} | {f'**{after}**' if i == 0 else after} |"
        )
    meta = report["meta"]
    lines += [
        "",
        f"{meta['iterations']} meta-iterations, seeds {', '.join(map(str, meta['seeds']))}, {meta['eval_tasks']} "
        f"held-out tasks x {meta['eval_episodes']} episodes; mean [stratified-bootstrap 95% CI] over seeds x tasks.",
    ]
    return "\n".join(lines) + "\n"


def render_speed(navigation: dict[str, Any], cheetah: dict[str, Any]) -> str:
    """Seconds per meta-iteration from ``bench_meta_iteration.py``, with its references."""
    variants = navigation["variants"]
    default = variants["metarl, curvature every 10th episode, 2 threads"]
    exact = variants["metarl, curvature on all episodes (exact), 2 threads"]
    textbook = variants["reference: textbook third-order HVP, all episodes, 2 threads"]
    quoted = navigation["pytorch_maml_rl_seconds_quoted"]
    s = default["seconds_per_iteration"]
    cs = cheetah["seconds_per_iteration"]
    rows = [
        (
            "2D navigation, default config (20 tasks x 20 episodes x 100 steps, curvature on every 10th episode)",
            f"**{s:.2f}** (sampling {default['sample_seconds']:.2f}, meta-gradient {default['grad_seconds']:.2f}, CG "
            f"{default['cg_seconds']:.2f}, line search {default['line_search_seconds']:.2f})",
            f"pytorch-maml-rl {quoted:.2f} s ({quoted / s:.1f}x); the textbook third-order HVP in the same run "
            f"{textbook['seconds_per_iteration']:.2f} s ({textbook['seconds_per_iteration'] / s:.1f}x)",
        ),
        (
            "2D navigation, exact curvature on all episodes",
            f"{exact['seconds_per_iteration']:.2f}",
            f"pytorch-maml-rl {quoted:.2f} s ({quoted / exact['seconds_per_iteration']:.1f}x)",
        ),
        (
            "HalfCheetahVel, pytorch-maml-rl's setting (40 tasks x 20 episodes x 100 steps)",
            f"**{cs:.1f}** (sampling {cheetah['sample_seconds']:.1f} at "
            f"{cheetah['sampler_env_steps_per_second'] / 1000:.0f}k env-steps/s)",
            f"pytorch-maml-rl {PYTORCH_MAML_RL_HALFCHEETAH_SECONDS:.1f} s "
            f"({PYTORCH_MAML_RL_HALFCHEETAH_SECONDS / cs:.1f}x)",
        ),
    ]
    lines = ["| | seconds per meta-iteration | reference |", "|---|---|---|"] + [
        f"| {a} | {b} | {c} |" for a, b, c in rows
    ]
    return "\n".join(lines) + "\n"


def render_sampler(report: dict[str, Any]) -> str:
    """``bench_mujoco_sampler.py``'s rollout speed: env-steps/s and ratios per robot."""
    lines = [
        "| family | env-steps/s (policy in the loop) | vs open-loop simulator ceiling | vs SyncVectorEnv |",
        "|---|---|---|---|",
    ]
    for robot, r in report["robots"].items():
        lines.append(
            f"| {robot} | {r['batched_sampler']['env_steps_per_second']:,.0f} | {r['ratio_to_ceiling']:.2f}x | "
            f"{r['ratio_to_sync_vector_env']:.1f}x |"
        )
    memory = report["memory"]
    lines += [
        "",
        f"{report['num_envs']} envs ({report['tasks']} tasks x {report['episodes_per_task']} episodes); peak memory of "
        f"an {memory['num_envs']}-env HalfCheetah sampler {memory['peak_rss_mb']:.0f} MB.",
    ]
    return "\n".join(lines) + "\n"


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise ReportError(
            f"{path} is missing: run the benchmark that writes it, or remove its block from the document."
        )
    return json.loads(path.read_text())


def render_block(kind: str, name: str, results: Path) -> str:
    """The Markdown of one generated block (see the module docstring for the kinds).

    Raises:
        ReportError: An unknown kind or missing results.
    """
    renderers: dict[str, Callable[[], str]] = {
        "benchmark": lambda: render_benchmark(_load_json(results / name / "benchmark.json"), name),
        "evaluation": lambda: render_evaluation(_evaluations(results, name)),
        "runs": lambda: render_runs(_runs(results / name)),
        "learners": lambda: render_learners(_load_json(results / "learners.json")),
        "sampler": lambda: render_sampler(_load_json(results / "mujoco_sampler.json")),
        "speed": lambda: render_speed(
            _load_json(results / "meta_iteration.json"), _load_json(results / "meta_iteration_halfcheetah-vel.json")
        ),
    }
    if kind not in renderers:
        raise ReportError(f"Unknown generated block kind {kind!r}; choose one of {', '.join(renderers)}.")
    return renderers[kind]()


def _evaluations(results: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    """``NAME/eval.json`` and ``NAME_seed*/eval.json``, labelled by the seed in their ``config.yaml``."""
    out = []
    for path in [results / name / "eval.json", *sorted(results.glob(f"{name}_seed*/eval.json"))]:
        config = (
            yaml.safe_load((path.parent / "config.yaml").read_text()) if (path.parent / "config.yaml").is_file() else {}
        )
        out.append((f"seed {config.get('seed', '?')}", _load_json(path)))
    return out


def _runs(folder: Path) -> list[tuple[str, list[dict[str, str]]]]:
    paths = sorted(folder.glob("seed*/progress.csv"))
    if not paths:
        raise ReportError(f"No {folder}/seed*/progress.csv: commit the training runs there first.")
    return [(p.parent.name.replace("seed", "seed "), read_csv(p)) for p in paths]


def _blocks(text: str, source: str | Path = "the document") -> list[re.Match[str]]:
    """The generated blocks of ``text``.

    Raises:
        ReportError: An opening marker that starts no well-formed block (a typo in
            ``KIND NAME``, or no ``<!-- end generated -->`` line after it), which would
            otherwise be skipped silently.
    """
    blocks = list(BLOCK.finditer(text))
    starts = {m.start() for m in blocks}
    for marker in OPENING.finditer(text):
        if marker.start() not in starts:
            line = text.count("\n", 0, marker.start()) + 1
            raise ReportError(
                f"{source}, line {line}: {marker.group(0)!r} starts no block; write "
                "'<!-- generated: KIND NAME -->' and end the block with a '<!-- end generated -->' line."
            )
    return blocks


def render_readme(text: str, results: str | Path) -> str:
    """``text`` (a Markdown document) with every generated block rendered anew from ``results``."""
    results = Path(results)
    _blocks(text)
    return BLOCK.sub(lambda m: m.group(1) + render_block(m.group(2), m.group(3), results) + m.group(5), text)


def check_readme(readme: str | Path, results: str | Path) -> list[str]:
    """The ``KIND NAME`` of every block of the Markdown file ``readme`` that differs from ``results``."""
    results = Path(results)
    stale = []
    for m in _blocks(Path(readme).read_text(), readme):
        if render_block(m.group(2), m.group(3), results) != m.group(4):
            stale.append(f"{m.group(2)} {m.group(3)}")
    return stale


def update_readme(readme: str | Path, results: str | Path) -> list[str]:
    """Rewrite the generated blocks of the Markdown file ``readme``; returns the ``KIND NAME`` of those that changed."""
    stale = check_readme(readme, results)
    path = Path(readme)
    if stale:
        path.write_text(render_readme(path.read_text(), results))
    return stale


def document_paths(root: str | Path) -> list[Path]:
    """The Markdown files whose generated blocks are kept in sync: ``README.md`` and ``docs/*.md``.

    Args:
        root: The repository root.

    Returns:
        ``root/README.md`` (when it exists), then ``root/docs/*.md`` in sorted order.
    """
    root = Path(root)
    readme = [root / "README.md"] if (root / "README.md").is_file() else []
    return readme + sorted((root / "docs").glob("*.md"))


def check_documents(paths: Sequence[str | Path], results: str | Path) -> dict[Path, list[str]]:
    """``check_readme`` for every file of ``paths``.

    Returns:
        For each file with blocks that differ from ``results``, the ``KIND NAME`` of those
        blocks; an empty dict when every file is in sync.

    Raises:
        ReportError: A block names missing results or an unknown kind, or is malformed.
        OSError: A file cannot be read.
    """
    stale = {Path(p): check_readme(p, results) for p in paths}
    return {p: blocks for p, blocks in stale.items() if blocks}


def update_documents(paths: Sequence[str | Path], results: str | Path) -> dict[Path, list[str]]:
    """Rewrite the generated blocks of every file of ``paths`` from ``results``.

    Every file is rendered before any is written, so an error in one file (missing
    results, say) leaves all of them unchanged.

    Returns:
        For each file that changed, the ``KIND NAME`` of its rewritten blocks.

    Raises:
        ReportError: A block names missing results or an unknown kind, or is malformed.
        OSError: A file cannot be read or written.
    """
    stale = check_documents(paths, results)
    rendered = {p: render_readme(p.read_text(), results) for p in stale}
    for path, text in rendered.items():
        path.write_text(text)
    return stale


__all__ = [
    "ReportError",
    "check_documents",
    "check_readme",
    "document_paths",
    "render_block",
    "render_readme",
    "update_documents",
    "update_readme",
]
