"""Small conversions between database values and protobuf messages shared by the hub servicers."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """The instant ``value`` is (a naive one read as local time, as ``astimezone`` reads it).

    Integer arithmetic on the difference from the epoch: exact to the microsecond, and a third of
    ``Timestamp.FromDatetime``'s cost, which a page of images pays twice per image.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.astimezone(UTC)
    since = value - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000)


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime | None:
    """None for an unset timestamp (seconds and nanos both zero)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)
