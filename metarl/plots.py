"""Every figure metarl writes, behind one guard for the optional ``plot`` extra (matplotlib).

Without matplotlib each function writes nothing and returns ``None`` (or ``[]``);
``pip install 'metarl[plot]'`` adds it. Figures are written with the non-interactive
``Agg`` backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from metarl.logger import read_csv


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the ``Agg`` backend, or ``None`` without the ``plot`` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_learning_curve(run_dir: str | Path, title: str | None = None) -> Path | None:
    """Plot pre- and post-adaptation return per iteration to ``learning_curve.png``, and the
    success rates beside it for a family that reports success.

    Returns ``None`` (and writes nothing) without the ``plot`` extra.
    """
    plt = pyplot()
    if plt is None:
        return None
    rows = read_csv(Path(run_dir) / "progress.csv")
    if not rows:
        return None
    it = [int(r["iteration"]) for r in rows]
    panels = [("return", "mean return")] + ([("success", "success rate")] if "post_success" in rows[0] else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels):
        ax.plot(it, [float(r[f"pre_{metric}"]) for r in rows], label="before adaptation")
        ax.plot(it, [float(r[f"post_{metric}"]) for r in rows], label="after adaptation")
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0][0].set_title(title or f"{Path(run_dir).name}: meta-training")
    fig.tight_layout()
    out = Path(run_dir) / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_adaptation(results: Sequence[Any], path: Path, title: str) -> Path | None:
    """Error-bar plot of return vs. adaptation steps (``metarl.evaluate.StepResult`` rows); ``None``
    without the plot extra."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(
        [r.steps for r in results], [r.mean for r in results], yerr=[r.ci95 for r in results], marker="o", capsize=4
    )
    ax.set_xlabel("adaptation steps")
    ax.set_ylabel("mean return (95% CI)")
    ax.set_xticks([r.steps for r in results])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_benchmark(
    summary: dict[str, list[dict[str, Any]]],
    per_seed: list[dict[str, Any]],
    out: Path,
    title: str,
    success: dict[str, list[dict[str, Any]]] | None = None,
    learner: str = "MAML",
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """``adaptation.png`` (with a success-rate panel when ``success``, its summary, is given)
    and ``learning_curve.png``; nothing without matplotlib. ``learner`` names the meta-learner in
    the learning curve's title; ``labels`` renames methods in the legend (``benchmark.maml_labels``)."""
    plt = pyplot()
    if plt is None:
        return []
    panels = [(summary, "return on held-out tasks (95% CI)", 1.0)]
    if success is not None:
        panels.append((success, "success rate on held-out tasks, % (95% CI)", 100.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (table, label, scale) in zip(axes[0], panels):
        for name, rows in table.items():
            x = [r["steps"] for r in rows]
            (line,) = ax.plot(x, [scale * r["mean"] for r in rows], marker="o", label=(labels or {}).get(name, name))
            ax.fill_between(
                x,
                [scale * r["mean_ci"][0] for r in rows],
                [scale * r["mean_ci"][1] for r in rows],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel(label)
        ax.set_xticks(x)
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths = [out / "adaptation.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    seeded = [(s["seed"], s["learning_curve"]) for s in per_seed if s["learning_curve"]["iteration"]]
    if seeded:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (seed, c) in enumerate(seeded):
            color = colors[i % len(colors)]
            ax.plot(c["iteration"], c["post_return"], color=color, lw=1.2, label=f"seed {seed}, after one step")
            ax.plot(
                c["iteration"],
                c["pre_return"],
                color=color,
                lw=1.0,
                ls="--",
                alpha=0.8,
                label=f"seed {seed}, before adaptation",
            )
        if len(seeded) > 1:
            n = min(len(c["post_return"]) for _, c in seeded)
            ax.plot(
                np.arange(1, n + 1),
                np.mean([c["post_return"][:n] for _, c in seeded], axis=0),
                color="black",
                lw=2.0,
                label="mean over seeds, after one step",
            )
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("return on the meta-batch's training tasks")
        ax.set_title(f"{title}: {learner} meta-training, per seed")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths.append(out / "learning_curve.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
