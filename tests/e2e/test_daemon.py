"""End to end: the simulator -> ``gate-collector run`` (a subprocess) -> a real InfluxDB.

The simulator runs in the test's own trio loop, so the test can watch and change
Gate's side (disable an account, add one, revoke a key) while the collector runs
as operators run it, and is stopped with SIGTERM.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from collector.devtools.simulator import Simulator
from collector.devtools.simulator.state import WsFault
from collector.devtools.simulator.ws_values import truncate2
from collector.gate.protocol import ASSET_DETAIL, ASSETS
from collector.keys import generate_master_key
from tests.helpers import GAP_ACCOUNT, Collector, all_subscribed, enabled, query, wait_until
from tests.servers import InfluxServer


async def test_everything_pushed_lands_and_a_restart_creates_no_key(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    db = "e2e"
    collector = Collector(tmp_path, gate, influxdb, db)
    live = enabled(gate)
    assert len(live) == 90

    await collector.start()
    await wait_until(lambda: all_subscribed(gate, live))
    assert gate.state.calls["keys_created"] == 90
    # A few pushes first (a gap before the first is no gap), then the gap and a push after it.
    await wait_until(lambda: all(gate.state.pushed[(a, ASSETS)] > 4 for a in live))
    gate.state.accounts[GAP_ACCOUNT].ws_faults.append(WsFault("gap", ASSET_DETAIL, count=3))
    await wait_until(lambda: gate.state.ws_events["fault_gap"] == 1)
    after_gap = gate.state.pushed[(GAP_ACCOUNT, ASSET_DETAIL)]
    await wait_until(lambda: gate.state.pushed[(GAP_ACCOUNT, ASSET_DETAIL)] > after_gap)
    gate.state.paused = True  # nothing more is produced; what was sent is on its way
    await trio.sleep(1.0)
    assert await collector.stop() == 0
    assert gate.state.ws_events["unsubscribe"] == 180  # each session left politely

    assets = {
        s["tags"]["account"]: s["values"][0][1]
        for s in query(influxdb, db, 'SELECT count("u") FROM gate_unified_assets GROUP BY account')
    }
    details = {
        (s["tags"]["account"], s["tags"]["currency"]): s["values"][0][1:]
        for s in query(
            influxdb,
            db,
            # balance is push-only (no REST twin): its count is the pushes'
            'SELECT count("balance"), last("available"), last("balance") '
            "FROM gate_unified_asset_detail GROUP BY account, currency",
        )
    }
    assert set(assets) == {str(a) for a in live}  # and nothing of a disabled account
    for account in live:
        assert assets[str(account)] == gate.state.pushed[(account, ASSETS)] > 4
        for i, currency in enumerate(("BTC", "ETH", "USDT")):
            count, available, balance = details[(str(account), currency)]
            assert count == gate.state.pushed[(account, ASSET_DETAIL)]
            sent = gate.state.last_pushed[(account, ASSET_DETAIL, currency)]
            assert balance == float(sent["b"])
            # The account's state now: the push's 2-decimal truncation, or a snapshot's
            # full precision (a snapshot may even be newer than the last push).
            state = float(gate.state.accounts[account].balance(i)["available"])
            assert available in (float(truncate2(str(state))), state)

    gaps = query(influxdb, db, "SELECT * FROM gate_sequence_gap")
    assert len(gaps) == 1
    columns, rows = gaps[0]["columns"], gaps[0]["values"]
    assert len(rows) == 1
    gap = dict(zip(columns, rows[0], strict=True))
    assert (gap["account"], gap["channel"], gap["reason"], gap["missed"]) == (
        str(GAP_ACCOUNT),
        ASSET_DETAIL,
        "sequence",
        3,
    )

    log = collector.log.read_text()
    secrets = [
        gate.state.broker.secret,
        collector.master_key,
        *(k.secret for k in gate.state.keys.values()),
    ]
    assert not [s for s in secrets if s in log]
    assert '"event": "session_connected"' in log and '"account": 100001' in log

    # A second run reuses every stored key.
    gate.state.paused = False
    subscribes = gate.state.ws_events["subscribe"]
    await collector.start()
    await wait_until(lambda: gate.state.ws_events["subscribe"] >= subscribes + 180)
    assert await collector.stop() == 0
    assert gate.state.calls["keys_created"] == 90
    assert gate.state.calls["POST keys"] == 90


async def test_accounts_come_and_go_and_revoked_keys_are_replaced(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    db = "changes"
    collector = Collector(tmp_path, gate, influxdb, db, refresh=1.0)
    await collector.start()
    await wait_until(lambda: all_subscribed(gate, enabled(gate)))

    disabled, revoked = 100001, 100004
    gate.state.accounts[disabled].status = "disabled"
    newcomer = gate.state.add_account().gate_id
    (old_key,) = gate.state.keys_of(revoked)
    gate.state.revoke(old_key.key)
    revoked_at = gate.state.now()

    await wait_until(lambda: gate.state.active[newcomer] == 2)
    await wait_until(lambda: gate.state.active[disabled] == 0)
    await wait_until(
        lambda: len(gate.state.keys_of(revoked)) == 1 and gate.state.active[revoked] == 2
    )
    pushed = gate.state.pushed[(revoked, ASSETS)]
    await wait_until(lambda: gate.state.pushed[(revoked, ASSETS)] >= pushed + 4)
    await trio.sleep(2.0)  # the disabled account stays without a session
    assert gate.state.active[disabled] == 0
    assert gate.state.keys_of(disabled)[0].key  # its key is left alone
    gate.state.paused = True
    await trio.sleep(1.0)
    assert await collector.stop() == 0

    assert gate.state.keys_of(revoked)[0].key != old_key.key
    resumed = query(
        influxdb,
        db,
        f"SELECT count(u) FROM gate_unified_assets WHERE account='{revoked}' "
        f"AND time > {int(revoked_at * 1000)}ms",
    )
    assert resumed and resumed[0]["values"][0][1] >= 4
    newcomer_rows = query(
        influxdb, db, f"SELECT count(u) FROM gate_unified_assets WHERE account='{newcomer}'"
    )
    assert newcomer_rows[0]["values"][0][1] == gate.state.pushed[(newcomer, ASSETS)]
    assert '"event": "key_replace"' in collector.log.read_text()


async def test_a_refused_broker_key_exits_non_zero_with_a_plain_message(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    collector = Collector(tmp_path, gate, influxdb, "refused")
    (tmp_path / "creds" / "gate-api-secret").write_text("0" * 64)
    await collector.start()
    assert collector.process is not None
    with trio.fail_after(60):
        code = await collector.process.wait()
    assert code == 1
    log = collector.log.read_text()
    assert "INVALID_SIGNATURE" in log and "0" * 64 not in log


async def test_a_wrong_master_key_exits_with_a_plain_message(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    collector = Collector(tmp_path, gate, influxdb, "master")
    await collector.start()
    await wait_until(lambda: all_subscribed(gate, enabled(gate)))
    assert await collector.stop() == 0
    collector.master_key = generate_master_key()
    await collector.start()
    assert collector.process is not None
    with trio.fail_after(60):
        assert await collector.process.wait() == 2
    assert "does not open" in collector.log.read_text()


async def test_systemd_hears_ready_status_watchdog_and_stopping(
    gate: Simulator, influxdb: InfluxServer, tmp_path: Path
) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    collector = Collector(tmp_path, gate, influxdb, "notify")
    os.environ["NOTIFY_SOCKET"] = str(tmp_path / "notify")
    os.environ["WATCHDOG_USEC"] = "2000000"
    try:
        await collector.start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    heard: list[str] = []

    async def listen() -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            heard.append(sock.recv(4096).decode())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        await wait_until(lambda: any("90/90 sessions connected" in m for m in heard))
        await wait_until(lambda: sum("WATCHDOG=1" in m for m in heard) >= 3)
        assert await collector.stop() == 0
        await wait_until(lambda: any("STOPPING=1" in m for m in heard))
        nursery.cancel_scope.cancel()
    assert heard[0].startswith("EXTEND_TIMEOUT_USEC=")  # while keys are provisioned
    assert any(m.startswith("READY=1\nSTATUS=") for m in heard)
