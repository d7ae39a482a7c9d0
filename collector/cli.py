"""The ``gate-collector`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from collector import commands, logging
from collector.config import ConfigError
from collector.gate.errors import GateError
from collector.keys import KeyStoreError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gate-collector",
        description="Gate.io broker sub-accounts' unified account data into InfluxDB.",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

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
    simulate.add_argument(
        "--credentials-dir",
        type=Path,
        required=True,
        help="where to write the broker key files gate-api-key / gate-api-secret (mode 0600)",
    )

    demo = sub.add_parser("demo", help="everything on this machine: simulator, collector")
    demo.add_argument("--accounts", type=int, default=24)

    sub.add_parser("genkey", help="print a new master key for the key store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    # Logs go to stderr so stdout stays clean for --json and tables.
    logging.configure(args.log_level, stream=sys.stderr)
    try:
        return trio.run(_dispatch, args)
    except (ConfigError, KeyStoreError, GateError) as exc:
        print(f"gate-collector: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return await commands.check(args.config)
    if args.command == "accounts":
        return await commands.accounts(args.config, as_json=args.json, provision=args.provision)
    if args.command == "simulate":
        return await commands.simulate(
            args.accounts, args.disabled_every, args.host, args.rest_port, args.credentials_dir
        )
    if args.command == "demo":
        return await commands.demo(args.accounts)
    if args.command == "genkey":
        return commands.genkey()
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
