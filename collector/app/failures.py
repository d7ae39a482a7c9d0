"""Startup failures -> one plain line and the documented exit code.

Trio's nurseries wrap what a task raised in an ``ExceptionGroup``; an operator
must still see "the master key does not open ...", not 29 lines of traceback.
:func:`exit_code_for` looks through groups for the first failure it knows.
"""

from __future__ import annotations

import ssl
from typing import Final

import trio

from collector.app.statelock import StateDirBusy
from collector.base.logging import redact_url
from collector.config import ConfigError
from collector.gate.errors import GateError
from collector.keys import KeyStoreError
from collector.supervisor.supervisor import StartupError

EXIT_REMOTE: Final = 1  # Gate or InfluxDB unreachable or refusing
EXIT_LOCAL: Final = 2  # configuration and local files
EXIT_INTERNAL: Final = 70  # EX_SOFTWARE: the collector's own failure (a bug)
EXIT_INTERRUPTED: Final = 130


def internal_failure(exc: BaseException) -> tuple[int, str]:
    """(70, one line) for a failure nothing expected: the supervisor's own, a bug.

    Failures of one account, one snapshot or one HTTP client are contained where
    they happen; what reaches here ended the process, so it is named in one line
    (the traceback is logged at debug level, never at info).
    """
    found = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)] or [exc]
    first = found[0]
    return EXIT_INTERNAL, (
        f"internal error: {type(first).__name__}: {_first_line(str(first))[:300]} "
        "(a bug in the collector: please report it with the log at --log-level debug)"
    )


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, in order; ``exc`` if none."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def exit_code_for(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for a known failure; None: a bug, let it show."""
    found = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in found):
        return EXIT_INTERRUPTED, ""
    for leaf in found:
        verdict = _one(leaf)
        if verdict is not None:  # a URL's user:password@ never reaches a terminal
            return verdict[0], redact_url(verdict[1])
    return None


def _one(exc: BaseException) -> tuple[int, str] | None:
    if isinstance(exc, ConfigError | KeyStoreError | StateDirBusy):
        return EXIT_LOCAL, str(exc)
    if isinstance(exc, StartupError | GateError):
        return EXIT_REMOTE, _first_line(str(exc))
    if isinstance(exc, ssl.SSLError):
        return EXIT_LOCAL, f"TLS set-up failed ({exc}); check gate.ca_file"
    if isinstance(exc, OSError):
        return EXIT_LOCAL, describe_os_error(exc)
    if isinstance(exc, UnicodeDecodeError):
        return EXIT_LOCAL, f"a file is not UTF-8 text ({exc.reason}); check the credential files"
    return None


def describe_os_error(exc: OSError) -> str:
    """``PATH: what is wrong; what to do`` for a local file or directory."""
    path = exc.filename if exc.filename is not None else "a local path"
    reason = exc.strerror or str(exc)
    if isinstance(exc, PermissionError):
        todo = "give the collector's user access to it (read; write for state.dir)"
    elif isinstance(exc, IsADirectoryError):
        todo = "it must be a file, not a directory"
    elif isinstance(exc, NotADirectoryError | FileExistsError):
        todo = "a file is in the way where a directory is needed; move it away"
    elif isinstance(exc, FileNotFoundError):
        todo = "check the path in the configuration"
    else:
        todo = "check the path, its type and permissions"
    return f"{path}: {reason}; {todo}"


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text
