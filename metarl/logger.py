"""Per-iteration logs of a run: a CSV file (always) and TensorBoard events (optional extra)."""

from __future__ import annotations

import csv
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class IterationRow:
    """One meta-iteration as logged: one row of ``progress.csv`` (its columns, in order)."""

    iteration: int
    pre_return: float
    """Mean return of the episodes sampled before adaptation (the first inner phase)."""
    post_return: float
    """Mean return of the episodes sampled with the adapted parameters."""
    loss_before: float
    loss_after: float
    kl: float
    """Mean KL(old || new) of the post-adaptation policies after the meta-update."""
    step_accepted: int
    step_fraction: float
    ls_backtracks: int
    grad_norm: float
    env_steps: int
    total_env_steps: int
    sample_seconds: float
    update_seconds: float
    """Adaptation plus meta-update."""
    adapt_seconds: float
    grad_seconds: float
    cg_seconds: float
    line_search_seconds: float
    env_steps_per_second: float

    def as_dict(self) -> dict[str, Any]:
        """The row as ``{column: value}``, in column order."""
        return asdict(self)


COLUMNS = [f.name for f in fields(IterationRow)]
SUCCESS_COLUMNS = ("pre_success", "post_success")
"""Appended for families that report success (``task_api.reports_success``): the fraction of
the iteration's pre- / post-adaptation episodes that succeeded at any step."""


def columns_for(success: bool) -> list[str]:
    """The columns of ``progress.csv``: ``COLUMNS``, plus ``SUCCESS_COLUMNS`` when ``success``."""
    return [*COLUMNS, *SUCCESS_COLUMNS] if success else list(COLUMNS)


TIMING_COLUMNS = (
    "sample_seconds",
    "update_seconds",
    "adapt_seconds",
    "grad_seconds",
    "cg_seconds",
    "line_search_seconds",
    "env_steps_per_second",
)


def repair_log(path: str | Path, last_iteration: int, columns: list[str] | None = None) -> list[str]:
    """Make ``progress.csv`` hold exactly the well-formed rows of iterations ``1..last_iteration``.

    Used on resume, before training continues from a checkpoint at ``last_iteration``.
    Rows past the checkpoint (written after it, before a crash) are dropped silently, as
    they will be computed again. A row that is cut off, holds NUL bytes or a non-number, or
    repeats an iteration is dropped with a note; iterations that no well-formed row holds are
    noted too. When anything is noted the original file is kept as
    ``progress.csv.damaged-<time>`` (nothing a user saved is lost).

    Args:
        path: The ``progress.csv``.
        last_iteration: The checkpoint's iteration.
        columns: The run's columns (``columns_for``; default ``COLUMNS``).

    Returns:
        One line per problem found; ``[]`` for a healthy log.
    """
    path = Path(path)
    columns = list(columns or COLUMNS)
    if not path.exists():
        return (
            [f"{path.name} is missing; the log restarts at iteration {last_iteration + 1}."] if last_iteration else []
        )
    raw = path.read_bytes()
    lines = raw.decode("utf-8", errors="replace").splitlines()
    notes: list[str] = []
    rows: list[dict[str, str]] = []
    header = next(csv.reader([lines[0]])) if lines else []
    if header != columns:
        notes.append(f"{path.name} has no valid header line")
        header = columns
        body = enumerate(lines, start=1)
    else:
        body = enumerate(lines[1:], start=2)
    seen: set[int] = set()
    for number, line in body:
        if "\x00" in line:
            notes.append(f"line {number} holds NUL bytes")
            continue
        values = next(csv.reader([line]), [])
        if len(values) != len(header):
            notes.append(f"line {number} has {len(values)} fields instead of {len(header)} (cut off?)")
            continue
        row = dict(zip(header, values))
        try:
            iteration = int(row["iteration"])
            for column in columns:
                float(row[column])
        except ValueError:
            notes.append(f"line {number} holds a value that is not a number")
            continue
        if iteration > last_iteration:
            continue
        if iteration in seen:
            notes.append(f"line {number} repeats iteration {iteration}")
            continue
        seen.add(iteration)
        rows.append(row)
    missing = [i for i in range(1, last_iteration + 1) if i not in seen]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        notes.append(f"no well-formed row of iteration {shown}")
    if notes:
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.write_bytes(raw)
        rows.sort(key=lambda r: int(r["iteration"]))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        notes.append(f"the original is kept as {backup.name}")
    return notes


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a progress CSV."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class RunLogger:
    """Appends one row per iteration to ``progress.csv`` and to TensorBoard.

    Args:
        run_dir: The run directory.
        tensorboard: Write TensorBoard events under ``run_dir/tb`` if the extra is installed.
        resume_from: Keep only rows with ``iteration <= resume_from`` (used on resume, so
            the log matches the checkpoint); ``None`` starts a new log.
        columns: The columns (``columns_for``; default ``COLUMNS``).
    """

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        resume_from: int | None = None,
        columns: list[str] | None = None,
    ) -> None:
        self.path = Path(run_dir) / "progress.csv"
        self.columns = list(columns or COLUMNS)
        if resume_from is not None and self.path.exists():
            rows = [r for r in read_csv(self.path) if int(r["iteration"]) <= resume_from]
        else:
            rows = []
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn(
                    "TensorBoard logging is off: install the extra with `pip install metarl[tensorboard]`.",
                    stacklevel=2,
                )
            else:
                self._tb = SummaryWriter(
                    str(Path(run_dir) / "tb"), purge_step=None if resume_from is None else resume_from + 1
                )

    def log(self, row: dict[str, Any]) -> None:
        """Write one iteration's metrics (flushed at once, so a crash loses nothing logged)."""
        self._writer.writerow({k: row[k] for k in self.columns})
        self._file.flush()
        if self._tb is not None:
            for key in self.columns[1:]:
                self._tb.add_scalar(key, float(row[key]), int(row["iteration"]))
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
