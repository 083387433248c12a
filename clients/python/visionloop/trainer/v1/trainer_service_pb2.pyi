from google.protobuf import struct_pb2 as _struct_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import node_pb2 as _node_pb2
from visionloop.common.v1 import training_pb2 as _training_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelVariant(_message.Message):
    __slots__ = ("name", "description", "category_types", "default_hyperparameters", "base_models", "formats", "hyperparameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_TYPES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODELS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    category_types: _containers.RepeatedScalarFieldContainer[str]
    default_hyperparameters: _struct_pb2.Struct
    base_models: _containers.RepeatedScalarFieldContainer[str]
    formats: _containers.RepeatedScalarFieldContainer[str]
    hyperparameters: _containers.RepeatedCompositeFieldContainer[_training_pb2.HyperparameterSpec]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., category_types: _Optional[_Iterable[str]] = ..., default_hyperparameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., base_models: _Optional[_Iterable[str]] = ..., formats: _Optional[_Iterable[str]] = ..., hyperparameters: _Optional[_Iterable[_Union[_training_pb2.HyperparameterSpec, _Mapping]]] = ...) -> None: ...

class GetTrainerStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTrainerStatusResponse(_message.Message):
    __slots__ = ("node", "training")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    node: _node_pb2.NodeStatus
    training: _training_pb2.Training
    def __init__(self, node: _Optional[_Union[_node_pb2.NodeStatus, _Mapping]] = ..., training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class ListModelVariantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelVariantsResponse(_message.Message):
    __slots__ = ("variants",)
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    variants: _containers.RepeatedCompositeFieldContainer[ModelVariant]
    def __init__(self, variants: _Optional[_Iterable[_Union[ModelVariant, _Mapping]]] = ...) -> None: ...

class VerifyHyperparametersRequest(_message.Message):
    __slots__ = ("model_variant", "hyperparameters")
    MODEL_VARIANT_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    model_variant: str
    hyperparameters: _struct_pb2.Struct
    def __init__(self, model_variant: _Optional[str] = ..., hyperparameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class VerifyHyperparametersResponse(_message.Message):
    __slots__ = ("valid", "errors", "warnings", "corrected")
    VALID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    CORRECTED_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    corrected: _struct_pb2.Struct
    def __init__(self, valid: _Optional[bool] = ..., errors: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., corrected: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StopTrainingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...

class AbortTrainingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AbortTrainingResponse(_message.Message):
    __slots__ = ("training",)
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    training: _training_pb2.Training
    def __init__(self, training: _Optional[_Union[_training_pb2.Training, _Mapping]] = ...) -> None: ...
