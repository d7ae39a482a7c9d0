"""Subscription rules found by mutation testing (tests/MUTATION.md): values, not just states."""

from __future__ import annotations

import random

import pytest

from collector.gate.protocol import ASSET_DETAIL, ASSETS, CHANNELS
from collector.gate.subscription import ChannelState, SubscriptionError, Subscriptions


def machine() -> Subscriptions:
    return Subscriptions(CHANNELS, rng=random.Random(7), ack_timeout=10.0)


def test_an_unasked_ack_names_the_channel() -> None:
    with pytest.raises(SubscriptionError) as raised:
        machine().acked(ASSETS)
    assert str(raised.value) == f"{ASSETS}: an ack for a subscribe never sent"


def test_a_second_pending_subscribe_names_the_channel() -> None:
    subs = machine()
    subs.sent(ASSET_DETAIL, 0.0)
    with pytest.raises(SubscriptionError) as raised:
        subs.sent(ASSET_DETAIL, 1.0)
    assert str(raised.value) == f"{ASSET_DETAIL}: a subscribe is already pending"


def test_every_change_names_its_channel() -> None:
    subs = machine()
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
    subs = machine()
    subs.sent(ASSETS, 0.0)
    subs.refused(ASSETS, 0.0, "code 3: service error")
    subs.sent(ASSETS, 5.0)
    subs.acked(ASSETS)
    channel = subs[ASSETS]
    assert (channel.reason, channel.failures) == ("", 0)
    assert (channel.deadline, channel.retry_at) == (None, None)


def test_a_refusal_drops_the_ack_deadline_and_waits_for_the_retry() -> None:
    subs = machine()
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
