"""The encrypted key store: one file of JSON lines, secrets encrypted with Fernet.

The store is an append-only file of JSON lines in ``state.dir``: a header line
holding an encrypted check value (so a wrong master key is caught even on an
empty store), then one line per stored or forgotten key, the secret encrypted
with Fernet. Appending keeps provisioning of tens of thousands of keys linear;
the file is compacted (rewritten atomically) when dead lines outnumber live
ones. A torn last line from a crash is ignored. Mode 0600 throughout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from cryptography.fernet import Fernet, InvalidToken

from collector.gate.signing import ApiCredentials
from collector.logging import get_logger

log = get_logger(__name__)

STORE_NAME: Final = "keys.jsonl"
FORMAT: Final = 1
_CHECK: Final = b"gate-collector key store"


class KeyStoreError(Exception):
    """The key store cannot be opened or written; the message says why and what to do."""


@dataclass(frozen=True)
class StoredKey:
    """A key the collector created for one sub-account."""

    user_id: int
    key: str
    secret: str = field(repr=False)
    # Unix seconds when the key was created (0: unknown, a store of an older version).
    created_at: float = 0.0

    @property
    def credentials(self) -> ApiCredentials:
        """The pair for signing."""
        return ApiCredentials(self.key, self.secret)


def generate_master_key() -> str:
    """A new master key (Fernet, url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


def _fernet(master_key: str) -> Fernet:
    try:
        return Fernet(master_key.encode())
    except ValueError:
        raise KeyStoreError(
            "the master key is not a valid Fernet key (32 url-safe base64-encoded bytes); "
            "generate one with `gate-collector genkey`"
        ) from None


class KeyStore:
    """Stored sub-account keys, keyed by Gate user id."""

    def __init__(self, path: Path, master_key: str | None) -> None:
        if not master_key:
            raise KeyStoreError(
                "no master key: set GATE_COLLECTOR_MASTER_KEY or provide the credential "
                "file 'master-key' ($CREDENTIALS_DIRECTORY); generate one with "
                "`gate-collector genkey`"
            )
        self.path = path
        self._fernet = _fernet(master_key)
        self._keys: dict[int, StoredKey] = {}
        self._lines = 0
        if path.exists():
            self._load()
        else:
            self._rewrite()

    @classmethod
    def open(cls, state_dir: Path, master_key: str | None) -> KeyStore:
        """Open (or create) the store in ``state_dir``."""
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
        """Remember ``stored`` (durably, before returning)."""
        self._keys[stored.user_id] = stored
        token = self._fernet.encrypt(stored.secret.encode()).decode()
        self._append(
            {
                "user_id": stored.user_id,
                "key": stored.key,
                "secret": token,
                "created_at": stored.created_at,
            }
        )

    def forget(self, user_id: int) -> None:
        """Drop the key of ``user_id``."""
        if self._keys.pop(user_id, None) is not None:
            self._append({"user_id": user_id, "forget": True})

    # -- file format -------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {"format": FORMAT, "check": self._fernet.encrypt(_CHECK).decode()}

    def _load(self) -> None:
        try:
            lines = self.path.read_bytes().splitlines()
        except OSError as exc:
            raise KeyStoreError(f"cannot read key store {self.path}: {exc.strerror}") from None
        if not lines:
            raise KeyStoreError(f"key store {self.path} is empty; move it away to start anew")
        self._check_header(lines[0])
        for number, line in enumerate(lines[1:], start=2):
            self._load_line(line, number, last=number == len(lines))
        self._lines = len(lines)

    def _check_header(self, line: bytes) -> None:
        try:
            header = orjson.loads(line)
            self._fernet.decrypt(header["check"].encode())
        except InvalidToken:
            raise KeyStoreError(
                f"the master key does not open {self.path}: it was written with another "
                "master key. Restore the original key (GATE_COLLECTOR_MASTER_KEY or the "
                "credential 'master-key'); to start over instead, move the file away and "
                "every sub-account gets a new key"
            ) from None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise KeyStoreError(f"{self.path} is not a gate-collector key store") from None

    def _load_line(self, line: bytes, number: int, last: bool) -> None:
        try:
            entry = orjson.loads(line)
            user_id = int(entry["user_id"])
            if entry.get("forget"):
                self._keys.pop(user_id, None)
                return
            secret = self._fernet.decrypt(entry["secret"].encode()).decode()
            created = float(entry.get("created_at", 0.0))
            self._keys[user_id] = StoredKey(user_id, str(entry["key"]), secret, created)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidToken):
            if last:  # a write torn by a crash: that one key is lost, the rest is fine
                log.warning("key_store_torn_line", path=str(self.path), line=number)
                return
            raise KeyStoreError(f"{self.path} line {number} is corrupt") from None

    def _append(self, entry: dict[str, Any]) -> None:
        if self._lines > 2 * len(self._keys) + 64:
            self._rewrite()
            return
        data = orjson.dumps(entry) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += 1

    def _rewrite(self) -> None:
        """Write the whole store to a temp file and rename it over the old one."""
        rows = [self._header()] + [
            {
                "user_id": k.user_id,
                "key": k.key,
                "secret": self._fernet.encrypt(k.secret.encode()).decode(),
                "created_at": k.created_at,
            }
            for k in self._keys.values()
        ]
        data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._lines = len(rows)
