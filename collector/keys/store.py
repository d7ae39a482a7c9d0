"""The encrypted key store: one file of JSON lines, secrets encrypted with Fernet.

The store is an append-only file of JSON lines in ``state.dir``: a header line
holding an encrypted check value (so a wrong master key is caught even on an
empty store), then one line per stored or forgotten key, the secret encrypted
with Fernet. Appending keeps provisioning of tens of thousands of keys linear;
the file is compacted (rewritten atomically) when dead lines outnumber live
ones. Mode 0600 throughout.

A key is stored only once its whole line, newline included, is fsynced. A line
without its newline (a crash or a full disk mid-append), or an unreadable last
line, is a torn tail: it is ignored on reading and cut off (truncate + fsync)
before the next append, so nothing is ever written onto it. A write that fails
(ENOSPC, EROFS, EACCES, EIO) raises :class:`KeyStoreWriteError` and leaves both
the file and the in-memory view as they were before the call.

A *sweep mark* (``{"user_id": N, "sweep": true}``) is appended, durably, before
a key is created for an account, and cleared (``"sweep": false``) once no key of
ours but the stored one can be on Gate for it: a key whose create answer was
lost, whose secret never reached the store (kill -9, a full disk), or that a
successor replaced, is found by name through the mark at the next start and
deleted (:meth:`~collector.keys.provision.KeyProvisioner.sweep_orphans`).

The methods are blocking and thread-safe; async callers use the ``*_async``
twins, which run them in a worker thread so the trio loop never waits on disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson
import trio
from cryptography.fernet import Fernet, InvalidToken

from collector.base.fsutil import atomic_write, write_all
from collector.base.logging import get_logger
from collector.gate.signing import ApiCredentials

log = get_logger(__name__)

STORE_NAME: Final = "keys.jsonl"
FORMAT: Final = 1
_CHECK: Final = b"gate-collector key store"
# The start every header has (orjson keeps key order): a file that is a prefix of
# it is a store whose creation was cut short, holding no key yet.
_HEADER_START: Final = b'{"format":1,"check":"'
# What the write probe writes: one page, room for a dozen key lines.
PROBE_BYTES: Final = 4096
REPAIR_HINT: Final = (
    "keep every readable key with `gate-collector keys repair --config <your config file>` "
    "(accounts whose key is lost get a new one at the next start)"
)


class KeyStoreError(Exception):
    """The key store cannot be opened or written; the message says why and what to do."""


class KeyStoreCorrupt(KeyStoreError):
    """A line before the last cannot be read (names the line and the repair command)."""

    def __init__(self, path: Path, line: int, why: str) -> None:
        super().__init__(f"{path} line {line} is corrupt ({why}); {REPAIR_HINT}")
        self.line = line


class KeyStoreWriteError(KeyStoreError):
    """The store cannot be written now; whatever was being stored is not stored."""


_WRITE_HINTS: Final = {
    errno.ENOSPC: "free space on its filesystem",
    errno.EDQUOT: "raise the disk quota of the collector's user",
    errno.EROFS: "its filesystem is read-only: remount it read-write or move state.dir",
    errno.EACCES: "give the collector's user write access to it (owner, mode 0600)",
    errno.EPERM: "give the collector's user write access to it (owner, mode 0600)",
}


def write_failure(path: Path, exc: OSError) -> KeyStoreWriteError:
    """The error for a failed write of ``path``: the cause and what to do."""
    hint = _WRITE_HINTS.get(exc.errno or 0, "check the disk and the system log")
    reason = exc.strerror or str(exc)
    return KeyStoreWriteError(
        f"cannot write key store {path}: {reason}; {hint}. "
        "No new keys are created until it can be written; existing ones keep working"
    )


@dataclass(frozen=True)
class StoredKey:
    """A key the collector created for one sub-account (``created_at``: unix seconds)."""

    user_id: int
    key: str
    secret: str = field(repr=False)
    created_at: float | None = field(default=None, compare=False)

    @property
    def credentials(self) -> ApiCredentials:
        """The pair for signing."""
        return ApiCredentials(self.key, self.secret)


@dataclass(frozen=True)
class SweepMark:
    """A line saying whether keys of ours other than the stored one may be on Gate."""

    pending: bool


def generate_master_key() -> str:
    """A new master key (Fernet, url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def fernet_of(master_key: str | None) -> Fernet:
    """The Fernet of ``master_key``; KeyStoreError if it is missing or malformed."""
    if not master_key:
        raise KeyStoreError(
            "no master key: set GATE_COLLECTOR_MASTER_KEY or provide the credential "
            "file 'master-key' ($CREDENTIALS_DIRECTORY); generate one with "
            "`gate-collector genkey`"
        )
    try:
        return Fernet(master_key.encode())
    except ValueError:
        raise KeyStoreError(
            "the master key is not a valid Fernet key (32 url-safe base64-encoded bytes); "
            "generate one with `gate-collector genkey`"
        ) from None


def check_header(fernet: Fernet, path: Path, line: bytes) -> None:
    """KeyStoreError unless ``line`` is a header this master key opens."""
    try:
        header = orjson.loads(line)
        fernet.decrypt(header["check"].encode())
    except InvalidToken:
        raise KeyStoreError(
            f"the master key does not open {path}: it was written with another "
            "master key. Restore the original key (GATE_COLLECTOR_MASTER_KEY or the "
            "credential 'master-key'); to start over instead, move the file away and "
            "every sub-account gets a new key"
        ) from None
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise KeyStoreError(
            f"{path} is not a gate-collector key store (its first line is no store "
            "header); move it away or point state.dir elsewhere"
        ) from None


def is_unfinished_header(data: bytes) -> bool:
    """True for a file whose creation was cut short (empty, or a torn header)."""
    data = data.rstrip(b"\0")  # a crash may leave zeros where data was not written
    return b"\n" not in data and _HEADER_START.startswith(data[: len(_HEADER_START)])


def parse_entry(fernet: Fernet, line: bytes) -> tuple[int, StoredKey | SweepMark | None]:
    """(user id, key) of one line; None for a "forget" line, a SweepMark for a mark.

    ValueError if bad.
    """
    try:
        entry = orjson.loads(line)
        user_id = int(entry["user_id"])
        if "sweep" in entry:
            return user_id, SweepMark(entry["sweep"] is True)
        if entry.get("forget"):
            return user_id, None
        secret = fernet.decrypt(entry["secret"].encode()).decode()
        created = entry.get("created")
        return user_id, StoredKey(
            user_id, str(entry["key"]), secret, float(created) if created else None
        )
    except orjson.JSONDecodeError:
        raise ValueError("not a JSON line") from None
    except KeyError as exc:
        raise ValueError(f"no {exc.args[0]!r} field") from None
    except (TypeError, ValueError, AttributeError):
        raise ValueError("a field of the wrong type") from None
    except InvalidToken:
        raise ValueError("its secret does not decrypt with this master key") from None


def split_lines(data: bytes, start: int) -> Iterator[tuple[int, bytes, int, bool]]:
    """(line number, line, offset after it, has its newline) from ``start`` (line 2 on)."""
    number, pos = 1, start
    while pos < len(data):
        number += 1
        end = data.find(b"\n", pos)
        if end < 0:
            yield number, data[pos:], len(data), False
            return
        yield number, data[pos:end], end + 1, True
        pos = end + 1


class KeyStore:
    """Stored sub-account keys, keyed by Gate user id."""

    def __init__(self, path: Path, master_key: str | None) -> None:
        self.path = path
        self._fernet = fernet_of(master_key)
        self._keys: dict[int, StoredKey] = {}
        self._rows: dict[int, bytes] = {}  # the encoded line of each live key
        self._marks: dict[int, bytes] = {}  # the line of each pending sweep mark
        self._header = (
            orjson.dumps({"format": FORMAT, "check": self._fernet.encrypt(_CHECK).decode()}) + b"\n"
        )
        self._lines = 0  # lines in the file (header included): when to compact
        self._size = 0  # bytes of complete lines: where the next append starts
        self._fresh = True  # no header on disk yet: the next write is a full rewrite
        self._lock = threading.Lock()
        self.write_errors = 0
        # Disk I/O off the trio loop; False only for tests on trio's mock clock.
        self.io_in_thread = True
        if path.exists():
            self._load()
        if self._fresh:
            self._locked_write(self._rewrite)

    @classmethod
    def open(cls, state_dir: Path, master_key: str | None) -> KeyStore:
        """Open (or create) the store in ``state_dir``."""
        fernet_of(master_key)  # a missing master key is an error, not a new store
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise KeyStoreError(f"cannot create state.dir {state_dir}: {exc.strerror}") from None
        return cls(state_dir / STORE_NAME, master_key)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, user_id: int) -> StoredKey | None:
        """The stored key of ``user_id``, if any."""
        return self._keys.get(user_id)

    def all(self) -> list[StoredKey]:
        """Every stored key."""
        return list(self._keys.values())

    def put(self, stored: StoredKey) -> None:
        """Remember ``stored`` durably before returning; KeyStoreWriteError if it cannot be."""
        if stored.created_at is None:
            stored = replace(stored, created_at=time.time())
        row = self._row(stored)
        self._locked_write(lambda: self._commit(stored.user_id, stored, row))

    def forget(self, user_id: int) -> None:
        """Drop the key of ``user_id`` (durably); KeyStoreWriteError if it cannot be."""
        if user_id in self._keys:
            row = orjson.dumps({"user_id": user_id, "forget": True}) + b"\n"
            self._locked_write(lambda: self._commit(user_id, None, row))

    def sweeps(self) -> list[int]:
        """Accounts that may have keys of ours on Gate besides the stored one."""
        return list(self._marks)

    def needs_sweep(self, user_id: int) -> bool:
        """Whether ``user_id`` has a pending sweep mark."""
        return user_id in self._marks

    def mark_sweep(self, user_id: int) -> None:
        """Note durably, before a key is created, that ``user_id`` may get one the store misses."""
        if user_id not in self._marks:
            row = orjson.dumps({"user_id": user_id, "sweep": True}) + b"\n"
            self._locked_write(lambda: self._commit(user_id, SweepMark(True), row))

    def clear_sweep(self, user_id: int) -> None:
        """No key of ours but the stored one is left on Gate for ``user_id``."""
        if user_id in self._marks:
            row = orjson.dumps({"user_id": user_id, "sweep": False}) + b"\n"
            self._locked_write(lambda: self._commit(user_id, SweepMark(False), row))

    def probe(self) -> None:
        """KeyStoreWriteError unless a key could be stored now (space, permissions).

        Cuts a torn tail too, so the next append starts on a clean line.
        """
        self._locked_write(self._probe)

    async def put_async(self, stored: StoredKey) -> None:
        """:meth:`put` in a worker thread (not abandoned on cancel: it finishes or fails)."""
        await self._off_loop(self.put, stored)

    async def mark_sweep_async(self, user_id: int) -> None:
        """:meth:`mark_sweep` in a worker thread."""
        await self._off_loop(self.mark_sweep, user_id)

    async def clear_sweep_async(self, user_id: int) -> None:
        """:meth:`clear_sweep` in a worker thread."""
        await self._off_loop(self.clear_sweep, user_id)

    async def probe_async(self) -> None:
        """:meth:`probe` in a worker thread."""
        await self._off_loop(self.probe)

    async def _off_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.io_in_thread:
            # Tests on trio's autojump clock: a thread's work would let the clock jump.
            await trio.lowlevel.checkpoint()
            fn(*args)
            return
        await trio.to_thread.run_sync(fn, *args)

    # -- reading ------------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"cannot read key store {self.path}: {exc.strerror}") from None
        if is_unfinished_header(data):
            # Created by a run that died before the header was whole: no key in it.
            log.warning("key_store_unfinished", path=str(self.path), bytes=len(data))
            return
        newline = data.find(b"\n")
        check_header(self._fernet, self.path, data[:newline] if newline >= 0 else data)
        self._header = data[: newline + 1]
        self._fresh = False
        self._size, self._lines = newline + 1, 1
        for number, line, end, complete in split_lines(data, newline + 1):
            try:
                user_id, stored = parse_entry(self._fernet, line)
            except ValueError as exc:
                if end == len(data):  # a torn tail: cut off before the next append
                    log.warning("key_store_torn_tail", path=str(self.path), line=number)
                    return
                raise KeyStoreCorrupt(self.path, number, str(exc)) from None
            if not complete:  # whole JSON but no newline: the append never finished
                log.warning("key_store_torn_tail", path=str(self.path), line=number)
                return
            self._apply(user_id, stored, line + b"\n")
            self._size, self._lines = end, self._lines + 1

    # -- writing ------------------------------------------------------------------

    def _row(self, stored: StoredKey) -> bytes:
        token = self._fernet.encrypt(stored.secret.encode()).decode()
        entry: dict[str, Any] = {"user_id": stored.user_id, "key": stored.key, "secret": token}
        if stored.created_at is not None:
            entry["created"] = stored.created_at
        return orjson.dumps(entry) + b"\n"

    def _apply(self, user_id: int, stored: StoredKey | SweepMark | None, row: bytes | None) -> None:
        if isinstance(stored, SweepMark):
            if stored.pending and row is not None:
                self._marks[user_id] = row
            else:
                self._marks.pop(user_id, None)
        elif stored is None or row is None:
            self._keys.pop(user_id, None)
            self._rows.pop(user_id, None)
        else:
            self._keys[user_id] = stored
            self._rows[user_id] = row

    def _locked_write(self, write: Callable[[], None]) -> None:
        """Run ``write`` under the lock; an OSError becomes KeyStoreWriteError, counted."""
        with self._lock:
            try:
                write()
            except OSError as exc:
                self.write_errors += 1
                raise write_failure(self.path, exc) from None

    def _commit(self, user_id: int, stored: StoredKey | SweepMark | None, row: bytes) -> None:
        key, key_row, had_mark = (
            self._keys.get(user_id),
            self._rows.get(user_id),
            self._marks.get(user_id),
        )
        self._apply(user_id, stored, row)
        try:
            if self._fresh or self._lines > 2 * (len(self._keys) + len(self._marks)) + 64:
                self._rewrite()
            else:
                self._append(row)
        except OSError:  # not stored: memory says what the disk says
            self._apply(user_id, key, key_row)
            self._apply(user_id, SweepMark(had_mark is not None), had_mark)
            raise

    def _open_for_append(self) -> int:
        """The store's fd for appending, its torn tail (if any) cut off durably."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < self._size:
                raise OSError(errno.EIO, "the file shrank under the collector (another program?)")
            if size > self._size:
                os.ftruncate(fd, self._size)
                os.fsync(fd)
                log.warning("key_store_tail_cut", path=str(self.path), bytes=size - self._size)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _append(self, row: bytes) -> None:
        fd = self._open_for_append()
        try:
            try:
                write_all(fd, row)
                os.fsync(fd)
            except OSError:
                # Leave no torn line behind (and give back the space it took).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
                raise
        finally:
            os.close(fd)
        self._size += len(row)
        self._lines += 1

    def _rewrite(self) -> None:
        """Write the whole store to a temp file and rename it over the old one."""
        data = self._header + b"".join(self._rows.values()) + b"".join(self._marks.values())
        atomic_write(self.path, data)
        self._size, self._lines = len(data), 1 + len(self._rows) + len(self._marks)
        self._fresh = False

    def _probe(self) -> None:
        if not self._fresh:
            os.close(self._open_for_append())
        probe = self.path.with_name(f".{self.path.name}.probe")
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, bytes(PROBE_BYTES))
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
