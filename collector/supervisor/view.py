"""What the supervisor shows: status line, ``collector_stats`` fields, per-account states and rows.

Pure functions of the supervisor's slots, counters and snapshot scheduler (no
I/O, no copies of big structures): cheap enough for every stats flush or HTTP
request. :class:`collector.supervisor.supervisor.Supervisor` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from collector.gate.models import label
from collector.points import schema
from collector.points.book import AccountBook
from collector.points.totals import SessionState
from collector.supervisor import account_state as status
from collector.supervisor.slot import Slot, SupervisorStats
from collector.supervisor.snapshots import SnapshotScheduler, SnapshotStatus


def status_line(slots: Mapping[int, Slot], stats: SupervisorStats, by_state: dict[str, int]) -> str:
    """``connected/total`` for systemd's STATUS=."""
    connected = sum(1 for s in slots.values() if s.stats.connected)
    sessions = session_count(slots, stats)
    over = len(stats.over_capacity)
    extra = f", {over} over capacity" if over else ""
    for state in (status.REFUSED, status.FORBIDDEN, status.NOT_UNIFIED, status.KEYLESS):
        if by_state[state]:
            extra += f", {by_state[state]} {state.replace('_', ' ')}"
    return f"{connected}/{sessions} sessions connected{extra}"


def session_count(slots: Mapping[int, Slot], stats: SupervisorStats) -> int:
    """Slots that have a session: a keyless account's slot only retries its key."""
    return sum(1 for account in slots if account not in stats.keyless)


# The per-session counters summed into ``collector_stats``: (field, SessionStats attribute).
_SUMMED: Final = (
    (schema.STAT_FRAMES_RECEIVED, "frames"),
    (schema.STAT_UPDATES_RECEIVED, "updates"),
    (schema.STAT_FRAMES_INVALID, "frames_invalid"),
    (schema.STAT_FRAMES_REJECTED, "frames_rejected"),
    (schema.STAT_POINTS_OVER_CURRENCY_CAP, "points_over_currency_cap"),
    (schema.STAT_FIELDS_INVALID, "fields_invalid"),
    (schema.STAT_GATE_ERRORS, "errors"),
    (schema.STAT_RECONNECTS, "reconnects"),
    (schema.STAT_GAPS, "gaps"),
    (schema.STAT_REFUSALS_UNEXPLAINED, "refusals_unexplained"),
    (schema.STAT_HANDSHAKE_REFUSALS, "handshake_refusals"),
    (schema.STAT_HANDSHAKE_REFUSALS_AUTH, "handshake_refusals_auth"),
)


def stats_fields(
    slots: Mapping[int, Slot],
    stats: SupervisorStats,
    store_write_errors: int,
    snapshots: SnapshotScheduler | None,
    by_state: dict[str, int],
) -> dict[str, float | int]:
    """The session share of ``collector_stats``."""
    connected, sums = _session_sums(slots)
    return {
        schema.STAT_SESSIONS_TOTAL: session_count(slots, stats),
        schema.STAT_SESSIONS_CONNECTED: connected,
        schema.STAT_SESSIONS_OVER_CAPACITY: len(stats.over_capacity),
        **sums,
        schema.STAT_GATE_UP: int(not stats.discovery_failing),
        schema.STAT_DISCOVERY_ERRORS: stats.discovery_errors,
        schema.STAT_KEY_REPLACEMENTS: stats.key_replacements,
        schema.STAT_KEY_STORE_WRITE_ERRORS: store_write_errors,
        **_truth_fields(snapshots, by_state),
        schema.STAT_KEY_ROTATIONS: stats.key_rotations,
        schema.STAT_KEY_ROTATIONS_BREAK_BEFORE_MAKE: stats.key_rotations_break_before_make,
        schema.STAT_KEY_ERRORS: stats.key_errors,
        schema.STAT_KEY_CONFIG_REFUSALS: stats.key_config_refusals,
        **crash_fields(stats, snapshots),
    }


def crash_fields(
    stats: SupervisorStats, snapshots: SnapshotScheduler | None
) -> dict[str, float | int]:
    """Contained failures: the totals, and the sessions' by cause (a few exception types)."""
    crashes = stats.session_crashes
    return {
        schema.STAT_SESSION_CRASHES: sum(crashes.values()),
        **{f"{schema.STAT_SESSION_CRASHES}_{cause}": n for cause, n in sorted(crashes.items())},
        schema.STAT_SNAPSHOT_CRASHES: snapshots.totals.crashes if snapshots else 0,
    }


def _session_sums(slots: Mapping[int, Slot]) -> tuple[int, dict[str, float | int]]:
    """Connected sessions and the summed session counters, in one pass over the slots."""
    connected = 0
    sums: dict[str, float | int] = dict.fromkeys((field for field, _ in _SUMMED), 0)
    for slot in slots.values():
        stats = slot.stats
        connected += stats.connected
        for field, name in _SUMMED:
            sums[field] += getattr(stats, name)
    return connected, sums


def _truth_fields(
    snapshots: SnapshotScheduler | None, by_state: dict[str, int]
) -> dict[str, float | int]:
    """Snapshot counters and how many accounts are in each state."""
    totals = snapshots.totals if snapshots is not None else None
    return {
        schema.STAT_SNAPSHOTS: totals.taken if totals else 0,
        schema.STAT_SNAPSHOT_FAILURES: totals.failed if totals else 0,
        schema.STAT_SNAPSHOT_FIELDS_INVALID: totals.invalid_fields if totals else 0,
        schema.STAT_ACCOUNTS_ACTIVE: by_state[status.ACTIVE],
        schema.STAT_ACCOUNTS_REFUSED: by_state[status.REFUSED],
        schema.STAT_ACCOUNTS_FORBIDDEN: by_state[status.FORBIDDEN],
        schema.STAT_ACCOUNTS_NOT_UNIFIED: by_state[status.NOT_UNIFIED],
        schema.STAT_ACCOUNTS_KEYLESS: by_state[status.KEYLESS],
    }


def session_states(
    slots: Mapping[int, Slot], stats: SupervisorStats, now: float
) -> dict[str, SessionState]:
    """Per account of the shard (id as text): label and session state (gate_account_state)."""
    states = {
        str(a): SessionState(str(a), schema.SESSION_OVER_CAPACITY) for a in stats.over_capacity
    }
    for account, slot in slots.items():
        connected = slot.stats.connected
        state = schema.SESSION_CONNECTED if connected else schema.SESSION_DISCONNECTED
        states[str(account)] = SessionState(
            label(slot.account), state, slot.stats.last_frame_age(now)
        )
    return states


def state_counts(
    slots: Mapping[int, Slot], stats: SupervisorStats, snapshots: SnapshotScheduler | None
) -> dict[str, int]:
    """How many accounts are in each state: :func:`account_states` counted, without
    building one :class:`~.account_state.AccountState` per account (the status line
    and ``collector_stats`` ask for this every few seconds)."""
    keyless = stats.keyless
    out = dict.fromkeys(status.STATES, 0)
    for account, slot in slots.items():
        if account not in keyless:
            snap = snapshots.status(account) if snapshots is not None else None
            out[_decide(slot, snap)[0]] += 1
    out[status.KEYLESS] += len(keyless)
    return out


def _decide(slot: Slot, snap: SnapshotStatus | None) -> tuple[str, str]:
    stats = slot.stats
    return status.decide(
        snapshot_state=snap.state if snap else "",
        snapshot_reason=snap.reason if snap else "",
        subscription=stats.subscription,
        subscription_reason=stats.subscription_reason,
    )


def account_states(
    slots: Mapping[int, Slot],
    stats: SupervisorStats,
    snapshots: SnapshotScheduler | None,
    now: float,
) -> list[status.AccountState]:
    """One :class:`~.account_state.AccountState` per account: with a session, then keyless."""
    keyless = stats.keyless  # a slot still waiting for its first key is keyless
    states = [
        _slot_state(account, slot, snapshots, now)
        for account, slot in slots.items()
        if account not in keyless
    ]
    states.extend(
        status.AccountState(account, name, *status.decide(keyless=True))
        for account, name in keyless.items()
    )
    return states


def _slot_state(
    account: int, slot: Slot, snapshots: SnapshotScheduler | None, now: float
) -> status.AccountState:
    snap = snapshots.status(account) if snapshots is not None else None
    stats = slot.stats
    state, reason = _decide(slot, snap)
    return status.AccountState(
        account=account,
        label=label(slot.account),
        state=state,
        reason=reason,
        connected=stats.connected,
        snapshots=snap.taken if snap else 0,
        snapshot_failures=snap.failed if snap else 0,
        last_data_age=None if stats.last_data_at is None else now - stats.last_data_at,
        last_snapshot_age=None if snap is None or snap.last_at is None else now - snap.last_at,
    )


def account_rows(
    states: list[status.AccountState],
    slots: Mapping[int, Slot],
    stats: SupervisorStats,
    now: float,
    book: AccountBook | None = None,
) -> list[dict[str, object]]:
    """One row per owned account for ``/status``: its state and its session counters."""
    rows = [
        _account_row(state, slots.get(state.account), now, book)
        for state in sorted(states, key=lambda s: s.account)
    ]
    rows += [{"account": a, "state": "over_capacity"} for a in sorted(stats.over_capacity)]
    return rows


def _account_row(
    state: status.AccountState, slot: Slot | None, now: float, book: AccountBook | None = None
) -> dict[str, object]:
    """What ``/status`` shows of one account; add new per-account state here."""
    row: dict[str, object] = {
        "account": state.account,
        "label": state.label,
        "state": state.state,
        "reason": state.reason,
        "connected": state.connected,
        "snapshots": state.snapshots,
        "snapshot_failures": state.snapshot_failures,
        "last_data_age": _rounded(state.last_data_age),
        "last_snapshot_age": _rounded(state.last_snapshot_age),
    }
    facts = book.known(state.account) if book is not None else None
    # Gate's account mode (from snapshots; None until one said it) and the fields Gate
    # sent as 0 that do not apply in it (not written; counted in values_not_applicable).
    row["mode"] = facts.mode if facts is not None else None
    row["not_applicable"] = sorted(facts.not_applicable) if facts is not None else []
    if slot is not None:
        stats = slot.stats
        row.update(
            address=slot.local_address,
            frames=stats.frames,
            updates=stats.updates,
            points=stats.points,
            reconnects=stats.reconnects,
            gaps=stats.gaps,
            errors=stats.errors,
            last_frame_age=_rounded(stats.last_frame_age(now)),
        )
    return row


def _rounded(age: float | None) -> float | None:
    return None if age is None else round(age, 1)
