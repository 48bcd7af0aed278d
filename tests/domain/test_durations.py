"""google-duration and RFC 3339 timestamp wire forms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlengine.domain.durations import (
    format_duration,
    format_timestamp,
    parse_duration,
    parse_timestamp,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7200s", timedelta(hours=2)),
        ("1.5s", timedelta(seconds=1.5)),
        ("0s", timedelta(0)),
        ("-3.25s", timedelta(seconds=-3.25)),
        ("0.000000001s", timedelta(0)),
        ("604800s", timedelta(days=7)),
    ],
)
def test_parse_duration(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["7200", "1.5 s", "s", "1.1234567891s", "1h", "+1s", "٣s", ""])
def test_bad_durations_explain_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r'e\.g\. "7200s"'):
        parse_duration(text)


def test_duration_out_of_range() -> None:
    with pytest.raises(ValueError, match="maximum"):
        parse_duration("315576000001s")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=2), "7200s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(seconds=-1.5), "-1.5s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(days=-3_000_000), max_value=timedelta(days=3_000_000)))
def test_durations_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_parse_timestamp_variants() -> None:
    expected = datetime(2017, 3, 7, 17, 13, 34, tzinfo=UTC)
    assert parse_timestamp("2017-03-07T17:13:34Z") == expected
    assert parse_timestamp("2017-03-07T19:13:34+02:00") == expected
    nanos = parse_timestamp("2017-03-07T17:13:34.123456789Z")
    assert nanos.microsecond == 123456
    assert nanos.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["2017-03-07", "2017-03-07T17:13:34", "2017-13-07T17:13:34Z", "yesterday", ""]
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError, match=r"2017-03-07T17:13:34Z|valid date"):
        parse_timestamp(text)


def test_format_timestamp_uses_zulu_and_protobuf_precisions() -> None:
    moment = datetime(2017, 3, 7, 17, 13, 34, tzinfo=UTC)
    assert format_timestamp(moment) == "2017-03-07T17:13:34Z"
    assert format_timestamp(moment.replace(microsecond=500000)) == "2017-03-07T17:13:34.500Z"
    assert format_timestamp(moment.replace(microsecond=5)) == "2017-03-07T17:13:34.000005Z"
    east = datetime(2017, 3, 7, 19, 13, 34, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(east) == "2017-03-07T17:13:34Z"
    assert format_timestamp(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00Z"


@given(st.datetimes(timezones=st.just(UTC)))
def test_timestamps_round_trip(value: datetime) -> None:
    assert parse_timestamp(format_timestamp(value)) == value
