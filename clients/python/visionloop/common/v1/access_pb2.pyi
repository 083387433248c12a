from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ROBOT: _ClassVar[Role]
    ROLE_ANNOTATOR: _ClassVar[Role]
    ROLE_NODE: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_OPERATOR: _ClassVar[Role]
    ROLE_DETECTOR_NODE: _ClassVar[Role]
    ROLE_TRAINER_NODE: _ClassVar[Role]
    ROLE_CONVERTER_NODE: _ClassVar[Role]
    ROLE_ANNOTATOR_NODE: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_ROBOT: Role
ROLE_ANNOTATOR: Role
ROLE_NODE: Role
ROLE_ADMIN: Role
ROLE_OPERATOR: Role
ROLE_DETECTOR_NODE: Role
ROLE_TRAINER_NODE: Role
ROLE_CONVERTER_NODE: Role
ROLE_ANNOTATOR_NODE: Role
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor

class Access(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[Role, str]]] = ...) -> None: ...
