import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import model_pb2 as _model_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_POLICY_UNSPECIFIED: _ClassVar[DeploymentPolicy]
    DEPLOYMENT_POLICY_FOLLOW_LATEST: _ClassVar[DeploymentPolicy]
    DEPLOYMENT_POLICY_PINNED: _ClassVar[DeploymentPolicy]
DEPLOYMENT_POLICY_UNSPECIFIED: DeploymentPolicy
DEPLOYMENT_POLICY_FOLLOW_LATEST: DeploymentPolicy
DEPLOYMENT_POLICY_PINNED: DeploymentPolicy

class Deployment(_message.Message):
    __slots__ = ("ref", "policy", "pinned_version", "resolved_version", "revision", "update_time", "updated_by", "resolved_formats", "latest_version", "latest_promotion")
    REF_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PINNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FORMATS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATEST_PROMOTION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    policy: DeploymentPolicy
    pinned_version: str
    resolved_version: str
    revision: int
    update_time: _timestamp_pb2.Timestamp
    updated_by: str
    resolved_formats: _containers.RepeatedScalarFieldContainer[str]
    latest_version: str
    latest_promotion: _model_pb2.Promotion
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., policy: _Optional[_Union[DeploymentPolicy, str]] = ..., pinned_version: _Optional[str] = ..., resolved_version: _Optional[str] = ..., revision: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ..., resolved_formats: _Optional[_Iterable[str]] = ..., latest_version: _Optional[str] = ..., latest_promotion: _Optional[_Union[_model_pb2.Promotion, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class SetDeploymentRequest(_message.Message):
    __slots__ = ("ref", "policy", "pinned_version")
    REF_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PINNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    policy: DeploymentPolicy
    pinned_version: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., policy: _Optional[_Union[DeploymentPolicy, str]] = ..., pinned_version: _Optional[str] = ...) -> None: ...

class SetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class RollbackDeploymentRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ...) -> None: ...

class RollbackDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ...) -> None: ...

class WatchDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...
