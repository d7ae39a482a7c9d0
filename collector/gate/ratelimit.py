"""Rate-limit and Retry-After headers -> seconds to wait (pure; shared by REST and the sink).

Gate sends ``X-Gate-RateLimit-Reset-Timestamp`` in seconds in live captures and
in milliseconds in some examples: both are accepted. Outside a limit Gate says
the value is "just the current timestamp", so a refusal whose reset is now or
past must still wait a sane window, never spin. ``Retry-After`` (RFC 9110) is
delta-seconds or an HTTP date; a value past ``cap`` is not believed beyond it.
"""

from __future__ import annotations

import email.utils
from typing import Final

# Past this, a timestamp is in milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD: Final = 1e11
# Gate's rate-limit windows are 10 s: a refusal with no usable reset waits about that.
MIN_REFUSAL_WAIT: Final = 10.0


def reset_timestamp(value: str | None) -> float | None:
    """``X-Gate-RateLimit-Reset-Timestamp`` as wall-clock seconds; None if absent or bad."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number != number or number <= 0:  # NaN or nonsense
        return None
    return number / 1000.0 if number > _MS_THRESHOLD else number


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (wall clock); None if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - now)


def refusal_wait(
    *, reset: float | None, retry: float | None, now: float, jitter: float, cap: float
) -> float:
    """Seconds to wait after a 429, never zero and never more than ``cap``.

    ``Retry-After`` wins; else the reset if it is in the future; else (no reset,
    or a reset that is now or past) :data:`MIN_REFUSAL_WAIT`, spread by
    ``jitter`` in [0, 1) over up to a quarter more, so the callers Gate refused
    together do not all come back in the same instant. A told wait is kept as
    told: Gate opens the window then, and waiting longer only loses time.
    """
    if retry is not None and retry > 0:
        wait = retry
    elif reset is not None and reset > now:
        wait = reset - now
    else:
        wait = MIN_REFUSAL_WAIT * (1.0 + 0.25 * jitter)
    return min(cap, wait)
