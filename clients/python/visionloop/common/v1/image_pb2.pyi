import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_STATE_UNSPECIFIED: _ClassVar[ImageState]
    IMAGE_STATE_INBOX: _ClassVar[ImageState]
    IMAGE_STATE_ANNOTATE: _ClassVar[ImageState]
    IMAGE_STATE_REVIEW: _ClassVar[ImageState]
    IMAGE_STATE_COMPLETE: _ClassVar[ImageState]
    IMAGE_STATE_TRASH: _ClassVar[ImageState]

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR8: _ClassVar[PixelFormat]
    PIXEL_FORMAT_GRAY8: _ClassVar[PixelFormat]
IMAGE_STATE_UNSPECIFIED: ImageState
IMAGE_STATE_INBOX: ImageState
IMAGE_STATE_ANNOTATE: ImageState
IMAGE_STATE_REVIEW: ImageState
IMAGE_STATE_COMPLETE: ImageState
IMAGE_STATE_TRASH: ImageState
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_RGB8: PixelFormat
PIXEL_FORMAT_BGR8: PixelFormat
PIXEL_FORMAT_GRAY8: PixelFormat

class RawImage(_message.Message):
    __slots__ = ("pixels", "width", "height", "pixel_format")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    width: int
    height: int
    pixel_format: PixelFormat
    def __init__(self, pixels: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., pixel_format: _Optional[_Union[PixelFormat, str]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class ImageMetadata(_message.Message):
    __slots__ = ("id", "project", "tags", "camera_id", "source", "create_time", "upload_time", "state", "width", "height", "content_type", "size_bytes", "priority", "annotation_count", "detection_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    DETECTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    project: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    camera_id: str
    source: str
    create_time: _timestamp_pb2.Timestamp
    upload_time: _timestamp_pb2.Timestamp
    state: ImageState
    width: int
    height: int
    content_type: str
    size_bytes: int
    priority: float
    annotation_count: int
    detection_count: int
    def __init__(self, id: _Optional[str] = ..., project: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., camera_id: _Optional[str] = ..., source: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., upload_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[ImageState, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., content_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., priority: _Optional[float] = ..., annotation_count: _Optional[int] = ..., detection_count: _Optional[int] = ...) -> None: ...
