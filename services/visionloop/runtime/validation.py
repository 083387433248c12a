"""Every request checked against its contract at the edge, before any handler sees it.

``guard`` rebuilds a method handler so that its request deserializer never raises: a message
that does not parse, or breaks a limit, becomes a ``Rejected`` value, which the handler's
behaviour turns into INVALID_ARGUMENT inside the interceptor chain (so it is logged as one
line, counted in the metrics, and never reaches a handler). For request streams, each message
is checked as it is read; the stream ends with INVALID_ARGUMENT at the first bad one.

What a field may hold comes from its descriptor (``limits``): the contract's
``(visionloop.common.v1.limits)`` field option, or the defaults documented in
protos/visionloop/common/v1/limits.proto. Unknown fields are dropped, so nothing a contract
does not describe is stored or echoed back.

Each message type's limits are compiled once: a generated predicate (``fastcheck``) answers
for the common case of a message within them; only a message it refuses is walked here, field
by field, to name what is out of bounds.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from visionloop.common.v1 import limits_pb2
from visionloop.runtime import fastcheck
from visionloop.runtime import limits as L
from visionloop.runtime.errors import InvalidArgument
from visionloop.runtime.rpc import Behaviour
from visionloop.runtime.text import quoted

Check = Callable[[Any], None]
_UNKNOWN_SIZE = 2**63


class _Violation(Exception):
    """A value out of bounds; the path is collected on the way out (built only when something fails)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def describe(self) -> str:
        return f"{''.join(reversed(self.path)).lstrip('.')}: {self.reason}"


def _string(limit: int) -> Check:
    def check(value: str) -> None:
        if len(value) > limit:
            raise _Violation(f"{len(value)} characters, at most {limit} allowed")
        if "\x00" in value:
            raise _Violation("contains a NUL character")

    return check


def _bytes(limit: int) -> Check:
    def check(value: bytes) -> None:
        if len(value) > limit:
            raise _Violation(f"{len(value)} bytes, at most {limit} allowed")

    return check


def _within(low: float | None, high: float | None, unit: str = "") -> Check | None:
    if low is None and high is None:
        return None

    def check(value: float) -> None:
        if (low is not None and value < low) or (high is not None and value > high):
            if low is None:
                bound = f"at most {high:g}{unit}"
            elif high is None:
                bound = f"at least {low:g}{unit}"
            else:
                bound = f"between {low:g}{unit} and {high:g}{unit}"
            raise _Violation(f"{value:g}{unit} is out of range: must be {bound}")

    return check


def _float(limits: limits_pb2.Limits) -> Check | None:
    within = _within(*L.bounds(limits))
    if limits.allow_non_finite:
        return within

    def check(value: float) -> None:
        if not math.isfinite(value):
            raise _Violation(f"{value} is not a finite number")
        if within is not None:
            within(value)

    return check


def _enum(field: FieldDescriptor) -> Check:
    enum = L.enum_type(field)
    known = frozenset(enum.values_by_number)

    def check(value: int) -> None:
        if value not in known:
            raise _Violation(f"{value} is not a value of {enum.name}")

    return check


def _timestamp(value: Message) -> None:
    seconds, nanos = value.seconds, value.nanos  # type: ignore[attr-defined]
    if not (L.MIN_TIMESTAMP_SECONDS <= seconds <= L.MAX_TIMESTAMP_SECONDS and 0 <= nanos <= L.MAX_NANOS):
        raise _Violation(
            f"timestamp (seconds={seconds}, nanos={nanos}) is outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )


def _duration(limits: limits_pb2.Limits) -> Check:
    within = _within(*L.duration_bounds(limits), " s")
    assert within is not None

    def check(value: Message) -> None:
        seconds, nanos = value.seconds, value.nanos  # type: ignore[attr-defined]
        if (
            abs(seconds) > L.MAX_DURATION_WIRE_SECONDS
            or abs(nanos) > L.MAX_NANOS
            or (seconds > 0 > nanos)
            or (seconds < 0 < nanos)
        ):
            raise _Violation(f"(seconds={seconds}, nanos={nanos}) is not a valid duration")
        within(seconds + nanos / 1e9)

    return check


def _serialized(limit: int, inner: Check | None) -> Check:
    def check(value: Message) -> None:
        size = value.ByteSize()
        if size > limit:
            raise _Violation(f"{size} bytes serialized, at most {limit} allowed")
        if inner is not None:
            inner(value)

    return check


def _one(field: FieldDescriptor, limits: limits_pb2.Limits) -> Check | None:
    """The check of one value of ``field`` (one entry of a repeated field)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _string(L.max_length(field, limits))
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes(L.max_length(field, limits))
    if kind in L.FLOATS:
        return _float(limits)
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum(field)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        message = L.message_type(field)
        if message.full_name == L.TIMESTAMP:
            inner: Check | None = _timestamp
        elif message.full_name == L.DURATION:
            inner = _duration(limits)
        else:
            inner = plan(message)
        return _serialized(limits.max_length, inner) if limits.max_length else inner
    if kind == FieldDescriptor.TYPE_BOOL:
        return None
    return _within(*L.bounds(limits))  # integers: only what the contract declares


def _repeated_floats(one: Check | None, limits: limits_pb2.Limits, max_items: int) -> Check:
    within = _within(*L.bounds(limits))

    def check(values: Any) -> None:
        if len(values) > max_items:
            raise _Violation(f"{len(values)} entries, at most {max_items} allowed")
        if one is None:
            return
        if math.isfinite(sum(values)) and within is None:  # the common case, at C speed
            return
        _entries(one, values)

    return check


def _entries(one: Check, values: Iterable[Any]) -> None:
    for index, value in enumerate(values):
        try:
            one(value)
        except _Violation as violation:
            violation.path.append(f"[{index}]")
            raise


def _repeated(one: Check | None, max_items: int, enum: FieldDescriptor | None) -> Check:
    known = frozenset(L.enum_type(enum).values_by_number) if enum is not None else None

    def check(values: Any) -> None:
        if len(values) > max_items:
            raise _Violation(f"{len(values)} entries, at most {max_items} allowed")
        if known is not None and known.issuperset(values):
            return
        if one is not None:
            _entries(one, values)

    return check


def _map(field: FieldDescriptor, limits: limits_pb2.Limits) -> Check:
    entry = L.message_type(field)
    key_check = _one(entry.fields_by_name["key"], limits_pb2.Limits())
    value_check = _one(entry.fields_by_name["value"], limits)
    max_items = L.max_items(limits)

    def check(mapping: Any) -> None:
        if len(mapping) > max_items:
            raise _Violation(f"{len(mapping)} entries, at most {max_items} allowed")
        for key, value in mapping.items():
            try:
                if key_check is not None:
                    key_check(key)
                if value_check is not None:
                    value_check(value)
            except _Violation as violation:
                violation.path.append(f"[{quoted(key, 40)}]")
                raise

    return check


def _field(field: FieldDescriptor) -> Check | None:
    limits = L.of(field)
    if L.is_map(field):
        return _map(field, limits)
    one = _one(field, limits)
    if not field.is_repeated:
        return one
    max_items = L.max_items(limits)
    if field.type in L.FLOATS:
        return _repeated_floats(one, limits, max_items)
    return _repeated(one, max_items, field if field.type == FieldDescriptor.TYPE_ENUM else None)


_PLANS: dict[Descriptor, Check | None] = {}


def plan(descriptor: Descriptor) -> Check | None:
    """The compiled check of a message type, or None when nothing in it can be out of bounds."""
    if descriptor in _PLANS:
        return _PLANS[descriptor]
    checks: dict[FieldDescriptor, Check] = {}

    def check(message: Message) -> None:
        for field, value in message.ListFields():
            field_check = checks.get(field)
            if field_check is not None:
                try:
                    field_check(value)
                except _Violation as violation:
                    violation.path.append(f".{field.name}")
                    raise

    _PLANS[descriptor] = check  # before the fields: recursive types (Struct, Value) find it
    for field in descriptor.fields:
        field_check = _field(field)
        if field_check is not None:
            checks[field] = field_check
    if not checks:
        _PLANS[descriptor] = None
        return None
    return check


def problem(message: Message, size: int | None = None) -> str | None:
    """What is wrong with ``message`` ("image.metadata.tags[3]: 2000 characters, ..."), or None.

    ``size`` is its serialized size when known (the request's length on the wire).
    """
    descriptor = L.descriptor(message)
    fast = fastcheck.predicate(descriptor)
    if fast is None or fast(message, _UNKNOWN_SIZE if size is None else size):
        return None
    check = plan(descriptor)
    if check is None:
        return None
    try:
        check(message)
    except _Violation as violation:
        return violation.describe()
    return None


@dataclass(frozen=True, slots=True)
class Rejected:
    """What the guarded deserializer returns for a request that does not parse or breaks a limit."""

    reason: str


def decoder(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``deserialize`` made total: a message within its limits (unknown fields dropped), else ``Rejected``."""
    owner = getattr(deserialize, "__self__", None)
    name = getattr(getattr(owner, "DESCRIPTOR", None), "name", "request")

    def decode(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception:  # DecodeError, or whatever a deserializer raises on garbage
            return Rejected(f"the {name} does not parse (corrupt wire format or nested too deeply)")
        if isinstance(message, Message):
            message.DiscardUnknownFields()
            found = problem(message, len(data))
            if found is not None:
                return Rejected(f"{name}.{found}")
        return message

    return decode


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    number = 0
    async for request in requests:
        number += 1
        if type(request) is Rejected:
            raise InvalidArgument(f"stream message {number}: {request.reason}")
        yield request


def _refuse(request: Any) -> None:
    if type(request) is Rejected:
        raise InvalidArgument(request.reason)


def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with every request parsed and checked against the contract before it runs.

    Refusals are raised from inside the behaviour, so the interceptor scopes wrapped around the
    result see them as any other INVALID_ARGUMENT.
    """
    if handler.request_deserializer is None:
        return handler
    codecs = {
        "request_deserializer": decoder(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary: Behaviour = handler.unary_unary

        def unary_unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _refuse(request)
            return unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary_behavior, **codecs)
    if handler.unary_stream is not None:
        unary_stream: Behaviour = handler.unary_stream

        def unary_stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _refuse(request)
            return unary_stream(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream_behavior, **codecs)
    if handler.stream_unary is not None:
        stream_unary: Behaviour = handler.stream_unary

        def stream_unary_behavior(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return stream_unary(_checked(requests), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary_behavior, **codecs)
    stream_stream: Behaviour | None = handler.stream_stream
    assert stream_stream is not None, "a method handler has one of the four behaviours"

    def stream_stream_behavior(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        return stream_stream(_checked(requests), context)

    return grpc.stream_stream_rpc_method_handler(stream_stream_behavior, **codecs)
