import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import training_pb2 as _training_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateTrainingRequest(_message.Message):
    __slots__ = ("ref", "spec")
    REF_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    spec: _training_pb2.TrainingSpec
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., spec: _Optional[_Union[_training_pb2.TrainingSpec, _Mapping]] = ...) -> None: ...

class CreateTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class GetTrainingRequest(_message.Message):
    __slots__ = ("training_id",)
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    training_id: str
    def __init__(self, training_id: _Optional[str] = ...) -> None: ...

class GetTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class ListTrainingsRequest(_message.Message):
    __slots__ = ("ref", "phases")
    REF_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    phases: _containers.RepeatedScalarFieldContainer[_training_pb2.TrainingPhase]
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., phases: _Optional[_Iterable[_Union[_training_pb2.TrainingPhase, str]]] = ...) -> None: ...

class ListTrainingsResponse(_message.Message):
    __slots__ = ("trainings",)
    TRAININGS_FIELD_NUMBER: _ClassVar[int]
    trainings: _containers.RepeatedCompositeFieldContainer[_training_pb2.Training]
    def __init__(self, trainings: _Optional[_Iterable[_Union[_training_pb2.Training, _Mapping]]] = ...) -> None: ...

class ClaimTrainingRequest(_message.Message):
    __slots__ = ("node_id", "model_variants", "lease", "ref", "training_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VARIANTS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    model_variants: _containers.RepeatedScalarFieldContainer[str]
    lease: _duration_pb2.Duration
    ref: _project_service_pb2.ProjectRef
    training_id: str
    def __init__(self, node_id: _Optional[str] = ..., model_variants: _Optional[_Iterable[str]] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., training_id: _Optional[str] = ...) -> None: ...

class ClaimTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class UpdateTrainingStatusRequest(_message.Message):
    __slots__ = ("training_id", "node_id", "status", "lease")
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    training_id: str
    node_id: str
    status: _training_pb2.TrainingStatus
    lease: _duration_pb2.Duration
    def __init__(self, training_id: _Optional[str] = ..., node_id: _Optional[str] = ..., status: _Optional[_Union[_training_pb2.TrainingStatus, _Mapping]] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class UpdateTrainingStatusResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class FinishTrainingRequest(_message.Message):
    __slots__ = ("training_id", "node_id", "phase", "status", "result_model_version")
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    training_id: str
    node_id: str
    phase: _training_pb2.TrainingPhase
    status: _training_pb2.TrainingStatus
    result_model_version: str
    def __init__(self, training_id: _Optional[str] = ..., node_id: _Optional[str] = ..., phase: _Optional[_Union[_training_pb2.TrainingPhase, str]] = ..., status: _Optional[_Union[_training_pb2.TrainingStatus, _Mapping]] = ..., result_model_version: _Optional[str] = ...) -> None: ...

class FinishTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class StopTrainingRequest(_message.Message):
    __slots__ = ("training_id",)
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    training_id: str
    def __init__(self, training_id: _Optional[str] = ...) -> None: ...

class StopTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class AbortTrainingRequest(_message.Message):
    __slots__ = ("training_id",)
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    training_id: str
    def __init__(self, training_id: _Optional[str] = ...) -> None: ...

class AbortTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...
