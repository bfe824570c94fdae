"""RFC 3339 instants and intervals as used by the STAC ``datetime`` parameter."""

import re
from datetime import UTC, datetime

from .errors import InvalidDatetime

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_OPEN = ("", "..")


def parse_instant(value: str) -> datetime:
    """Parse one RFC 3339 date-time (a time zone is required); return it in UTC."""
    text = value.strip()
    if not _RFC3339.match(text):
        raise InvalidDatetime(f"not an RFC 3339 date-time: {value!r}")
    try:
        parsed = datetime.fromisoformat(text.upper().replace(" ", "T"))
        # In UTC, 0001-01-01T00:00+01:00 falls before year 1 (and 9999-12-31T23:59-01:00 after
        # 9999): Python cannot hold them.
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidDatetime(f"not a valid date-time: {value!r} ({exc})") from exc


def parse_interval(value: str) -> tuple[datetime | None, datetime | None]:
    """Parse ``instant``, ``start/end``, ``../end`` or ``start/..``; None marks an open end."""
    parts = value.split("/")
    if len(parts) == 1:
        instant = parse_instant(parts[0])
        return instant, instant
    if len(parts) != 2:
        raise InvalidDatetime(f"an interval has exactly one '/': {value!r}")
    start = None if parts[0] in _OPEN else parse_instant(parts[0])
    end = None if parts[1] in _OPEN else parse_instant(parts[1])
    if start is None and end is None:
        raise InvalidDatetime("an interval needs at least one bound")
    if start is not None and end is not None and start > end:
        raise InvalidDatetime(f"interval start is after its end: {value!r}")
    return start, end
