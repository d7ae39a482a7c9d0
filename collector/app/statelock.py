"""One daemon per state dir: an exclusive ``flock`` on ``<state.dir>/collector.lock``.

Two collectors on one state dir would both append to one ``keys.jsonl`` and one
spool. The lock is the kernel's, so a killed holder (kill -9 too) leaves nothing
to clean up; the file keeps the holder's pid only to name it in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

LOCK_FILE: Final = "collector.lock"


class StateDirBusy(Exception):
    """Another collector holds the state dir (the message names its pid)."""


@contextlib.contextmanager
def hold_state_dir(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's lock for the block; :class:`StateDirBusy` if another has it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateDirBusy(
                f"state.dir {state_dir} is in use by another gate-collector "
                f"(pid {_holder(fd)}); stop it, or give this one its own state.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The pid the holder wrote, as text ("unknown" if it has not yet)."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
