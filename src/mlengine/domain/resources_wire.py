"""Scalar wire types of the v1 API, as pydantic ``Annotated`` types.

Each type validates what a client may send and serialises (in ``mode="json"``) to the
canonical form the API returns:

* ``Int64`` - ``int``; a JSON number or a numeric string (``"4"``); written as a string.
* ``Int32`` - ``int``; a JSON number or a numeric string; written as a number.
* ``Double`` - ``float``; a number, a numeric string, ``"NaN"``, ``"Infinity"`` or
  ``"-Infinity"``; written as a number (non-finite values as those strings).
* ``Timestamp`` - aware UTC ``datetime``; an RFC 3339 string or a datetime (naive = UTC);
  written as ``"2017-03-07T17:13:34Z"``.
* ``Duration`` - ``timedelta``; a google-duration (``"7200s"``) or a timedelta; written as
  ``"7200s"``.
* ``Base64Bytes`` - ``bytes``; base64 text (standard or URL-safe, padding optional) or bytes;
  written as standard padded base64.
* ``Bool`` - ``bool``; JSON ``true``/``false`` only.

Integral floats (``4.0``) are accepted for integers, as protobuf's JSON parser does; booleans
are never numbers.  Each type carries a :class:`WireFormat` marker naming its discovery
``format`` so that tests can check the models against ``ml.v1.json``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, Strict
from pydantic_core import PydanticCustomError

from mlengine.domain.durations import (
    MAX_DURATION_SECONDS,
    as_utc,
    format_duration,
    format_timestamp,
    parse_duration,
    parse_timestamp,
)


class WireFormat(StrEnum):
    """The discovery document's ``format`` for a scalar field."""

    INT64 = "int64"
    INT32 = "int32"
    DOUBLE = "double"
    TIMESTAMP = "google-datetime"
    DURATION = "google-duration"
    BYTES = "byte"


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")
_INT_RANGES = {WireFormat.INT64: 2**63, WireFormat.INT32: 2**31}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _integer_error(kind: WireFormat) -> PydanticCustomError:
    if kind is WireFormat.INT64:
        return PydanticCustomError(
            "int64_type", 'expected an integer (int64, may be a string such as "4")'
        )
    return PydanticCustomError("int32_type", "expected an integer (int32), e.g. 4")


def _to_integer(value: object, kind: WireFormat) -> int:
    if isinstance(value, bool):
        raise _integer_error(kind)
    match value:
        case int():
            number = value
        case float() if value.is_integer():
            number = int(value)
        case str() if _INTEGER_TEXT.fullmatch(value):
            number = int(value)
        case _:
            raise _integer_error(kind)
    limit = _INT_RANGES[kind]
    if not -limit <= number < limit:
        raise PydanticCustomError(
            f"{kind.value}_range",
            "expected an integer ({kind}) between {low} and {high}",
            {"kind": kind.value, "low": -limit, "high": limit - 1},
        )
    return number


def _to_int64(value: object) -> int:
    return _to_integer(value, WireFormat.INT64)


def _to_int32(value: object) -> int:
    return _to_integer(value, WireFormat.INT32)


def _to_double(value: object) -> float:
    error = PydanticCustomError(
        "double_type", 'expected a number (double), e.g. 0.5, or "NaN"/"Infinity"/"-Infinity"'
    )
    if isinstance(value, bool):
        raise error
    if isinstance(value, str):
        if value in _NON_FINITE:
            return _NON_FINITE[value]
        try:
            number = float(value)
        except ValueError:
            raise error from None
        # float() also reads "nan"/"inf" spellings the API does not use.
        if not math.isfinite(number):
            raise error
        return number
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise error from None
    raise error


def _write_double(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _to_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise PydanticCustomError("timestamp_parsing", str(exc)) from None
    raise PydanticCustomError(
        "timestamp_type", 'expected an RFC 3339 timestamp string such as "2017-03-07T17:13:34Z"'
    )


def _to_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        if abs(value.total_seconds()) > MAX_DURATION_SECONDS:
            raise PydanticCustomError("duration_range", "duration is out of range")
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration_parsing", str(exc)) from None
    raise PydanticCustomError(
        "duration_type", 'expected a duration string in seconds with an "s" suffix, e.g. "7200s"'
    )


def _to_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    error = PydanticCustomError("base64_type", "expected a base64-encoded string")
    if not isinstance(value, str) or not value.isascii():
        raise error
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise error
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise error from None


def _write_bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Int64 = Annotated[
    int,
    WireFormat.INT64,
    BeforeValidator(_to_int64),
    PlainSerializer(str, return_type=str, when_used="json"),
]
Int32 = Annotated[int, WireFormat.INT32, BeforeValidator(_to_int32)]
Double = Annotated[
    float,
    WireFormat.DOUBLE,
    BeforeValidator(_to_double),
    PlainSerializer(_write_double, when_used="json"),
]
Timestamp = Annotated[
    datetime,
    WireFormat.TIMESTAMP,
    BeforeValidator(_to_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
Duration = Annotated[
    timedelta,
    WireFormat.DURATION,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
Base64Bytes = Annotated[
    bytes,
    WireFormat.BYTES,
    BeforeValidator(_to_bytes),
    PlainSerializer(_write_bytes, return_type=str, when_used="json"),
]
Bool = Annotated[bool, Strict()]
