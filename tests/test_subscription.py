"""The subscription machine, pure: no server, no clock but the numbers passed in."""

from __future__ import annotations

import random

import pytest

from collector.gate.protocol import ASSET_DETAIL, ASSETS, CHANNELS
from collector.gate.subscription import ChannelState, SubscriptionError, Subscriptions


def machine(**kwargs: float) -> Subscriptions:
    return Subscriptions(CHANNELS, rng=random.Random(7), **kwargs)


def test_a_new_connection_subscribes_both_channels() -> None:
    subs = machine()
    assert subs.due(0.0) == [ASSETS, ASSET_DETAIL]
    assert not subs.all_active
    assert subs.summary() == (ChannelState.IDLE, "")


def test_acks_make_both_active_and_only_then_connected() -> None:
    subs = machine()
    for channel in CHANNELS:
        subs.sent(channel, 0.0)
    assert subs.due(1.0) == []
    change = subs.acked(ASSETS)
    assert change is not None and change.new is ChannelState.ACTIVE
    assert not subs.all_active  # one channel is not enough
    subs.acked(ASSET_DETAIL)
    assert subs.all_active
    assert subs.summary() == (ChannelState.ACTIVE, "")
    assert subs.next_deadline() is None


def test_a_refusal_retries_with_capped_backoff() -> None:
    subs = machine(retry_base=1.0, retry_max=8.0)
    waits = []
    now = 0.0
    for _ in range(8):
        subs.sent(ASSETS, now)
        subs.refused(ASSETS, now, "code 3: service error")
        retry_at = subs[ASSETS].retry_at
        assert retry_at is not None
        assert subs.due(retry_at - 0.001) == [ASSET_DETAIL]  # not yet
        assert ASSETS in subs.due(retry_at)
        waits.append(retry_at - now)
        now = retry_at
    assert 0.5 <= waits[0] <= 1.0
    assert all(4.0 <= w <= 8.0 for w in waits[4:])  # capped
    assert subs.summary() == (ChannelState.REFUSED, f"{ASSETS}: code 3: service error")


def test_no_ack_by_the_deadline_is_a_refusal() -> None:
    subs = machine(ack_timeout=10.0)
    subs.sent(ASSETS, 0.0)
    assert subs.next_deadline() == 10.0
    assert subs.expire(9.9) == []
    (change,) = subs.expire(10.0)
    assert (change.old, change.new) == (ChannelState.IDLE, ChannelState.REFUSED)
    assert "no ack within 10 s" in change.reason


def test_a_late_ack_still_makes_the_channel_active() -> None:
    subs = machine(ack_timeout=1.0)
    subs.sent(ASSETS, 0.0)
    subs.expire(2.0)
    subs.acked(ASSETS)
    assert subs[ASSETS].state is ChannelState.ACTIVE
    assert subs[ASSETS].failures == 0


def test_a_permission_refusal_is_its_own_slow_state() -> None:
    subs = machine(forbidden_retry=300.0)
    subs.sent(ASSET_DETAIL, 0.0)
    change = subs.refused(ASSET_DETAIL, 0.0, "FORBIDDEN", permission=True)
    assert change.new is ChannelState.FORBIDDEN
    assert subs[ASSET_DETAIL].retry_at == 300.0
    assert subs.summary()[0] is ChannelState.FORBIDDEN  # worse than anything else


def test_an_ack_never_asked_for_is_an_error() -> None:
    with pytest.raises(SubscriptionError):
        machine().acked(ASSETS)


def test_sending_twice_while_pending_is_an_error() -> None:
    subs = machine()
    subs.sent(ASSETS, 0.0)
    with pytest.raises(SubscriptionError):
        subs.sent(ASSETS, 0.5)


def test_a_reconnect_starts_over_but_keeps_the_failure_count() -> None:
    subs = machine()
    subs.sent(ASSETS, 0.0)
    subs.refused(ASSETS, 0.0, "code 2")
    subs.reset()
    assert subs.due(0.0) == [ASSETS, ASSET_DETAIL]
    assert subs[ASSETS].failures == 1


def test_a_retry_refused_again_is_no_change() -> None:
    subs = machine()
    subs.sent(ASSETS, 0.0)
    first = subs.refused(ASSETS, 0.0, "FORBIDDEN", permission=True)
    subs.sent(ASSETS, 400.0)
    again = subs.refused(ASSETS, 400.0, "FORBIDDEN", permission=True)
    assert first.old is ChannelState.IDLE and again.old is ChannelState.FORBIDDEN
    subs.sent(ASSETS, 800.0)
    back = subs.acked(ASSETS)
    assert back is not None and back.old is ChannelState.FORBIDDEN
