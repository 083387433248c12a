from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
LIMITS_FIELD_NUMBER: _ClassVar[int]
limits: _descriptor.FieldDescriptor

class Limits(_message.Message):
    __slots__ = ("max_length", "max_items", "min", "max", "allow_non_finite")
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NON_FINITE_FIELD_NUMBER: _ClassVar[int]
    max_length: int
    max_items: int
    min: float
    max: float
    allow_non_finite: bool
    def __init__(self, max_length: _Optional[int] = ..., max_items: _Optional[int] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., allow_non_finite: _Optional[bool] = ...) -> None: ...
