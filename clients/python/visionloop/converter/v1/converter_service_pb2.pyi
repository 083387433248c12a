import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConversionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONVERSION_STATE_UNSPECIFIED: _ClassVar[ConversionState]
    CONVERSION_STATE_PENDING: _ClassVar[ConversionState]
    CONVERSION_STATE_RUNNING: _ClassVar[ConversionState]
    CONVERSION_STATE_SUCCEEDED: _ClassVar[ConversionState]
    CONVERSION_STATE_FAILED: _ClassVar[ConversionState]
CONVERSION_STATE_UNSPECIFIED: ConversionState
CONVERSION_STATE_PENDING: ConversionState
CONVERSION_STATE_RUNNING: ConversionState
CONVERSION_STATE_SUCCEEDED: ConversionState
CONVERSION_STATE_FAILED: ConversionState

class ConversionOptions(_message.Message):
    __slots__ = ("opset", "max_batch_size", "instance_count", "tensorrt", "max_map_drop", "skip_parity_check")
    OPSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENSORRT_FIELD_NUMBER: _ClassVar[int]
    MAX_MAP_DROP_FIELD_NUMBER: _ClassVar[int]
    SKIP_PARITY_CHECK_FIELD_NUMBER: _ClassVar[int]
    opset: int
    max_batch_size: int
    instance_count: int
    tensorrt: bool
    max_map_drop: float
    skip_parity_check: bool
    def __init__(self, opset: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., instance_count: _Optional[int] = ..., tensorrt: _Optional[bool] = ..., max_map_drop: _Optional[float] = ..., skip_parity_check: _Optional[bool] = ...) -> None: ...

class ParityReport(_message.Message):
    __slots__ = ("max_abs_diff", "source_map50", "converted_map50", "samples", "passed")
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MAP50_FIELD_NUMBER: _ClassVar[int]
    CONVERTED_MAP50_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    max_abs_diff: float
    source_map50: float
    converted_map50: float
    samples: int
    passed: bool
    def __init__(self, max_abs_diff: _Optional[float] = ..., source_map50: _Optional[float] = ..., converted_map50: _Optional[float] = ..., samples: _Optional[int] = ..., passed: _Optional[bool] = ...) -> None: ...

class Conversion(_message.Message):
    __slots__ = ("id", "organization", "project", "version", "source_format", "target_format", "state", "reason", "parity", "start_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARITY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization: str
    project: str
    version: str
    source_format: str
    target_format: str
    state: ConversionState
    reason: str
    parity: ParityReport
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., organization: _Optional[str] = ..., project: _Optional[str] = ..., version: _Optional[str] = ..., source_format: _Optional[str] = ..., target_format: _Optional[str] = ..., state: _Optional[_Union[ConversionState, str]] = ..., reason: _Optional[str] = ..., parity: _Optional[_Union[ParityReport, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConvertRequest(_message.Message):
    __slots__ = ("organization", "project", "version", "target_format", "options")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    version: str
    target_format: str
    options: ConversionOptions
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ..., version: _Optional[str] = ..., target_format: _Optional[str] = ..., options: _Optional[_Union[ConversionOptions, _Mapping]] = ...) -> None: ...

class ConvertResponse(_message.Message):
    __slots__ = ("conversion",)
    CONVERSION_FIELD_NUMBER: _ClassVar[int]
    conversion: Conversion
    def __init__(self, conversion: _Optional[_Union[Conversion, _Mapping]] = ...) -> None: ...

class ConversionPath(_message.Message):
    __slots__ = ("source_format", "target_format")
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FORMAT_FIELD_NUMBER: _ClassVar[int]
    source_format: str
    target_format: str
    def __init__(self, source_format: _Optional[str] = ..., target_format: _Optional[str] = ...) -> None: ...

class ListConversionPathsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListConversionPathsResponse(_message.Message):
    __slots__ = ("paths",)
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedCompositeFieldContainer[ConversionPath]
    def __init__(self, paths: _Optional[_Iterable[_Union[ConversionPath, _Mapping]]] = ...) -> None: ...

class ListConversionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListConversionsResponse(_message.Message):
    __slots__ = ("conversions",)
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    conversions: _containers.RepeatedCompositeFieldContainer[Conversion]
    def __init__(self, conversions: _Optional[_Iterable[_Union[Conversion, _Mapping]]] = ...) -> None: ...
