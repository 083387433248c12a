import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import geometry_pb2 as _geometry_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Creator(_message.Message):
    __slots__ = ("person", "model_version")
    PERSON_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    person: str
    model_version: str
    def __init__(self, person: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class Annotation(_message.Message):
    __slots__ = ("id", "image_id", "category_id", "category_name", "shape", "creator", "create_time", "update_time", "crowd")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CREATOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CROWD_FIELD_NUMBER: _ClassVar[int]
    id: str
    image_id: str
    category_id: str
    category_name: str
    shape: _geometry_pb2.Shape
    creator: Creator
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    crowd: bool
    def __init__(self, id: _Optional[str] = ..., image_id: _Optional[str] = ..., category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., shape: _Optional[_Union[_geometry_pb2.Shape, _Mapping]] = ..., creator: _Optional[_Union[Creator, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., crowd: _Optional[bool] = ...) -> None: ...
