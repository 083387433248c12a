import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import model_pb2 as _model_pb2
from visionloop.common.v1 import transfer_pb2 as _transfer_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelKey(_message.Message):
    __slots__ = ("ref", "version")
    REF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    version: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class UploadModelHeader(_message.Message):
    __slots__ = ("ref", "format", "version", "new_major", "blob", "comment")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NEW_MAJOR_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    format: str
    version: str
    new_major: bool
    blob: _transfer_pb2.BlobHeader
    comment: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., format: _Optional[str] = ..., version: _Optional[str] = ..., new_major: _Optional[bool] = ..., blob: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadModelHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, header: _Optional[_Union[UploadModelHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.ModelInfo
    def __init__(self, model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("key", "format")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    format: str
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.ModelInfo
    def __init__(self, model: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("ref", "format")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    format: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...

class DownloadModelRequest(_message.Message):
    __slots__ = ("key", "format", "offset")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    format: str
    offset: int
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., format: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadModelResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _transfer_pb2.BlobHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, header: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

class GetModelLineageRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ...) -> None: ...

class GetModelLineageResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...

class SetModelMetricsRequest(_message.Message):
    __slots__ = ("key", "metrics")
    KEY_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    key: ModelKey
    metrics: _model_pb2.ModelMetrics
    def __init__(self, key: _Optional[_Union[ModelKey, _Mapping]] = ..., metrics: _Optional[_Union[_model_pb2.ModelMetrics, _Mapping]] = ...) -> None: ...

class SetModelMetricsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClaimConversionRequest(_message.Message):
    __slots__ = ("node_id", "target_formats", "lease", "ref")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FORMATS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    target_formats: _containers.RepeatedScalarFieldContainer[str]
    lease: _duration_pb2.Duration
    ref: _project_service_pb2.ProjectRef
    def __init__(self, node_id: _Optional[str] = ..., target_formats: _Optional[_Iterable[str]] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ...) -> None: ...

class ClaimConversionResponse(_message.Message):
    __slots__ = ("conversion_id", "key", "source_format", "target_format", "lease_expire_time", "attempt")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    key: ModelKey
    source_format: str
    target_format: str
    lease_expire_time: _timestamp_pb2.Timestamp
    attempt: int
    def __init__(self, conversion_id: _Optional[str] = ..., key: _Optional[_Union[ModelKey, _Mapping]] = ..., source_format: _Optional[str] = ..., target_format: _Optional[str] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ...) -> None: ...

class ReportConversionFailureRequest(_message.Message):
    __slots__ = ("conversion_id", "reason", "permanent")
    CONVERSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    conversion_id: str
    reason: str
    permanent: bool
    def __init__(self, conversion_id: _Optional[str] = ..., reason: _Optional[str] = ..., permanent: _Optional[bool] = ...) -> None: ...

class ReportConversionFailureResponse(_message.Message):
    __slots__ = ("will_retry",)
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    will_retry: bool
    def __init__(self, will_retry: _Optional[bool] = ...) -> None: ...
