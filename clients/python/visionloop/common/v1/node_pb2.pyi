import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import training_pb2 as _training_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_TYPE_UNSPECIFIED: _ClassVar[NodeType]
    NODE_TYPE_DETECTOR: _ClassVar[NodeType]
    NODE_TYPE_TRAINER: _ClassVar[NodeType]
    NODE_TYPE_CONVERTER: _ClassVar[NodeType]
    NODE_TYPE_ANNOTATOR: _ClassVar[NodeType]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_STARTING: _ClassVar[NodeState]
    NODE_STATE_IDLE: _ClassVar[NodeState]
    NODE_STATE_BUSY: _ClassVar[NodeState]
    NODE_STATE_DEGRADED: _ClassVar[NodeState]
    NODE_STATE_OFFLINE: _ClassVar[NodeState]
NODE_TYPE_UNSPECIFIED: NodeType
NODE_TYPE_DETECTOR: NodeType
NODE_TYPE_TRAINER: NodeType
NODE_TYPE_CONVERTER: NodeType
NODE_TYPE_ANNOTATOR: NodeType
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_STARTING: NodeState
NODE_STATE_IDLE: NodeState
NODE_STATE_BUSY: NodeState
NODE_STATE_DEGRADED: NodeState
NODE_STATE_OFFLINE: NodeState

class NodeError(_message.Message):
    __slots__ = ("key", "message", "first_seen_time", "count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    message: str
    first_seen_time: _timestamp_pb2.Timestamp
    count: int
    def __init__(self, key: _Optional[str] = ..., message: _Optional[str] = ..., first_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "name", "type", "state", "organization", "project", "model_version", "errors", "uptime", "capabilities", "software_version", "last_heartbeat_time", "training_id", "model_variants")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    type: NodeType
    state: NodeState
    organization: str
    project: str
    model_version: str
    errors: _containers.RepeatedCompositeFieldContainer[NodeError]
    uptime: _duration_pb2.Duration
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    software_version: str
    last_heartbeat_time: _timestamp_pb2.Timestamp
    training_id: str
    model_variants: _containers.RepeatedCompositeFieldContainer[_training_pb2.ModelVariantSchema]
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[NodeType, str]] = ..., state: _Optional[_Union[NodeState, str]] = ..., organization: _Optional[str] = ..., project: _Optional[str] = ..., model_version: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[NodeError, _Mapping]]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., capabilities: _Optional[_Iterable[str]] = ..., software_version: _Optional[str] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., training_id: _Optional[str] = ..., model_variants: _Optional[_Iterable[_Union[_training_pb2.ModelVariantSchema, _Mapping]]] = ...) -> None: ...
