"""What a request field may hold: the contract's ``(visionloop.common.v1.limits)`` option, or the defaults.

The defaults and the option are described in protos/visionloop/common/v1/limits.proto; both
the generated fast check (``fastcheck``) and the explaining check (``validation``) read them
from here, so they cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from visionloop.common.v1 import limits_pb2

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import FieldOptions
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

# grpcio-tools' .pyi types an extension as a plain FieldDescriptor; protobuf's stubs index
# ``Extensions`` by the message it extends and the value it holds.
_LIMITS = cast("_ExtensionFieldDescriptor[FieldOptions, limits_pb2.Limits]", limits_pb2.limits)

MAX_STRING = 1024
MAX_BYTES = 1024
MAX_ITEMS = 1000
MAX_DURATION_SECONDS = 3650 * 86_400
# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_DURATION_WIRE_SECONDS = 315_576_000_000  # google.protobuf.Duration's own range (about 10,000 years)
MAX_NANOS = 999_999_999

FLOATS = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
INTEGERS = (
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
)
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"


def descriptor(message: Message | type[Message]) -> Descriptor:
    """``message.DESCRIPTOR``. protobuf's stubs type it as the pure-Python or the upb class; with the upb
    backend ``descriptor.Descriptor`` is the upb class, so both offer the same interface."""
    return cast(Descriptor, message.DESCRIPTOR)


def field(message: Message | type[Message], name: str) -> FieldDescriptor:
    """The descriptor of ``message``'s field ``name``."""
    return descriptor(message).fields_by_name[name]


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message or map field (protobuf's stubs allow None: other fields have none)."""
    assert field.message_type is not None, f"{field.full_name} is not a message field"
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """The enum type of an enum field (protobuf's stubs allow None: other fields have none)."""
    assert field.enum_type is not None, f"{field.full_name} is not an enum field"
    return field.enum_type


def of(field: FieldDescriptor) -> limits_pb2.Limits:
    """The field's declared limits (an empty ``Limits`` when it declares none)."""
    options = field.GetOptions()
    if options.HasExtension(_LIMITS):
        return options.Extensions[_LIMITS]
    return limits_pb2.Limits()


def bounds(limits: limits_pb2.Limits) -> tuple[float | None, float | None]:
    """The declared (min, max); None where the contract declares none."""
    return (limits.min if limits.HasField("min") else None, limits.max if limits.HasField("max") else None)


def duration_bounds(limits: limits_pb2.Limits) -> tuple[float, float]:
    """The seconds a Duration field may span: declared, else 0 to ``MAX_DURATION_SECONDS``."""
    low, high = bounds(limits)
    return (0.0 if low is None else low, float(MAX_DURATION_SECONDS) if high is None else high)


def is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def max_length(field: FieldDescriptor, limits: limits_pb2.Limits) -> int:
    """Longest string or bytes value of ``field``."""
    if limits.max_length:
        return limits.max_length
    return MAX_BYTES if field.type == FieldDescriptor.TYPE_BYTES else MAX_STRING


def max_items(limits: limits_pb2.Limits) -> int:
    return limits.max_items or MAX_ITEMS
