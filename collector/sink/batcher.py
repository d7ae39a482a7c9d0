"""Pending lines -> batches, with a memory bound (pure: no I/O, no clock).

Lines are cut into full batches of ``batch_size`` as soon as that many are
pending (a remainder waits for more lines or the tick), or all at once on a
tick. Batches wait in a FIFO for the writer. Past ``buffer_limit`` points in
memory, :meth:`Batcher.overflow` hands out the OLDEST batches (for the spool),
so what stays in memory is the newest data.
"""

from __future__ import annotations

from collections import deque

Batch = list[str]


class Batcher:
    """A FIFO of batches cut from pending lines, bounded in points."""

    def __init__(self, batch_size: int, buffer_limit: int) -> None:
        self.batch_size = batch_size
        self.buffer_limit = buffer_limit
        self._pending: list[str] = []
        self._queue: deque[Batch] = deque()
        self._queued = 0

    @property
    def points(self) -> int:
        """Points held: pending and queued."""
        return len(self._pending) + self._queued

    @property
    def batches(self) -> int:
        """Batches waiting to be written."""
        return len(self._queue)

    def add(self, lines: list[str]) -> bool:
        """Take lines; True when a full batch was cut (the remainder stays pending)."""
        self._pending.extend(lines)
        size = self.batch_size
        full = len(self._pending) // size * size
        if not full:
            return False
        pending = self._pending
        self._pending = pending[full:]
        self._queue.extend(pending[start : start + size] for start in range(0, full, size))
        self._queued += full
        return True

    def cut(self) -> bool:
        """Cut every pending line into batches (a tick); True if any were."""
        if not self._pending:
            return False
        size = self.batch_size
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), size):
            self._queue.append(pending[start : start + size])
        self._queued += len(pending)
        return True

    def next(self) -> Batch | None:
        """The oldest batch, taken out of the queue; None when empty."""
        if not self._queue:
            return None
        batch = self._queue.popleft()
        self._queued -= len(batch)
        return batch

    def put_back(self, batch: Batch) -> None:
        """Return a batch taken by :meth:`next` to the head of the queue."""
        self._queue.appendleft(batch)
        self._queued += len(batch)

    def overflow(self, held_elsewhere: int = 0) -> list[Batch]:
        """The oldest batches past the bound (``held_elsewhere``: points in flight)."""
        out: list[Batch] = []
        while self._queue and self._queued + len(self._pending) + held_elsewhere > (
            self.buffer_limit
        ):
            out.append(self._queue.popleft())
            self._queued -= len(out[-1])
        return out

    def drain(self) -> list[Batch]:
        """Cut what is pending and take every batch, oldest first."""
        self.cut()
        out = list(self._queue)
        self._queue.clear()
        self._queued = 0
        return out
