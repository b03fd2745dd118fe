"""A run directory is locked while a process writes to it: two writers would interleave their logs.

``RunLock(run_dir)`` holds an exclusive ``flock`` on ``run_dir/.lock`` for as long as it is
entered. The operating system drops the lock when the process ends, however it ends
(``kill -9`` included), so a crashed run never leaves a stale lock behind. The file
records the holder's pid and start time for the message another process gets. Readers
(``metarl evaluate`` while a run trains) take no lock.

Where ``fcntl`` does not exist (Windows) the lock is a no-op.

Example:
    >>> with RunLock("runs/demo"):          # doctest: +SKIP
    ...     ...                              # RunLockedError in a second process meanwhile
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from metarl.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on a run directory (created if missing).

    A directory the lock created is removed again when the block it guards raises before
    anything but the lock file was written there.

    Args:
        run_dir: The run directory.
        purpose: What the holder does, for the other process's message (``training``, ``benchmark``).

    Raises:
        RunLockedError: On ``__enter__``, when another process holds the lock.
    """

    def __init__(self, run_dir: str | Path, purpose: str = "training") -> None:
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self._fd: int | None = None
        self._created = False  # whether entering made the directory (removed again if nothing was written)

    def __enter__(self) -> RunLock:
        self._created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunLockedError(
                    f"{self.run_dir} is in use by another metarl process ({holder}); two processes writing one run "
                    "would interleave its logs and checkpoints. Wait for it to finish or stop it, then retry."
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, {self.purpose} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and self._created:
            self._remove_if_unused()  # while still holding the lock: no other process can claim the folder meanwhile
        self.release()

    def _remove_if_unused(self) -> None:
        """Remove the directory this lock created when it holds nothing but the lock file.

        A run that fails before writing anything (a bad ``init_from``, a config error found
        late) leaves no empty folder behind; anything written, even one file, stays.
        """
        try:
            if [entry.name for entry in self.run_dir.iterdir()] == [LOCK_FILE]:
                (self.run_dir / LOCK_FILE).unlink()
                self.run_dir.rmdir()
        except OSError:  # another process got in meanwhile, or it is gone already: leave it
            pass

    def release(self) -> None:
        """Drop the lock (idempotent); the file stays, empty, for the next holder."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
