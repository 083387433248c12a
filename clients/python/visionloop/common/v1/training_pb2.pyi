import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATE_UNSPECIFIED: _ClassVar[TrainingState]
    TRAINING_STATE_INITIALIZED: _ClassVar[TrainingState]
    TRAINING_STATE_DATA_DOWNLOADING: _ClassVar[TrainingState]
    TRAINING_STATE_DATA_DOWNLOADED: _ClassVar[TrainingState]
    TRAINING_STATE_TRAIN_MODEL_DOWNLOADING: _ClassVar[TrainingState]
    TRAINING_STATE_TRAIN_MODEL_DOWNLOADED: _ClassVar[TrainingState]
    TRAINING_STATE_TRAINING_RUNNING: _ClassVar[TrainingState]
    TRAINING_STATE_TRAINING_FINISHED: _ClassVar[TrainingState]
    TRAINING_STATE_CONFUSION_MATRIX_SYNCING: _ClassVar[TrainingState]
    TRAINING_STATE_CONFUSION_MATRIX_SYNCED: _ClassVar[TrainingState]
    TRAINING_STATE_TRAIN_MODEL_UPLOADING: _ClassVar[TrainingState]
    TRAINING_STATE_TRAIN_MODEL_UPLOADED: _ClassVar[TrainingState]
    TRAINING_STATE_DETECTING: _ClassVar[TrainingState]
    TRAINING_STATE_DETECTED: _ClassVar[TrainingState]
    TRAINING_STATE_DETECTION_UPLOADING: _ClassVar[TrainingState]
    TRAINING_STATE_READY_FOR_CLEANUP: _ClassVar[TrainingState]

class TrainingPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_PHASE_UNSPECIFIED: _ClassVar[TrainingPhase]
    TRAINING_PHASE_QUEUED: _ClassVar[TrainingPhase]
    TRAINING_PHASE_RUNNING: _ClassVar[TrainingPhase]
    TRAINING_PHASE_SUCCEEDED: _ClassVar[TrainingPhase]
    TRAINING_PHASE_FAILED: _ClassVar[TrainingPhase]
    TRAINING_PHASE_STOPPED: _ClassVar[TrainingPhase]
    TRAINING_PHASE_ABORTED: _ClassVar[TrainingPhase]

class HyperparameterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HYPERPARAMETER_TYPE_UNSPECIFIED: _ClassVar[HyperparameterType]
    HYPERPARAMETER_TYPE_NUMBER: _ClassVar[HyperparameterType]
    HYPERPARAMETER_TYPE_INTEGER: _ClassVar[HyperparameterType]
    HYPERPARAMETER_TYPE_BOOLEAN: _ClassVar[HyperparameterType]
    HYPERPARAMETER_TYPE_STRING: _ClassVar[HyperparameterType]
TRAINING_STATE_UNSPECIFIED: TrainingState
TRAINING_STATE_INITIALIZED: TrainingState
TRAINING_STATE_DATA_DOWNLOADING: TrainingState
TRAINING_STATE_DATA_DOWNLOADED: TrainingState
TRAINING_STATE_TRAIN_MODEL_DOWNLOADING: TrainingState
TRAINING_STATE_TRAIN_MODEL_DOWNLOADED: TrainingState
TRAINING_STATE_TRAINING_RUNNING: TrainingState
TRAINING_STATE_TRAINING_FINISHED: TrainingState
TRAINING_STATE_CONFUSION_MATRIX_SYNCING: TrainingState
TRAINING_STATE_CONFUSION_MATRIX_SYNCED: TrainingState
TRAINING_STATE_TRAIN_MODEL_UPLOADING: TrainingState
TRAINING_STATE_TRAIN_MODEL_UPLOADED: TrainingState
TRAINING_STATE_DETECTING: TrainingState
TRAINING_STATE_DETECTED: TrainingState
TRAINING_STATE_DETECTION_UPLOADING: TrainingState
TRAINING_STATE_READY_FOR_CLEANUP: TrainingState
TRAINING_PHASE_UNSPECIFIED: TrainingPhase
TRAINING_PHASE_QUEUED: TrainingPhase
TRAINING_PHASE_RUNNING: TrainingPhase
TRAINING_PHASE_SUCCEEDED: TrainingPhase
TRAINING_PHASE_FAILED: TrainingPhase
TRAINING_PHASE_STOPPED: TrainingPhase
TRAINING_PHASE_ABORTED: TrainingPhase
HYPERPARAMETER_TYPE_UNSPECIFIED: HyperparameterType
HYPERPARAMETER_TYPE_NUMBER: HyperparameterType
HYPERPARAMETER_TYPE_INTEGER: HyperparameterType
HYPERPARAMETER_TYPE_BOOLEAN: HyperparameterType
HYPERPARAMETER_TYPE_STRING: HyperparameterType

class StepError(_message.Message):
    __slots__ = ("state", "message", "attempts", "critical", "time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    state: TrainingState
    message: str
    attempts: int
    critical: bool
    time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[TrainingState, str]] = ..., message: _Optional[str] = ..., attempts: _Optional[int] = ..., critical: _Optional[bool] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConfusionMatrix(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _model_pb2.ModelMetrics
    def __init__(self, metrics: _Optional[_Union[_model_pb2.ModelMetrics, _Mapping]] = ...) -> None: ...

class ImageCounts(_message.Message):
    __slots__ = ("train", "test", "skipped")
    TRAIN_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    train: int
    test: int
    skipped: int
    def __init__(self, train: _Optional[int] = ..., test: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class TrainingSpec(_message.Message):
    __slots__ = ("hyperparameters", "category_ids", "base_model_version", "model_variant", "formats")
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_IDS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VARIANT_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    hyperparameters: _struct_pb2.Struct
    category_ids: _containers.RepeatedScalarFieldContainer[str]
    base_model_version: str
    model_variant: str
    formats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hyperparameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., category_ids: _Optional[_Iterable[str]] = ..., base_model_version: _Optional[str] = ..., model_variant: _Optional[str] = ..., formats: _Optional[_Iterable[str]] = ...) -> None: ...

class HyperparameterSpec(_message.Message):
    __slots__ = ("name", "type", "default_value", "minimum", "maximum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: HyperparameterType
    default_value: _struct_pb2.Value
    minimum: float
    maximum: float
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[HyperparameterType, str]] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., minimum: _Optional[float] = ..., maximum: _Optional[float] = ...) -> None: ...

class ModelVariantSchema(_message.Message):
    __slots__ = ("name", "hyperparameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    hyperparameters: _containers.RepeatedCompositeFieldContainer[HyperparameterSpec]
    def __init__(self, name: _Optional[str] = ..., hyperparameters: _Optional[_Iterable[_Union[HyperparameterSpec, _Mapping]]] = ...) -> None: ...

class TrainingStatus(_message.Message):
    __slots__ = ("state", "progress", "epoch", "total_epochs", "loss", "errors", "confusion_matrix", "image_counts", "update_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TOTAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    state: TrainingState
    progress: float
    epoch: int
    total_epochs: int
    loss: float
    errors: _containers.RepeatedCompositeFieldContainer[StepError]
    confusion_matrix: ConfusionMatrix
    image_counts: ImageCounts
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[TrainingState, str]] = ..., progress: _Optional[float] = ..., epoch: _Optional[int] = ..., total_epochs: _Optional[int] = ..., loss: _Optional[float] = ..., errors: _Optional[_Iterable[_Union[StepError, _Mapping]]] = ..., confusion_matrix: _Optional[_Union[ConfusionMatrix, _Mapping]] = ..., image_counts: _Optional[_Union[ImageCounts, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Training(_message.Message):
    __slots__ = ("id", "project", "number", "spec", "phase", "status", "trainer_node_id", "lease_expire_time", "stop_requested", "abort_requested", "result_model_version", "create_time", "end_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRAINER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ABORT_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    project: str
    number: int
    spec: TrainingSpec
    phase: TrainingPhase
    status: TrainingStatus
    trainer_node_id: str
    lease_expire_time: _timestamp_pb2.Timestamp
    stop_requested: bool
    abort_requested: bool
    result_model_version: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., project: _Optional[str] = ..., number: _Optional[int] = ..., spec: _Optional[_Union[TrainingSpec, _Mapping]] = ..., phase: _Optional[_Union[TrainingPhase, str]] = ..., status: _Optional[_Union[TrainingStatus, _Mapping]] = ..., trainer_node_id: _Optional[str] = ..., lease_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stop_requested: _Optional[bool] = ..., abort_requested: _Optional[bool] = ..., result_model_version: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
