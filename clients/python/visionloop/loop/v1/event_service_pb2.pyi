import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_IMAGE_ADDED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_PUBLISHED: _ClassVar[EventType]
    EVENT_TYPE_FORMAT_ADDED: _ClassVar[EventType]
    EVENT_TYPE_DEPLOYMENT_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_TRAINING_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_TRAINING_STOP_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_TRAINING_ABORT_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_CONVERSION_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_MODEL_HELD: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_IMAGE_ADDED: EventType
EVENT_TYPE_MODEL_PUBLISHED: EventType
EVENT_TYPE_FORMAT_ADDED: EventType
EVENT_TYPE_DEPLOYMENT_CHANGED: EventType
EVENT_TYPE_TRAINING_REQUESTED: EventType
EVENT_TYPE_TRAINING_STOP_REQUESTED: EventType
EVENT_TYPE_TRAINING_ABORT_REQUESTED: EventType
EVENT_TYPE_CONVERSION_REQUESTED: EventType
EVENT_TYPE_MODEL_HELD: EventType

class Event(_message.Message):
    __slots__ = ("cursor", "type", "ref", "subject", "detail", "time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    type: EventType
    ref: _project_service_pb2.ProjectRef
    subject: str
    detail: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("cursor", "types", "ref")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    types: _containers.RepeatedScalarFieldContainer[EventType]
    ref: _project_service_pb2.ProjectRef
    def __init__(self, cursor: _Optional[str] = ..., types: _Optional[_Iterable[_Union[EventType, str]]] = ..., ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...
