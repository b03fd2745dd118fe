"""Callbacks of a training run: the progress bar, checkpoints, and your own (SB3's ``callbacks.py``).

A callback sees the trainer when training starts, every logged row, and the end. Its
``on_iteration`` returns ``False`` to stop the run after that iteration (the row is logged
and a checkpoint written first, so the run can be resumed); anything else continues. A
plain function ``f(iteration, row)`` works too: it stops the run when it returns ``False``
(``None`` continues).

Example:
    >>> def stop_when_good(iteration, row):
    ...     return row["post_return"] < -10.0
    >>> Trainer(config, "runs/demo", callbacks=[stop_when_good]).train()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from tqdm import tqdm

if TYPE_CHECKING:
    from metarl.trainer import Trainer

RowFunction = Callable[[int, dict[str, Any]], "bool | None"]
"""``f(iteration, row) -> bool | None``: a function callback."""


class Callback:
    """Base class: override what you need."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first iteration of this ``train()`` call (also on a resumed run)."""

    def on_iteration(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        """After an iteration's row is logged; ``False`` stops the run."""
        return True

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last iteration (or a stop); not called when training raised."""

    def close(self) -> None:
        """Release resources; always called, also after an exception."""


class FunctionCallback(Callback):
    """Wraps ``f(iteration, row) -> bool | None``; ``False`` stops the run."""

    def __init__(self, function: RowFunction) -> None:
        self.function = function

    def on_iteration(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        return self.function(trainer.iteration, row) is not False


class ProgressBar(Callback):
    """A tqdm bar over the run's iterations with the latest returns and KL."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        self.bar = tqdm(
            total=trainer.config.num_iterations,
            initial=trainer.iteration,
            desc="meta-train",
            unit="it",
            dynamic_ncols=True,
        )

    def on_iteration(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        self.bar.update(1)
        self.bar.set_postfix(pre=f"{row['pre_return']:.1f}", post=f"{row['post_return']:.1f}", kl=f"{row['kl']:.4f}")
        return True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CheckpointEvery(Callback):
    """``checkpoints/iter_XXXXXX.pt`` and ``last.pt`` every ``every`` iterations and at the end.

    Args:
        every: Iterations between checkpoints.
    """

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.every = every
        self.saved_at = -1

    def on_train_start(self, trainer: Trainer) -> None:
        self.saved_at = trainer.iteration
        if trainer.iteration == 0:
            trainer.save()  # the initial policy, so even iteration 1 can be resumed from

    def on_iteration(self, trainer: Trainer, row: dict[str, Any]) -> bool:
        if trainer.iteration % self.every == 0 or trainer.iteration == trainer.config.num_iterations:
            trainer.save()
            self.saved_at = trainer.iteration
        return True

    def on_train_end(self, trainer: Trainer) -> None:
        if trainer.iteration != self.saved_at:  # stopped by a callback between checkpoints
            trainer.save()
            self.saved_at = trainer.iteration


def as_callbacks(callbacks: Sequence[Callback | RowFunction] | None) -> list[Callback]:
    """Callbacks, with plain functions wrapped in ``FunctionCallback``.

    Raises:
        TypeError: An item is neither a ``Callback`` nor callable.
    """
    out: list[Callback] = []
    for c in callbacks or []:
        if isinstance(c, Callback):
            out.append(c)
        elif callable(c):
            out.append(FunctionCallback(c))
        else:
            raise TypeError(
                f"A callback is a metarl.callbacks.Callback or a function f(iteration, row), got {type(c).__name__}."
            )
    return out
