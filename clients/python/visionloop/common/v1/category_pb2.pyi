from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CategoryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_TYPE_UNSPECIFIED: _ClassVar[CategoryType]
    CATEGORY_TYPE_BOX: _ClassVar[CategoryType]
    CATEGORY_TYPE_POINT: _ClassVar[CategoryType]
    CATEGORY_TYPE_SEGMENTATION: _ClassVar[CategoryType]
    CATEGORY_TYPE_CLASSIFICATION: _ClassVar[CategoryType]
CATEGORY_TYPE_UNSPECIFIED: CategoryType
CATEGORY_TYPE_BOX: CategoryType
CATEGORY_TYPE_POINT: CategoryType
CATEGORY_TYPE_SEGMENTATION: CategoryType
CATEGORY_TYPE_CLASSIFICATION: CategoryType

class Category(_message.Message):
    __slots__ = ("id", "name", "type", "color", "hotkey", "point_radius")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    HOTKEY_FIELD_NUMBER: _ClassVar[int]
    POINT_RADIUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    type: CategoryType
    color: str
    hotkey: str
    point_radius: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[CategoryType, str]] = ..., color: _Optional[str] = ..., hotkey: _Optional[str] = ..., point_radius: _Optional[float] = ...) -> None: ...
