"""Walking Gate's ``limit``/``offset`` lists page by page, without trusting them to end.

A list ends at its first short page. A page that repeats the one before, or a
list that runs past :data:`MAX_PAGES`, is Gate's paging gone wrong: an error,
never an endless loop. The pages come from ``fetch``, whatever sends the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from collector.gate.errors import BadResponseError

DEFAULT_PAGE_SIZE: Final = 100
# A list that has not ended after this many pages is Gate looping, not a broker:
# 10,000 pages of 100 is a million sub-accounts.
MAX_PAGES: Final = 10_000

# One page's answer for the given query parameters (limit and offset among them).
PageFetch = Callable[[dict[str, Any]], Awaitable[Any]]


async def pages(
    fetch: PageFetch, path: str, params: dict[str, Any], page_size: int
) -> AsyncIterator[Any]:
    """Every row of the list at ``path`` (``GET``), in order, page by page."""
    offset = 0
    previous: list[Any] | None = None  # the ids of the page before
    for number in range(1, MAX_PAGES + 1):
        page = as_list(await fetch({**params, "limit": page_size, "offset": offset}), path)
        ids = [_row_id(row) for row in page]
        if ids and ids == previous:
            raise BadResponseError(
                f"GET {path}: page {number} (offset {offset}) repeats the page before; "
                "Gate's paging is broken, stopping instead of looping forever"
            )
        for row in page:
            yield row
        if len(page) < page_size:
            return
        previous = ids
        offset += len(page)
    raise BadResponseError(
        f"GET {path}: more than {MAX_PAGES} pages of {page_size}; Gate's paging looks "
        "broken, stopping instead of looping forever"
    )


def as_list(data: Any, what: str) -> list[Any]:
    """``data`` when it is a JSON array, else Gate's answer is malformed."""
    if not isinstance(data, list):
        raise BadResponseError(
            f"{what}: expected a JSON array from Gate, got {type(data).__name__}"
        )
    return data


def _row_id(row: Any) -> Any:
    """What identifies a listed row (the whole row when it names no id)."""
    if isinstance(row, dict):
        return row.get("user_id", row.get("id", row))
    return row
