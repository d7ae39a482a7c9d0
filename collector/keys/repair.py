"""Repair of a key store with unreadable lines: keep every readable key, say what was lost.

Only a torn *last* line is cut off by the store itself; a bad line before it
(a disk error, a hand edit, or an append that an older version wrote onto a
torn line) stops the collector, because silently dropping a key would create a
new one on Gate. ``gate-collector keys repair`` is the way on: it saves the old
file beside the store, rewrites the store atomically with every readable key,
and names the accounts whose key was lost (they get a new one at the next start;
the old one is cleaned up on Gate then, as a key of ours the store does not know).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet

from collector.base.fsutil import atomic_write
from collector.keys.store import (
    StoredKey,
    SweepMark,
    check_header,
    fernet_of,
    is_unfinished_header,
    parse_entry,
    split_lines,
)

_USER_ID: Final = re.compile(rb'"user_id":\s*(\d+)')
# Where an entry starts: what an append written onto a torn line begins with.
_ENTRY_START: Final = b'{"user_id":'


@dataclass
class LostLine:
    """A line that could not be read, and the account it was about (if that can be told)."""

    line: int
    account: int | None
    why: str


@dataclass
class RepairReport:
    """What ``repair_store`` found and did."""

    kept: int = 0
    bad: list[LostLine] = field(default_factory=list)
    lost_accounts: list[int] = field(default_factory=list)
    backup: Path | None = None

    @property
    def changed(self) -> bool:
        """True when the store was rewritten."""
        return self.backup is not None


def repair_store(path: Path, master_key: str | None, now: float | None = None) -> RepairReport:
    """Rewrite ``path`` with every readable key; the old file is kept as ``<name>.bad-<time>``.

    A store that has nothing wrong is left as it is. KeyStoreError if the master
    key does not open it or it is no key store.
    """
    fernet = fernet_of(master_key)
    data = path.read_bytes()
    report = RepairReport()
    if is_unfinished_header(data):
        return report  # holds no key; the collector rewrites it at the next start
    header_end = data.find(b"\n") + 1
    check_header(fernet, path, data[: header_end - 1])
    keys: dict[int, StoredKey] = {}
    rows: dict[int, bytes] = {}
    marks: dict[int, bytes] = {}  # pending sweep marks are kept: they lead to orphans on Gate
    for number, line, _end, complete in split_lines(data, header_end):
        entries = _readable(fernet, line, complete, number, report)
        for user_id, stored, row in entries:
            if isinstance(stored, SweepMark):
                if stored.pending:
                    marks[user_id] = row
                else:
                    marks.pop(user_id, None)
            elif stored is None:
                keys.pop(user_id, None)
                rows.pop(user_id, None)
            else:
                keys[user_id], rows[user_id] = stored, row
    mentioned = {b.account for b in report.bad if b.account is not None}
    report.kept = len(keys)
    report.lost_accounts = sorted(mentioned - keys.keys())
    if report.bad:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        report.backup = path.with_name(f"{path.name}.bad-{stamp}")
        atomic_write(report.backup, data)  # the evidence first, durably
        atomic_write(path, data[:header_end] + b"".join(rows.values()) + b"".join(marks.values()))
    return report


def _readable(
    fernet: Fernet, line: bytes, complete: bool, number: int, report: RepairReport
) -> list[tuple[int, StoredKey | SweepMark | None, bytes]]:
    """The entries ``line`` holds (a glued line may hold one); bad parts go to the report."""
    if complete:
        try:
            user_id, stored = parse_entry(fernet, line)
            return [(user_id, stored, line + b"\n")]
        except ValueError as exc:
            why = str(exc)
    else:
        why = "torn: no newline"
    salvaged: list[tuple[int, StoredKey | SweepMark | None, bytes]] = []
    head = line
    start = line.rfind(_ENTRY_START)
    if complete and start > 0:  # an append written onto a torn line: the tail is whole
        try:
            user_id, stored = parse_entry(fernet, line[start:])
            salvaged.append((user_id, stored, line[start:] + b"\n"))
            head = line[:start]
        except ValueError:
            pass
    found = _USER_ID.search(head)
    report.bad.append(LostLine(number, int(found.group(1)) if found else None, why))
    return salvaged
