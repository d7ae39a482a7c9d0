"""The log levels and formats a person may choose (``--log-level``, ``--log-format``).

Plain constants apart from :mod:`collector.base.logging`, so the command line can
offer them without importing structlog (``gate-collector --version`` stays fast).
"""

from __future__ import annotations

from typing import Final

LOG_FORMATS: Final = ("json", "journal", "console")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")
