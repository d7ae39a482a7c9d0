"""A counter that passes the account's own id stays a counter (DESIGN.md section 3:
no update is ever dropped because of ``u``)."""

from __future__ import annotations

from collector.gate.protocol import ASSETS
from collector.gate.sequence import Sequence, SequenceTracker

ACCOUNT = 100


def test_a_counter_reaching_the_accounts_id_is_still_a_counter() -> None:
    tracker = SequenceTracker(ACCOUNT)
    assert tracker.observe(ASSETS, 98)[0] is Sequence.FIRST
    assert tracker.observe(ASSETS, 99)[0] is Sequence.IN_ORDER  # steps by one: a counter
    # before the fix, 100 made the channel an identity and 101, 102 were rejected
    assert [tracker.observe(ASSETS, u)[0] for u in (100, 101, 102)] == [Sequence.IN_ORDER] * 3


def test_the_accounts_id_before_any_counting_is_still_an_identity() -> None:
    tracker = SequenceTracker(ACCOUNT)
    assert tracker.observe(ASSETS, 5)[0] is Sequence.FIRST  # one u: not yet a counter
    assert tracker.observe(ASSETS, ACCOUNT)[0] is Sequence.IDENTITY
    assert tracker.observe(ASSETS, ACCOUNT + 1)[0] is Sequence.MISMATCH
