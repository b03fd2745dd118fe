"""Every error metarl raises for a user to act on, under one base class (a leaf module).

The command line catches ``MetarlError`` and prints its message as one ``error:`` line; a
library user can catch it the same way. Each class also derives from the built-in
exception it refines (a bad value is a ``ValueError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class MetarlError(Exception):
    """Base of every user-facing metarl error: the message says what is wrong and what to do."""


class ConfigError(MetarlError, ValueError):
    """A config value, key, file or command-line option is invalid."""


class CheckpointError(MetarlError, RuntimeError):
    """A checkpoint is missing, corrupt, or not a metarl checkpoint."""


class RunExistsError(MetarlError, FileExistsError):
    """A new run would overwrite the logs and checkpoints of an existing one."""


class RunDirError(MetarlError, OSError):
    """The run directory cannot be written (a file in its place, no permission, read-only, disk full)."""


class RunLockedError(MetarlError, RuntimeError):
    """Another process is writing to the run directory (``metarl.run_lock``)."""


class TaskAPIError(MetarlError, TypeError):
    """An environment does not implement the task-family API."""


class TaskNotSetError(MetarlError, RuntimeError):
    """A task family was reset or stepped before ``set_task`` was called."""


class FamilyConstructionError(MetarlError, ValueError):
    """A family's constructor rejected its keyword arguments (``env_kwargs``)."""


class UnsupportedSpaceError(MetarlError, ValueError):
    """A family's observation or action space is one metarl's policies cannot take."""


class UnknownFamilyError(MetarlError, ValueError):
    """A family id that is neither a metarl family nor a registered Gymnasium env."""


class SamplerError(MetarlError, RuntimeError):
    """An environment raised while the sampler was stepping it."""


class NonFiniteBatchError(MetarlError, ValueError):
    """A batch of episodes holds NaN or infinite values."""


class TrainingDivergedError(MetarlError, FloatingPointError):
    """A meta-update produced NaN or infinite values (a loss, a gradient, a step)."""
