from visionloop.common.v1 import geometry_pb2 as _geometry_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BoxDetection(_message.Message):
    __slots__ = ("category_id", "category_name", "confidence", "model_version", "box")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category_name: str
    confidence: float
    model_version: str
    box: _geometry_pb2.Box
    def __init__(self, category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ..., box: _Optional[_Union[_geometry_pb2.Box, _Mapping]] = ...) -> None: ...

class PointDetection(_message.Message):
    __slots__ = ("category_id", "category_name", "confidence", "model_version", "point")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category_name: str
    confidence: float
    model_version: str
    point: _geometry_pb2.Point
    def __init__(self, category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ..., point: _Optional[_Union[_geometry_pb2.Point, _Mapping]] = ...) -> None: ...

class SegmentationDetection(_message.Message):
    __slots__ = ("category_id", "category_name", "confidence", "model_version", "polygon", "bounding_box", "mask")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    BOUNDING_BOX_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category_name: str
    confidence: float
    model_version: str
    polygon: _geometry_pb2.Polygon
    bounding_box: _geometry_pb2.Box
    mask: _geometry_pb2.Mask
    def __init__(self, category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ..., polygon: _Optional[_Union[_geometry_pb2.Polygon, _Mapping]] = ..., bounding_box: _Optional[_Union[_geometry_pb2.Box, _Mapping]] = ..., mask: _Optional[_Union[_geometry_pb2.Mask, _Mapping]] = ...) -> None: ...

class ClassificationDetection(_message.Message):
    __slots__ = ("category_id", "category_name", "confidence", "model_version")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category_name: str
    confidence: float
    model_version: str
    def __init__(self, category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., confidence: _Optional[float] = ..., model_version: _Optional[str] = ...) -> None: ...

class Detections(_message.Message):
    __slots__ = ("boxes", "points", "segmentations", "classifications")
    BOXES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[BoxDetection]
    points: _containers.RepeatedCompositeFieldContainer[PointDetection]
    segmentations: _containers.RepeatedCompositeFieldContainer[SegmentationDetection]
    classifications: _containers.RepeatedCompositeFieldContainer[ClassificationDetection]
    def __init__(self, boxes: _Optional[_Iterable[_Union[BoxDetection, _Mapping]]] = ..., points: _Optional[_Iterable[_Union[PointDetection, _Mapping]]] = ..., segmentations: _Optional[_Iterable[_Union[SegmentationDetection, _Mapping]]] = ..., classifications: _Optional[_Iterable[_Union[ClassificationDetection, _Mapping]]] = ...) -> None: ...
