import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import category_pb2 as _category_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RescaleType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESCALE_TYPE_UNSPECIFIED: _ClassVar[RescaleType]
    RESCALE_TYPE_WARP: _ClassVar[RescaleType]
    RESCALE_TYPE_PAD: _ClassVar[RescaleType]
    RESCALE_TYPE_CROP: _ClassVar[RescaleType]

class Letterbox(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LETTERBOX_UNSPECIFIED: _ClassVar[Letterbox]
    LETTERBOX_TOP_LEFT: _ClassVar[Letterbox]
    LETTERBOX_CENTER: _ClassVar[Letterbox]

class ColorOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_ORDER_UNSPECIFIED: _ClassVar[ColorOrder]
    COLOR_ORDER_RGB: _ClassVar[ColorOrder]
    COLOR_ORDER_BGR: _ClassVar[ColorOrder]

class OutputDecoder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_DECODER_UNSPECIFIED: _ClassVar[OutputDecoder]
    OUTPUT_DECODER_VISIONLOOP_CENTERNET: _ClassVar[OutputDecoder]
    OUTPUT_DECODER_YOLOV8: _ClassVar[OutputDecoder]
    OUTPUT_DECODER_CLASSIFIER: _ClassVar[OutputDecoder]
    OUTPUT_DECODER_YOLOV8_SEGMENT: _ClassVar[OutputDecoder]

class PromotionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROMOTION_STATE_UNSPECIFIED: _ClassVar[PromotionState]
    PROMOTION_STATE_PROMOTED: _ClassVar[PromotionState]
    PROMOTION_STATE_HELD: _ClassVar[PromotionState]
RESCALE_TYPE_UNSPECIFIED: RescaleType
RESCALE_TYPE_WARP: RescaleType
RESCALE_TYPE_PAD: RescaleType
RESCALE_TYPE_CROP: RescaleType
LETTERBOX_UNSPECIFIED: Letterbox
LETTERBOX_TOP_LEFT: Letterbox
LETTERBOX_CENTER: Letterbox
COLOR_ORDER_UNSPECIFIED: ColorOrder
COLOR_ORDER_RGB: ColorOrder
COLOR_ORDER_BGR: ColorOrder
OUTPUT_DECODER_UNSPECIFIED: OutputDecoder
OUTPUT_DECODER_VISIONLOOP_CENTERNET: OutputDecoder
OUTPUT_DECODER_YOLOV8: OutputDecoder
OUTPUT_DECODER_CLASSIFIER: OutputDecoder
OUTPUT_DECODER_YOLOV8_SEGMENT: OutputDecoder
PROMOTION_STATE_UNSPECIFIED: PromotionState
PROMOTION_STATE_PROMOTED: PromotionState
PROMOTION_STATE_HELD: PromotionState

class ModelInput(_message.Message):
    __slots__ = ("tensor_name", "width", "height", "color_order", "rescale_type", "mean", "std", "letterbox", "batch_size", "stride")
    TENSOR_NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    COLOR_ORDER_FIELD_NUMBER: _ClassVar[int]
    RESCALE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    LETTERBOX_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    tensor_name: str
    width: int
    height: int
    color_order: ColorOrder
    rescale_type: RescaleType
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    letterbox: Letterbox
    batch_size: int
    stride: int
    def __init__(self, tensor_name: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., color_order: _Optional[_Union[ColorOrder, str]] = ..., rescale_type: _Optional[_Union[RescaleType, str]] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., letterbox: _Optional[_Union[Letterbox, str]] = ..., batch_size: _Optional[int] = ..., stride: _Optional[int] = ...) -> None: ...

class ModelOutput(_message.Message):
    __slots__ = ("decoder", "tensor_names", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DECODER_FIELD_NUMBER: _ClassVar[int]
    TENSOR_NAMES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    decoder: OutputDecoder
    tensor_names: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, decoder: _Optional[_Union[OutputDecoder, str]] = ..., tensor_names: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DetectionDefaults(_message.Message):
    __slots__ = ("score_threshold", "iou_threshold", "max_objects")
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    score_threshold: float
    iou_threshold: float
    max_objects: int
    def __init__(self, score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_objects: _Optional[int] = ...) -> None: ...

class ClassMetrics(_message.Message):
    __slots__ = ("category_id", "category_name", "tp", "fp", "fn", "ap50", "ap50_95")
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_NAME_FIELD_NUMBER: _ClassVar[int]
    TP_FIELD_NUMBER: _ClassVar[int]
    FP_FIELD_NUMBER: _ClassVar[int]
    FN_FIELD_NUMBER: _ClassVar[int]
    AP50_FIELD_NUMBER: _ClassVar[int]
    AP50_95_FIELD_NUMBER: _ClassVar[int]
    category_id: str
    category_name: str
    tp: int
    fp: int
    fn: int
    ap50: float
    ap50_95: float
    def __init__(self, category_id: _Optional[str] = ..., category_name: _Optional[str] = ..., tp: _Optional[int] = ..., fp: _Optional[int] = ..., fn: _Optional[int] = ..., ap50: _Optional[float] = ..., ap50_95: _Optional[float] = ...) -> None: ...

class ModelMetrics(_message.Message):
    __slots__ = ("classes", "map50", "image_count", "map50_95", "held_out_digest", "baselines")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    MAP50_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAP50_95_FIELD_NUMBER: _ClassVar[int]
    HELD_OUT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassMetrics]
    map50: float
    image_count: int
    map50_95: float
    held_out_digest: str
    baselines: _containers.RepeatedCompositeFieldContainer[BaselineMetrics]
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassMetrics, _Mapping]]] = ..., map50: _Optional[float] = ..., image_count: _Optional[int] = ..., map50_95: _Optional[float] = ..., held_out_digest: _Optional[str] = ..., baselines: _Optional[_Iterable[_Union[BaselineMetrics, _Mapping]]] = ...) -> None: ...

class BaselineMetrics(_message.Message):
    __slots__ = ("version", "map50", "map50_95")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAP50_FIELD_NUMBER: _ClassVar[int]
    MAP50_95_FIELD_NUMBER: _ClassVar[int]
    version: str
    map50: float
    map50_95: float
    def __init__(self, version: _Optional[str] = ..., map50: _Optional[float] = ..., map50_95: _Optional[float] = ...) -> None: ...

class Promotion(_message.Message):
    __slots__ = ("state", "reason", "compared_version", "map50", "compared_map50", "tolerance", "image_count", "decide_time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPARED_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAP50_FIELD_NUMBER: _ClassVar[int]
    COMPARED_MAP50_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    state: PromotionState
    reason: str
    compared_version: str
    map50: float
    compared_map50: float
    tolerance: float
    image_count: int
    decide_time: _timestamp_pb2.Timestamp
    def __init__(self, state: _Optional[_Union[PromotionState, str]] = ..., reason: _Optional[str] = ..., compared_version: _Optional[str] = ..., map50: _Optional[float] = ..., compared_map50: _Optional[float] = ..., tolerance: _Optional[float] = ..., image_count: _Optional[int] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "host", "organization", "project", "version", "format", "resolution", "categories", "input", "output", "detection_defaults", "base_model_version", "training_id", "variant", "metrics", "formats", "create_time", "comment", "sha256", "size_bytes", "promotion")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DETECTION_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ID_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    id: str
    host: str
    organization: str
    project: str
    version: str
    format: str
    resolution: int
    categories: _containers.RepeatedCompositeFieldContainer[_category_pb2.Category]
    input: ModelInput
    output: ModelOutput
    detection_defaults: DetectionDefaults
    base_model_version: str
    training_id: str
    variant: str
    metrics: ModelMetrics
    formats: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    comment: str
    sha256: str
    size_bytes: int
    promotion: Promotion
    def __init__(self, id: _Optional[str] = ..., host: _Optional[str] = ..., organization: _Optional[str] = ..., project: _Optional[str] = ..., version: _Optional[str] = ..., format: _Optional[str] = ..., resolution: _Optional[int] = ..., categories: _Optional[_Iterable[_Union[_category_pb2.Category, _Mapping]]] = ..., input: _Optional[_Union[ModelInput, _Mapping]] = ..., output: _Optional[_Union[ModelOutput, _Mapping]] = ..., detection_defaults: _Optional[_Union[DetectionDefaults, _Mapping]] = ..., base_model_version: _Optional[str] = ..., training_id: _Optional[str] = ..., variant: _Optional[str] = ..., metrics: _Optional[_Union[ModelMetrics, _Mapping]] = ..., formats: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comment: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., promotion: _Optional[_Union[Promotion, _Mapping]] = ...) -> None: ...
