"""Conversions between database values and protobuf messages (visionloop.server.hub.protos)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from visionloop.server.hub.protos import from_timestamp, to_timestamp


def from_datetime(value: datetime) -> timestamp_pb2.Timestamp:
    """protobuf's own conversion, which to_timestamp must agree with."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 21, 19, 50, 41, 123456, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch: seconds -1, nanos 999999000
        datetime(1900, 2, 28, 12, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),  # another zone
        datetime(2026, 11, 21, 1, 2, 3, 4),  # naive: local time, as astimezone reads it
    ],
)
def test_to_timestamp_is_the_same_instant_as_protobufs_conversion(value: datetime) -> None:
    stamp = to_timestamp(value)
    assert stamp == from_datetime(value)
    assert 0 <= stamp.nanos < 1_000_000_000
    # and back, but for the epoch itself, which reads as unset
    assert from_timestamp(stamp) == (None if value == datetime(1970, 1, 1, tzinfo=UTC) else value.astimezone(UTC))


def test_no_time_is_no_timestamp() -> None:
    assert to_timestamp(None) is None
    assert from_timestamp(timestamp_pb2.Timestamp()) is None
