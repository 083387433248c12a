"""Generated predicates that tell, fast, whether a message keeps to its contract's limits.

The explaining check in ``validation`` walks a message through one closure per field and
names the first value out of bounds; that costs about 1.5 µs per nested message, 25 µs for an
UploadImage request with a few detections. Requests almost always keep to the limits, so
each message type also gets one generated function that evaluates all its limits as a
single expression, without a call per field; only when it answers False does the explaining
check run (it has the last word: the predicate may only err towards False, e.g. when the sum
it uses to check many floats at C speed overflows).
"""

from __future__ import annotations

import itertools
import keyword
import math
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from visionloop.common.v1 import limits_pb2
from visionloop.runtime import limits as L


def _timestamp_ok(value: Any) -> bool:
    return L.MIN_TIMESTAMP_SECONDS <= value.seconds <= L.MAX_TIMESTAMP_SECONDS and 0 <= value.nanos <= L.MAX_NANOS


def _duration_ok(value: Any, low: float, high: float) -> bool:
    seconds, nanos = value.seconds, value.nanos
    return (
        abs(seconds) <= L.MAX_DURATION_WIRE_SECONDS
        and abs(nanos) <= L.MAX_NANOS
        and not (seconds > 0 > nanos or seconds < 0 < nanos)
        and low <= seconds + nanos / 1e9 <= high
    )


def _always(_: Any, __: int) -> bool:
    return True


_NAMESPACE: dict[str, Any] = {
    "isfinite": math.isfinite,
    "repeat": itertools.repeat,
    "timestamp_ok": _timestamp_ok,
    "duration_ok": _duration_ok,
}
_NAMES: dict[Descriptor, str | None] = {}


def predicate(descriptor: Descriptor) -> Callable[[Message, int], bool] | None:
    """A function of a ``descriptor`` message and its serialized size (an upper bound will do), true
    when the message is within its limits; None when nothing in it can be out of them."""
    name = _compile(descriptor)
    return None if name is None else _NAMESPACE[name]


def _constant(value: Any) -> str:
    name = f"K{len(_NAMESPACE)}"
    _NAMESPACE[name] = value
    return name


def _range(x: str, low: float | None, high: float | None) -> str | None:
    parts = ([f"{low!r} <= {x}"] if low is not None else []) + ([f"{x} <= {high!r}"] if high is not None else [])
    return " and ".join(parts) or None


def _value(field: FieldDescriptor, limits: limits_pb2.Limits, x: str) -> str | None:
    """An expression true when the single value ``x`` of ``field`` is within limits (None: always)."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:  # every read of a string field makes a new str: read it once
        limit = L.max_length(field, limits)
        return f'("\\x00" not in (s := {x}) and (size <= {limit} or len(s) <= {limit}))'
    if kind == FieldDescriptor.TYPE_BYTES:
        return f"len({x}) <= {L.max_length(field, limits)}"
    if kind in L.FLOATS:
        within = _range(x, *L.bounds(limits))
        if limits.allow_non_finite:
            return f"(not isfinite({x}) or ({within}))" if within else None
        return f"(isfinite({x}) and {within})" if within else f"isfinite({x})"
    if kind == FieldDescriptor.TYPE_ENUM:
        return f"{x} in {_constant(frozenset(L.enum_type(field).values_by_number))}"
    if kind in L.INTEGERS:
        within = _range(x, *L.bounds(limits))
        return f"({within})" if within else None
    if kind == FieldDescriptor.TYPE_MESSAGE:
        message = L.message_type(field)
        if message.full_name == L.TIMESTAMP:
            inner: str | None = f"timestamp_ok({x})"
        elif message.full_name == L.DURATION:
            low, high = L.duration_bounds(limits)
            inner = f"duration_ok({x}, {low!r}, {high!r})"
        else:
            compiled = _compile(message)
            inner = f"{compiled}({x}, size)" if compiled else None
        if limits.max_length:  # ByteSize serializes the message: only when the request could be too large
            fits = f"(size <= {limits.max_length} or {x}.ByteSize() <= {limits.max_length})"
            return f"({fits} and {inner})" if inner else fits
        return inner
    return None  # bool


def _term(field: FieldDescriptor) -> str | None:
    """An expression over the message ``m`` true when ``field`` is within its limits (None: always)."""
    limits = L.of(field)
    access = f"getattr(m, {field.name!r})" if keyword.iskeyword(field.name) else f"m.{field.name}"
    if L.is_map(field):
        entry = L.message_type(field)
        key = _value(entry.fields_by_name["key"], limits_pb2.Limits(), "k")
        value = _value(entry.fields_by_name["value"], limits, "x")
        entry_ok = " and ".join(part for part in (key, value) if part)
        every = f" and (not v or all({entry_ok} for k, x in v.items()))" if entry_ok else ""
        return f"(len(v := {access}) <= {L.max_items(limits)}{every})"
    if not field.is_repeated:
        if field.type == FieldDescriptor.TYPE_BYTES:
            # Reading a bytes field copies it (an image: 5 µs per 200 KB); the request's size on
            # the wire bounds every field in it and costs nothing.
            limit = L.max_length(field, limits)
            return f"(size <= {limit} or len({access}) <= {limit})"
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            inner = _value(field, limits, "v")
            return f"(not m.HasField({field.name!r}) or ((v := {access}) is not None and {inner}))" if inner else None
        if field.type in L.INTEGERS and not field.has_presence and (within := _value(field, limits, "v")):
            # A zero is an unset field in proto3, which the explaining check never sees (ListFields
            # leaves it out): where the limits exclude zero, the service says what it needs instead.
            low, high = L.bounds(limits)
            if (low is not None and low > 0) or (high is not None and high < 0):
                return f"((v := {access}) == 0 or {within})"
        return _value(field, limits, access)
    kind = field.type
    if kind in L.FLOATS:
        low, high = L.bounds(limits)
        parts = [] if limits.allow_non_finite else ["isfinite(sum(v))"]
        parts += [f"min(v) >= {low!r}"] if low is not None else []
        parts += [f"max(v) <= {high!r}"] if high is not None else []
    elif kind == FieldDescriptor.TYPE_ENUM:
        parts = [f"{_constant(frozenset(L.enum_type(field).values_by_number))}.issuperset(v)"]
    elif kind in L.INTEGERS:
        low, high = L.bounds(limits)
        parts = ([f"min(v) >= {low!r}"] if low is not None else []) + (
            [f"max(v) <= {high!r}"] if high is not None else []
        )
    elif kind == FieldDescriptor.TYPE_MESSAGE and not limits.max_length and (each := _value(field, limits, "x")):
        parts = [f"all(map({each.removesuffix('(x, size)')}, v, repeat(size)))"]  # iterated in C
    else:
        each = _value(field, limits, "x")
        parts = [f"all({each} for x in v)"] if each else []
    every = f" and (not v or ({' and '.join(parts)}))" if parts else ""
    return f"(len(v := {access}) <= {L.max_items(limits)}{every})"


def _compile(descriptor: Descriptor) -> str | None:
    if descriptor in _NAMES:
        return _NAMES[descriptor]
    name = f"ok_{descriptor.full_name.replace('.', '_')}"
    _NAMES[descriptor] = name  # reserved first: recursive types (Struct, Value) refer to themselves
    terms = [term for field in descriptor.fields if (term := _term(field)) is not None]
    if not terms:
        _NAMES[descriptor] = None
        _NAMESPACE[name] = _always  # for a recursive type that referred to it while it was compiled
        return None
    source = f"def {name}(m, size):\n    return (\n        " + "\n        and ".join(terms) + "\n    )\n"
    exec(compile(source, f"<limits of {descriptor.full_name}>", "exec"), _NAMESPACE)
    return name
