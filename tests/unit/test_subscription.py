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


# -- Subscription rules found by mutation testing (tests/MUTATION.md): values, not just states


def acking() -> Subscriptions:
    return Subscriptions(CHANNELS, rng=random.Random(7), ack_timeout=10.0)


def test_an_unasked_ack_names_the_channel() -> None:
    with pytest.raises(SubscriptionError) as raised:
        acking().acked(ASSETS)
    assert str(raised.value) == f"{ASSETS}: an ack for a subscribe never sent"


def test_a_second_pending_subscribe_names_the_channel() -> None:
    subs = acking()
    subs.sent(ASSET_DETAIL, 0.0)
    with pytest.raises(SubscriptionError) as raised:
        subs.sent(ASSET_DETAIL, 1.0)
    assert str(raised.value) == f"{ASSET_DETAIL}: a subscribe is already pending"


def test_every_change_names_its_channel() -> None:
    subs = acking()
    subs.sent(ASSETS, 0.0)
    subs.sent(ASSET_DETAIL, 0.0)
    refused = subs.refused(ASSETS, 0.0, "code 2")
    assert (refused.channel, refused.reason) == (ASSETS, "code 2")
    acked = subs.acked(ASSET_DETAIL)
    assert acked is not None and (acked.channel, acked.reason) == (ASSET_DETAIL, "")
    subs.sent(ASSETS, 5.0)
    (expired,) = subs.expire(15.0)
    assert (expired.channel, expired.reason) == (ASSETS, "no ack within 10 s")
    assert (expired.old, expired.new) == (ChannelState.REFUSED, ChannelState.REFUSED)


def test_an_ack_clears_the_reason_and_the_failures() -> None:
    subs = acking()
    subs.sent(ASSETS, 0.0)
    subs.refused(ASSETS, 0.0, "code 3: service error")
    subs.sent(ASSETS, 5.0)
    subs.acked(ASSETS)
    channel = subs[ASSETS]
    assert (channel.reason, channel.failures) == ("", 0)
    assert (channel.deadline, channel.retry_at) == (None, None)


def test_a_refusal_drops_the_ack_deadline_and_waits_for_the_retry() -> None:
    subs = acking()
    subs.sent(ASSETS, 0.0)
    subs.refused(ASSETS, 2.0, "code 2")
    channel = subs[ASSETS]
    assert channel.deadline is None
    assert channel.retry_at is not None and 2.5 <= channel.retry_at <= 3.0  # base 1 s, jitter
    assert subs.next_deadline() == channel.retry_at


def test_without_an_rng_retries_still_back_off() -> None:
    subs = Subscriptions(CHANNELS, retry_base=1.0)
    subs.sent(ASSETS, 0.0)
    subs.refused(ASSETS, 0.0, "code 2")
    retry_at = subs[ASSETS].retry_at
    assert retry_at is not None and 0.5 <= retry_at <= 1.0


def test_the_rng_given_draws_the_jitter() -> None:
    retries = []
    for _ in range(2):
        subs = Subscriptions(CHANNELS, rng=random.Random(11), retry_base=100.0, retry_max=200.0)
        subs.sent(ASSETS, 0.0)
        subs.refused(ASSETS, 0.0, "code 2")
        retries.append(subs[ASSETS].retry_at)
    assert retries[0] == retries[1] == random.Random(11).uniform(50.0, 100.0)
