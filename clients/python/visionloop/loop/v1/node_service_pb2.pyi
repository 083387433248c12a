import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import node_pb2 as _node_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _node_pb2.NodeStatus
    def __init__(self, status: _Optional[_Union[_node_pb2.NodeStatus, _Mapping]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("status", "heartbeat_interval")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    status: _node_pb2.NodeStatus
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, status: _Optional[_Union[_node_pb2.NodeStatus, _Mapping]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _node_pb2.NodeStatus
    def __init__(self, status: _Optional[_Union[_node_pb2.NodeStatus, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("heartbeat_interval",)
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval: _duration_pb2.Duration
    def __init__(self, heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _node_pb2.NodeStatus
    def __init__(self, status: _Optional[_Union[_node_pb2.NodeStatus, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("type", "include_offline")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    type: _node_pb2.NodeType
    include_offline: bool
    def __init__(self, type: _Optional[_Union[_node_pb2.NodeType, str]] = ..., include_offline: _Optional[bool] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_node_pb2.NodeStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_node_pb2.NodeStatus, _Mapping]]] = ...) -> None: ...
