"""Wire forms of time: ``google-duration`` strings and RFC 3339 timestamps.

The v1 API writes a duration as decimal seconds with an ``s`` suffix (``"7200s"``,
``"1.5s"``, up to nine fractional digits) and a timestamp as RFC 3339 in UTC
(``"2017-03-07T17:13:34Z"``, fractional seconds allowed).  Inside mlengine durations are
:class:`datetime.timedelta` and timestamps are timezone-aware UTC :class:`datetime.datetime`.

Python keeps microseconds, so digits beyond the sixth fractional digit are truncated on
input; everything the engine itself produces round-trips exactly.

Parsers raise :class:`ValueError` with a message meant for people; the resource layer turns
it into an ``InvalidArgument`` that names the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: The largest duration protobuf allows, about 10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000

_DURATION = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9}))?s$", re.ASCII)
_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)


def parse_duration(text: str) -> timedelta:
    """Parse a google-duration such as ``"7200s"`` or ``"1.5s"``.

    Raises ValueError when ``text`` is not ``[-]<digits>[.<1-9 digits>]s`` or is out of range.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; write seconds with an 's' suffix, "
            'e.g. "7200s" or "1.5s"'
        )
    sign, whole, fraction = match.groups()
    seconds = int(whole)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than the maximum of {MAX_DURATION_SECONDS}s")
    micros = int((fraction or "").ljust(6, "0")[:6])
    value = timedelta(seconds=seconds, microseconds=micros)
    return -value if sign else value


def format_duration(value: timedelta) -> str:
    """Write ``value`` as a google-duration: ``"7200s"``, ``"1.5s"``, ``"-0.000001s"``.

    Inverse of :func:`parse_duration` for every timedelta with whole microseconds.
    """
    total_micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total_micros < 0 else ""
    seconds, micros = divmod(abs(total_micros), 1_000_000)
    if micros == 0:
        return f"{sign}{seconds}s"
    return f"{sign}{seconds}.{micros:06d}".rstrip("0") + "s"


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or a numeric offset) into an aware UTC datetime.

    Raises ValueError for anything else, including dates without a time or an offset.
    """
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(
            f'{text!r} is not an RFC 3339 timestamp; write e.g. "2017-03-07T17:13:34Z"'
        )
    date, time, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{time}.{micros}{offset}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is not a valid date and time: {exc}") from None


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Write ``value`` as RFC 3339 UTC with a ``Z``: 0, 3 or 6 fractional digits, like protobuf."""
    value = as_utc(value)
    # Not strftime: it does not zero-pad years before 1000 on every platform.
    base = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    micros = value.microsecond
    if micros == 0:
        return f"{base}Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"
