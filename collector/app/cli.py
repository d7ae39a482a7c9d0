"""The ``gate-collector`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from collector import logging
from collector.app import commands, demo, influx_setup, keys_cmd, plan, top
from collector.app.daemon import run_daemon
from collector.config import ConfigError, load_settings
from collector.gate.errors import GateError
from collector.keys import KeyStoreError
from collector.supervisor import StartupError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gate-collector",
        description="Gate.io broker sub-accounts' unified account data into InfluxDB.",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the collector (the systemd service runs this)")
    run.add_argument("--config", type=Path, required=True)

    check = sub.add_parser("check", help="validate the config, reach Gate and InfluxDB")
    check.add_argument("--config", type=Path, required=True)

    accounts = sub.add_parser("accounts", help="list sub-accounts with status and key state")
    accounts.add_argument("--config", type=Path, required=True)
    accounts.add_argument("--json", action="store_true", help="one JSON document on stdout")
    accounts.add_argument(
        "--provision", action="store_true", help="create missing read-only keys first"
    )

    simulate = sub.add_parser("simulate", help="run the Gate look-alike (for tests and demos)")
    simulate.add_argument("--accounts", type=int, default=20)
    simulate.add_argument("--disabled-every", type=int, default=5)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--rest-port", type=int, default=0)
    simulate.add_argument("--ws-port", type=int, default=0)
    simulate.add_argument(
        "--credentials-dir",
        type=Path,
        required=True,
        help="where to write the broker key files gate-api-key / gate-api-secret (mode 0600)",
    )

    demo = sub.add_parser(
        "demo", help="everything on this machine: simulated Gate, InfluxDB, the collector"
    )
    demo.add_argument("--accounts", type=int, default=36)
    demo.add_argument(
        "--duration", type=float, default=20.0, help="seconds to run (0: until Ctrl-C)"
    )

    sub.add_parser("genkey", help="print a new master key for the key store")
    keys_cmd.add_parser(sub)

    setup = sub.add_parser(
        "influx-setup", help="create retention policies and 1 m / 1 h downsampling (InfluxDB 1.x)"
    )
    setup.add_argument("--config", type=Path, required=True)
    setup.add_argument("--raw", default="30d", help="keep raw points this long (default 30d)")
    setup.add_argument("--minute", default="180d", help="keep 1-minute data (default 180d)")
    setup.add_argument("--hour", default="INF", help="keep 1-hour data (default INF: forever)")

    planner = sub.add_parser("plan", help="how accounts spread over shards; the safe shard count")
    source = planner.add_mutually_exclusive_group(required=True)
    source.add_argument("--accounts", type=int, help="plan for N random account ids")
    source.add_argument(
        "--accounts-from-gate", type=Path, metavar="CONFIG", help="the broker's enabled accounts"
    )
    planner.add_argument("--shards", type=int, required=True)
    planner.add_argument("--per-ip", type=int, default=300, help="Gate's connections per IP")
    planner.add_argument("--addresses", type=int, default=1, help="egress IPs per shard")
    planner.add_argument("--seed", type=int, default=0, help="for --accounts N")

    top = sub.add_parser("top", help="a live view of a running collector's /status")
    top.add_argument("--url", default="http://127.0.0.1:9108", help="the collector's [http] listen")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        # The service logs to stdout: journald keeps the <N> priority prefix.
        logging.configure(args.log_level, stream=sys.stdout)
    else:
        # stdout stays clean for --json, tables and the demo's progress.
        level = "warning" if args.command in ("demo", "top") else args.log_level
        logging.configure(level, stream=sys.stderr)
    try:
        return trio.run(_dispatch, args)
    except (ConfigError, KeyStoreError) as exc:
        print(f"gate-collector: {exc}", file=sys.stderr)
        return 2
    except (StartupError, GateError) as exc:
        print(f"gate-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        await run_daemon(load_settings(args.config))
        return 0
    if args.command == "check":
        return await commands.check(args.config)
    if args.command == "accounts":
        return await commands.accounts(args.config, as_json=args.json, provision=args.provision)
    if args.command == "simulate":
        return await commands.simulate(
            args.accounts,
            args.disabled_every,
            args.host,
            args.rest_port,
            args.ws_port,
            args.credentials_dir,
        )
    if args.command == "demo":
        return await demo.run(args.accounts, args.duration)
    if args.command == "genkey":
        return commands.genkey()
    if args.command == "keys":
        return keys_cmd.run(args)
    if args.command == "influx-setup":
        return await influx_setup.main(args.config, args.raw, args.minute, args.hour)
    if args.command == "top":
        return await top.run(args.url, args.interval)
    if args.command == "plan":
        return await plan.run(
            config=args.accounts_from_gate,
            accounts=args.accounts,
            shards=args.shards,
            per_ip=args.per_ip,
            addresses=args.addresses,
            seed=args.seed,
        )
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
