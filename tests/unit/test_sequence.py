"""The u checks' state: a reconnect is recorded once, per channel, then cleared.

The rules themselves (in order, gap, repeat, identity, mismatch) are pinned in
``tests/test_normalize.py``; here is what a forgotten flag or a wrong boundary
would break: a gap point on every update after one reconnect.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gate.protocol import ASSET_DETAIL, ASSETS
from collector.gate.sequence import (
    REASON_RECONNECT,
    REASON_SEQUENCE,
    Gap,
    Sequence,
    SequenceTracker,
)

ACCOUNT = 100001


def test_reasons_are_the_written_tag_values() -> None:
    assert (REASON_SEQUENCE, REASON_RECONNECT) == ("sequence", "reconnect")


def test_a_counter_reconnect_is_recorded_once_then_cleared() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 11) == (Sequence.IN_ORDER, Gap(ASSETS, "reconnect", 11, 11, 0))
    assert tracker.observe(ASSETS, 12) == (Sequence.IN_ORDER, None)
    assert tracker.observe(ASSETS, 13) == (Sequence.IN_ORDER, None)


def test_an_identity_reconnect_is_recorded_once_then_cleared() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, ACCOUNT)
    tracker.reconnected()
    assert tracker.observe(ASSETS, ACCOUNT) == (
        Sequence.IDENTITY,
        Gap(ASSETS, "reconnect", -1, -1, -1),
    )
    assert tracker.observe(ASSETS, ACCOUNT) == (Sequence.IDENTITY, None)


def test_a_reconnect_is_recorded_on_each_channel_once() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.observe(ASSET_DETAIL, 500)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 11)[1] == Gap(ASSETS, "reconnect", 11, 11, 0)
    assert tracker.observe(ASSET_DETAIL, 501)[1] == Gap(ASSET_DETAIL, "reconnect", 501, 501, 0)
    assert tracker.observe(ASSETS, 12)[1] is None
    assert tracker.observe(ASSET_DETAIL, 502)[1] is None


def test_a_reconnect_before_any_update_is_no_gap() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 10) == (Sequence.FIRST, None)
    assert tracker.observe(ASSETS, 11) == (Sequence.IN_ORDER, None)


def test_a_reconnect_with_a_skip_is_one_reconnect_gap_not_two() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 15) == (Sequence.GAP, Gap(ASSETS, "reconnect", 11, 15, 4))
    assert tracker.observe(ASSETS, 17) == (Sequence.GAP, Gap(ASSETS, "sequence", 16, 17, 1))


def test_a_reconnect_after_a_restart_has_unknown_missed() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    tracker.reconnected()
    assert tracker.observe(ASSETS, 10) == (Sequence.IN_ORDER, Gap(ASSETS, "reconnect", 11, 10, -1))


def test_a_gap_of_one_counts_one_missed() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    assert tracker.observe(ASSETS, 12) == (Sequence.GAP, Gap(ASSETS, "sequence", 11, 12, 1))


def test_a_u_that_is_no_int_is_unknown_and_changes_nothing() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, 10)
    for u in (None, "11", 11.0, True):
        assert tracker.observe(ASSETS, u) == (Sequence.UNKNOWN, None)
    assert tracker.observe(ASSETS, 11) == (Sequence.IN_ORDER, None)


def test_an_identity_channel_stays_identity_and_flags_another_id() -> None:
    tracker = SequenceTracker(ACCOUNT)
    tracker.observe(ASSETS, ACCOUNT)
    assert tracker.observe(ASSETS, 5) == (Sequence.MISMATCH, None)
    assert tracker.observe(ASSETS, ACCOUNT) == (Sequence.IDENTITY, None)
    assert tracker.observe(ASSET_DETAIL, 5) == (Sequence.FIRST, None)  # the other channel counts


def test_another_account_before_counting_is_a_mismatch_and_after_is_not() -> None:
    tracker = SequenceTracker(ACCOUNT, other_accounts={7})
    assert tracker.observe(ASSETS, 7) == (Sequence.MISMATCH, None)
    tracker.observe(ASSETS, 5)
    tracker.observe(ASSETS, 6)  # steps by one: a counter from now on
    assert tracker.observe(ASSETS, 7) == (Sequence.IN_ORDER, None)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(min_value=0, max_value=10**6),
    steps=st.lists(st.integers(min_value=-3, max_value=5), max_size=30),
    reconnect_at=st.sets(st.integers(min_value=0, max_value=30)),
)
def test_reconnect_gaps_are_exactly_the_first_update_after_each_reconnect(
    start: int, steps: list[int], reconnect_at: set[int]
) -> None:
    tracker = SequenceTracker(10**9)  # an id the counter never reaches: no identity here
    tracker.observe(ASSETS, start)
    u = start
    for index, step in enumerate(steps):
        reconnect = index in reconnect_at
        if reconnect:
            tracker.reconnected()
        expected, last = u + 1, u
        u = max(0, u + step)
        kind, gap = tracker.observe(ASSETS, u)
        if reconnect:
            missed = u - expected if u >= expected else -1
            assert gap == Gap(ASSETS, "reconnect", expected, u, missed)
        elif u > expected:
            assert (kind, gap) == (Sequence.GAP, Gap(ASSETS, "sequence", expected, u, u - expected))
        elif u == expected:
            assert (kind, gap) == (Sequence.IN_ORDER, None)
        else:
            assert u <= last and (kind, gap) == (Sequence.REPEAT, None)


# -- A counter that passes the account's own id stays a counter (DESIGN.md section 3: ----------

OWN_ID = 100


def test_a_counter_reaching_the_accounts_id_is_still_a_counter() -> None:
    tracker = SequenceTracker(OWN_ID)
    assert tracker.observe(ASSETS, 98)[0] is Sequence.FIRST
    assert tracker.observe(ASSETS, 99)[0] is Sequence.IN_ORDER  # steps by one: a counter
    # before the fix, 100 made the channel an identity and 101, 102 were rejected
    assert [tracker.observe(ASSETS, u)[0] for u in (100, 101, 102)] == [Sequence.IN_ORDER] * 3


def test_the_accounts_id_before_any_counting_is_still_an_identity() -> None:
    tracker = SequenceTracker(OWN_ID)
    assert tracker.observe(ASSETS, 5)[0] is Sequence.FIRST  # one u: not yet a counter
    assert tracker.observe(ASSETS, OWN_ID)[0] is Sequence.IDENTITY
    assert tracker.observe(ASSETS, OWN_ID + 1)[0] is Sequence.MISMATCH
