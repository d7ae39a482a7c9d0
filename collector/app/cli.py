"""The ``gate-collector`` command.

Exit codes (README, "Exit codes"): 0 done; 1 Gate or InfluxDB unreachable or
refusing; 2 bad input: arguments, configuration or local files (a bad config, a
master key that does not open the key store, an unreadable or unwritable path);
70 an internal error (a bug, one line); 130 interrupted (Ctrl-C), after an
orderly stop. Every failure at start is one
plain line on stderr saying what to do, never a traceback (README, "Bad input").

Only the parser is built at import: each command's module (and trio, pydantic,
structlog behind them) is imported in its own branch once the arguments are
parsed, so ``--version``, ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from collector.base.logchoices import LOG_FORMATS, LOG_LEVELS

PROG = "gate-collector"
EXIT_USAGE = 2  # as argparse's, and as every other bad input


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (what was wrong, where help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _number(kind: type[int] | type[float], least: float, what: str) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` that is at least ``least``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < least or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


positive_int = _number(int, 1, "a whole number of 1 or more")
count = _number(int, 0, "a whole number of 0 or more")
seconds = _number(float, 0, "a number of seconds, 0 or more")
positive_seconds = _number(float, 0.01, "a number of seconds of 0.01 or more")


def http_url(text: str) -> str:
    """An argparse type: ``http(s)://host[:port]``."""
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest.strip("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s)://host:port URL")
    return text


# Commands that read the configuration file.
NEEDS_CONFIG = frozenset({"run", "check", "accounts", "influx-setup"})
# `top --sort` keys (collector.app.top orders by them) and `simulate --fault` kinds (the
# simulator's WsFault kinds): named here so the parser needs no heavy import.
TOP_SORT_KEYS = ("worst", "silence", "gaps", "reconnects", "account")
WS_FAULTS = ("gap", "drop", "silence", "malformed", "error", "upgrade")


def version() -> str:
    """The installed package's version."""
    from importlib import metadata  # slow to import: only for --version

    try:
        return metadata.version("gate-collector")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """argparse's ``version`` action, but the version is read only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        print(f"{PROG} {version()}")
        parser.exit()


def _global_options(suppress: bool) -> _Parser:
    """``--config``, ``--log-level``, ``--log-format``: valid before or after the command.

    The copy after the command has no defaults (SUPPRESS), so it only overrides
    what was actually given there.
    """
    parent = _Parser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parent.add_argument(
        "--config",
        type=Path,
        default=default(None),
        metavar="PATH",
        help="the TOML configuration file (run, check, accounts)",
    )
    parent.add_argument(
        "--log-level",
        default=default(None),
        choices=LOG_LEVELS,
        help="least severe log level written (default: [log] level, else info; "
        "SIGHUP applies [log] level)",
    )
    parent.add_argument(
        "--log-format",
        default=default(None),
        choices=LOG_FORMATS,
        help="json lines; journal: json with journald's <N> priority prefix; console: "
        "for people (default: console on a tty, journal under journald, else json)",
    )
    return parent


def _parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description="Gate.io broker sub-accounts' unified account data into InfluxDB.",
        parents=[_global_options(suppress=False)],
        epilog="exit codes: 0 ok, 1 Gate/InfluxDB unreachable or refusing, "
        "2 bad input (arguments, configuration, local files), 130 interrupted",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_global_options(suppress=True)]

    def command(name: str, help_text: str) -> _Parser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=common)

    run = command("run", "run the collector (the systemd service runs this); SIGHUP reloads")
    run.add_argument(
        "--once",
        "--test",
        action="store_true",
        help="take one REST snapshot per enabled account of this shard, print it as line "
        "protocol on stdout, write nothing to InfluxDB, exit",
    )
    check = command("check", "validate the config, reach Gate and InfluxDB; changes nothing")
    check.add_argument(
        "--offline",
        action="store_true",
        help="validate the config, the credentials and the key store; contact nobody",
    )
    accounts = command("accounts", "list sub-accounts with status and key state")
    accounts.add_argument("--json", action="store_true", help="one JSON document on stdout")
    accounts.add_argument(
        "--provision", action="store_true", help="create missing read-only keys first"
    )
    _simulate_parser(command("simulate", "run the Gate look-alike (for tests and demos)"))
    demo_parser = command(
        "demo", "everything on this machine: simulated Gate, InfluxDB, the collector"
    )
    demo_parser.add_argument(
        "--accounts", type=positive_int, default=36, help="simulated sub-accounts (default: 36)"
    )
    demo_parser.add_argument(
        "--duration", type=seconds, default=20.0, help="seconds to run (0: until Ctrl-C)"
    )
    command("genkey", "print a new master key for the key store")
    _keys_parser(sub)
    _influx_setup_parser(
        command("influx-setup", "create retention policies and 1 m / 1 h downsampling (1.x)")
    )
    _plan_parser(command("plan", "how accounts spread over shards; the safe shard count"))
    watch = command("top", "a live view of a running collector's /status")
    watch.add_argument(
        "--url",
        type=http_url,
        default="http://127.0.0.1:9108",
        help="the collector's [http] listen",
    )
    watch.add_argument(
        "--interval", type=positive_seconds, default=1.0, help="seconds between redraws"
    )
    watch.add_argument(
        "--sort",
        choices=TOP_SORT_KEYS,
        default="worst",
        help="order of the account rows (default: worst: not active, then the longest "
        "data silence, gaps, reconnects)",
    )
    return parser


def command_options() -> dict[str, dict[str, str | None]]:
    """Each command's options with their help text, for documentation and completion:
    ``""`` for the options before any command, ``keys list`` for a nested command.

    argparse lists a parser's arguments only in its private ``_actions``: read here alone.
    """
    found: dict[str, dict[str, str | None]] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        options: dict[str, str | None] = {}
        chooses = False
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                chooses = True
                for child, sub in action.choices.items():
                    walk(f"{name} {child}".strip(), sub)
            else:
                options[" ".join(action.option_strings) or action.dest] = action.help
        if not name or not chooses:  # a parser that only chooses a command is not one
            found[name] = options

    walk("", _parser())
    return found


def _keys_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``keys`` sub-command and its own sub-commands."""
    keys = sub.add_parser("keys", help="list or repair the key store (never shows secrets)")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="{list,repair}")
    listing = actions.add_parser("list", help="account ids, key ids and when each was stored")
    listing.add_argument("--config", type=Path, required=True, help="the TOML configuration file")
    repair = actions.add_parser(
        "repair", help="keep every readable key of a store with corrupt lines (old file kept)"
    )
    repair.add_argument("--config", type=Path, required=True, help="the TOML configuration file")


def _influx_setup_parser(setup: argparse.ArgumentParser) -> None:
    setup.add_argument(
        "--raw",
        default=None,
        help="keep raw points this long, e.g. 30d (changes the policy the collector writes to, "
        "usually the database's default; without it, that policy is left alone)",
    )
    setup.add_argument("--minute", default="180d", help="keep 1-minute data (default 180d)")
    setup.add_argument("--hour", default="INF", help="keep 1-hour data (default INF: forever)")


def _plan_parser(planner: argparse.ArgumentParser) -> None:
    source = planner.add_mutually_exclusive_group(required=True)
    source.add_argument("--accounts", type=positive_int, help="plan for N random account ids")
    source.add_argument(
        "--accounts-from-gate", type=Path, metavar="CONFIG", help="the broker's enabled accounts"
    )
    planner.add_argument("--shards", type=positive_int, required=True, help="shards to plan for")
    planner.add_argument(
        "--per-ip", type=positive_int, default=300, help="Gate's connections per IP"
    )
    planner.add_argument("--addresses", type=positive_int, default=1, help="egress IPs per shard")
    planner.add_argument("--seed", type=int, default=0, help="for --accounts N")


def _simulate_parser(simulate: argparse.ArgumentParser) -> None:
    simulate.add_argument(
        "--accounts", type=count, default=20, help="simulated sub-accounts (default: 20)"
    )
    simulate.add_argument(
        "--disabled-every",
        type=count,
        default=5,
        help="every Nth sub-account is disabled (default: 5; 0: none)",
    )
    simulate.add_argument(
        "--change-every",
        type=seconds,
        default=0.0,
        help="seconds between changes of each account, each pushed (default: 0: never)",
    )
    simulate.add_argument(
        "--quiet-every",
        type=count,
        default=0,
        help="every Nth enabled account never changes: Gate pushes nothing (default: 0: none)",
    )
    simulate.add_argument(
        "--rate-limit",
        type=positive_int,
        default=80,
        help="REST calls per 10 s per key before 429 (default: 80, Gate's)",
    )
    simulate.add_argument(
        "--fault",
        choices=WS_FAULTS,
        help="a WebSocket fault to inject into a random busy account every --fault-every s",
    )
    simulate.add_argument(
        "--fault-every", type=positive_seconds, default=10.0, help="seconds between faults"
    )
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on")
    simulate.add_argument("--rest-port", type=count, default=0, help="REST port (0: any free)")
    simulate.add_argument("--ws-port", type=count, default=0, help="WebSocket port (0: any free)")
    simulate.add_argument(
        "--credentials-dir",
        type=Path,
        required=True,
        help="where to write the broker key files gate-api-key / gate-api-secret (mode 0600)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    # Past the parser: now the heavy imports (--version, --help and errors ended above).
    import trio

    from collector.app.failures import exit_code_for, internal_failure
    from collector.base import logging

    if args.command == "run" and not args.once:
        # The service logs to stdout (journald, Docker and Kubernetes collect it).
        logging.configure(args.log_level or "info", stream=sys.stdout, fmt=args.log_format)
    else:
        # stdout stays clean for --json, tables, line protocol and the demo's progress.
        quiet = args.command in ("demo", "top")
        level = "warning" if quiet else args.log_level or "info"
        logging.configure(level, stream=sys.stderr, fmt=args.log_format)
    try:
        return trio.run(_dispatch, args)
    except BaseException as exc:  # every known failure becomes one line and a code
        verdict = exit_code_for(exc)
        if verdict is None:
            logging.get_logger(__name__).debug("internal_error", exc_info=exc)
            verdict = internal_failure(exc)
        code, message = verdict
        if message:
            print(f"{PROG}: {message}", file=sys.stderr)
        return code


async def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; each imports its own module here, not at the top."""
    from collector.config import ConfigError

    config: Path | None = args.config
    if args.command in NEEDS_CONFIG and config is None:
        raise ConfigError(f"`{PROG} {args.command}` needs --config PATH (the TOML file)")
    if args.command == "run":
        assert config is not None
        return await _run(args, config)
    if args.command == "check":
        from collector.app import check

        assert config is not None
        return await check.check(config, offline=args.offline)
    if args.command == "accounts":
        from collector.app import commands

        assert config is not None
        return await commands.accounts(config, as_json=args.json, provision=args.provision)
    if args.command == "influx-setup":
        from collector.app import influx_setup

        assert config is not None
        return await influx_setup.main(config, args.raw, args.minute, args.hour)
    return await _dispatch_local(args)


async def _run(args: argparse.Namespace, config: Path) -> int:
    """``run`` (the daemon) or ``run --once``."""
    import signal

    from collector.app.failures import EXIT_INTERRUPTED
    from collector.base import logging
    from collector.config import load_settings

    settings = load_settings(config)
    if args.once:
        from collector.app import once

        return await once.run_once(settings)
    from collector.app.daemon import run_daemon

    # The command line wins over [log].
    level = args.log_level or settings.log.level or "info"
    logging.configure(level, sys.stdout, args.log_format or settings.log.format)
    stopped_by = await run_daemon(settings, config_path=config)
    # SIGTERM (systemd, Kubernetes) is the normal stop; Ctrl-C is 130 like every command.
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else 0


async def _dispatch_local(args: argparse.Namespace) -> int:
    """The commands that need no --config (``plan`` may read one of its own)."""
    if args.command == "simulate":
        from collector.app import commands

        return await commands.simulate(
            commands.SimulateOptions(
                accounts=args.accounts,
                disabled_every=args.disabled_every,
                change_every=args.change_every,
                quiet_every=args.quiet_every,
                rate_limit=args.rate_limit,
                fault=args.fault,
                fault_every=args.fault_every,
            ),
            args.host,
            args.rest_port,
            args.ws_port,
            args.credentials_dir,
        )
    if args.command == "demo":
        from collector.app import demo

        return await demo.run(args.accounts, args.duration)
    if args.command == "genkey":
        from collector.app import commands

        return commands.genkey()
    if args.command == "keys":
        from collector.app import keys_cmd

        return keys_cmd.run(args)
    if args.command == "top":
        from collector.app import top

        return await top.run(args.url, args.interval, args.sort)
    if args.command == "plan":
        from collector.app import plan

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
