"""How RabbitMQ's management API shapes a list: ``sort``/``sort_reverse`` (a dotted key such
as ``message_stats.publish_details.rate``), ``columns`` (keep only these dotted keys) and,
when ``page`` is given, pagination with ``page_size``, ``name`` and ``use_regex``.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


class ListingError(ValueError):
    """A bad query: RabbitMQ's ``error`` word and its ``reason``."""

    def __init__(self, error: str, reason: str):
        super().__init__(reason)
        self.error = error


def _dig(item: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(item, dict) or key not in item:
            return None
        item = item[key]
    return item


def _sort_key(value: Any) -> tuple:
    # missing values first, then numbers, then text, as a total order over mixed types
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool | int | float):
        return (1, value, "")
    return (2, 0, str(value).lower() if isinstance(value, str) else str(value))


def _columns(item: dict, columns: list[list[str]]) -> dict:
    """Only the given dotted keys of ``item`` (what it lacks is left out)."""
    kept: dict = {}
    for path in columns:
        parent = _dig(item, path[:-1])
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        target = kept
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = parent[path[-1]]
    return kept


def _int(query: dict, key: str, default: int) -> int:
    try:
        value = int(query.get(key, default))
    except ValueError:
        raise ListingError("bad_request", f"{key} must be a whole number") from None
    if value < 1:
        raise ListingError("bad_request", f"{key} must be at least 1")
    return value


def answer(items: list[dict], query: dict) -> Any:
    """``items`` as the query asks: a list, or a page object when ``page`` is given."""
    sort = query.get("sort")
    if sort:
        path = sort.split(".")
        items = sorted(items, key=lambda item: _sort_key(_dig(item, path)))
        if query.get("sort_reverse") == "true":
            items.reverse()
    page = query.get("page")
    if page is None:
        shown = items
    else:
        total = len(items)
        name = query.get("name")
        if name:
            if query.get("use_regex") == "true":
                try:
                    pattern = re.compile(name)
                except re.error as error:
                    raise ListingError("bad_request", f"bad regex '{name}': {error}") from None
                items = [item for item in items if pattern.search(str(item.get("name", "")))]
            else:
                wanted = name.lower()
                items = [item for item in items if wanted in str(item.get("name", "")).lower()]
        number = _int(query, "page", 1)
        size = _int(query, "page_size", DEFAULT_PAGE_SIZE)
        if size > MAX_PAGE_SIZE:
            raise ListingError(
                "bad_request", f"Page size cannot exceed {MAX_PAGE_SIZE}, requested: {size}"
            )
        count = max(1, math.ceil(len(items) / size))
        if number > count:
            raise ListingError(
                "page_out_of_range",
                f"Page out of range, page: {number} page size: {size}, len: {len(items)}",
            )
        shown = items[(number - 1) * size : number * size]
    columns = query.get("columns")
    if columns:
        paths = [column.split(".") for column in columns.split(",") if column]
        shown = [_columns(item, paths) for item in shown]
    shown = [dict(sorted(item.items())) for item in shown]  # RabbitMQ sorts list items' keys
    if page is None:
        return shown
    return {
        "filtered_count": len(items),
        "item_count": len(shown),
        "items": shown,
        "page": number,
        "page_count": count,
        "page_size": size,
        "total_count": total,
    }
