import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import annotation_pb2 as _annotation_pb2
from visionloop.common.v1 import detection_pb2 as _detection_pb2
from visionloop.common.v1 import image_pb2 as _image_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AutoUpload(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTO_UPLOAD_UNSPECIFIED: _ClassVar[AutoUpload]
    AUTO_UPLOAD_FILTERED: _ClassVar[AutoUpload]
    AUTO_UPLOAD_ALL: _ClassVar[AutoUpload]
    AUTO_UPLOAD_DISABLED: _ClassVar[AutoUpload]

class UploadPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_PRIORITY_UNSPECIFIED: _ClassVar[UploadPriority]
    UPLOAD_PRIORITY_NORMAL: _ClassVar[UploadPriority]
    UPLOAD_PRIORITY_HIGH: _ClassVar[UploadPriority]

class OperationMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_MODE_UNSPECIFIED: _ClassVar[OperationMode]
    OPERATION_MODE_DETECTING: _ClassVar[OperationMode]
    OPERATION_MODE_IDLE: _ClassVar[OperationMode]

class OutboxMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTBOX_MODE_UNSPECIFIED: _ClassVar[OutboxMode]
    OUTBOX_MODE_CONTINUOUS_UPLOAD: _ClassVar[OutboxMode]
    OUTBOX_MODE_STOPPED: _ClassVar[OutboxMode]

class VersionControl(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_CONTROL_UNSPECIFIED: _ClassVar[VersionControl]
    VERSION_CONTROL_FOLLOW_LOOP: _ClassVar[VersionControl]
    VERSION_CONTROL_PAUSE: _ClassVar[VersionControl]
    VERSION_CONTROL_PIN: _ClassVar[VersionControl]
AUTO_UPLOAD_UNSPECIFIED: AutoUpload
AUTO_UPLOAD_FILTERED: AutoUpload
AUTO_UPLOAD_ALL: AutoUpload
AUTO_UPLOAD_DISABLED: AutoUpload
UPLOAD_PRIORITY_UNSPECIFIED: UploadPriority
UPLOAD_PRIORITY_NORMAL: UploadPriority
UPLOAD_PRIORITY_HIGH: UploadPriority
OPERATION_MODE_UNSPECIFIED: OperationMode
OPERATION_MODE_DETECTING: OperationMode
OPERATION_MODE_IDLE: OperationMode
OUTBOX_MODE_UNSPECIFIED: OutboxMode
OUTBOX_MODE_CONTINUOUS_UPLOAD: OutboxMode
OUTBOX_MODE_STOPPED: OutboxMode
VERSION_CONTROL_UNSPECIFIED: VersionControl
VERSION_CONTROL_FOLLOW_LOOP: VersionControl
VERSION_CONTROL_PAUSE: VersionControl
VERSION_CONTROL_PIN: VersionControl

class DetectOptions(_message.Message):
    __slots__ = ("autoupload", "camera_id", "tags", "score_threshold", "iou_threshold", "max_objects", "class_agnostic_nms", "rescale_type", "model")
    AUTOUPLOAD_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    CLASS_AGNOSTIC_NMS_FIELD_NUMBER: _ClassVar[int]
    RESCALE_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    autoupload: AutoUpload
    camera_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    score_threshold: float
    iou_threshold: float
    max_objects: int
    class_agnostic_nms: bool
    rescale_type: _model_pb2.RescaleType
    model: str
    def __init__(self, autoupload: _Optional[_Union[AutoUpload, str]] = ..., camera_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_objects: _Optional[int] = ..., class_agnostic_nms: _Optional[bool] = ..., rescale_type: _Optional[_Union[_model_pb2.RescaleType, str]] = ..., model: _Optional[str] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("preprocess", "queue", "inference", "postprocess")
    PREPROCESS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_FIELD_NUMBER: _ClassVar[int]
    preprocess: _duration_pb2.Duration
    queue: _duration_pb2.Duration
    inference: _duration_pb2.Duration
    postprocess: _duration_pb2.Duration
    def __init__(self, preprocess: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., queue: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., inference: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., postprocess: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: _image_pb2.Image
    options: DetectOptions
    def __init__(self, image: _Optional[_Union[_image_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[DetectOptions, _Mapping]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("detections", "model", "model_version", "image_width", "image_height", "uploaded", "upload_reason", "timing")
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    detections: _detection_pb2.Detections
    model: str
    model_version: str
    image_width: int
    image_height: int
    uploaded: bool
    upload_reason: str
    timing: Timing
    def __init__(self, detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., uploaded: _Optional[bool] = ..., upload_reason: _Optional[str] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ...) -> None: ...

class DetectBatchRequest(_message.Message):
    __slots__ = ("images", "options")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_image_pb2.Image]
    options: DetectOptions
    def __init__(self, images: _Optional[_Iterable[_Union[_image_pb2.Image, _Mapping]]] = ..., options: _Optional[_Union[DetectOptions, _Mapping]] = ...) -> None: ...

class DetectBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DetectResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[DetectResponse, _Mapping]]] = ...) -> None: ...

class DetectStreamRequest(_message.Message):
    __slots__ = ("frame_id", "image", "options")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    image: _image_pb2.Image
    options: DetectOptions
    def __init__(self, frame_id: _Optional[int] = ..., image: _Optional[_Union[_image_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[DetectOptions, _Mapping]] = ...) -> None: ...

class DetectStreamResponse(_message.Message):
    __slots__ = ("frame_id", "result", "error_code", "error_message")
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    frame_id: int
    result: DetectResponse
    error_code: int
    error_message: str
    def __init__(self, frame_id: _Optional[int] = ..., result: _Optional[_Union[DetectResponse, _Mapping]] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("image", "tags", "camera_id", "annotations", "detections", "priority", "create_time")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    image: _image_pb2.Image
    tags: _containers.RepeatedScalarFieldContainer[str]
    camera_id: str
    annotations: _containers.RepeatedCompositeFieldContainer[_annotation_pb2.Annotation]
    detections: _detection_pb2.Detections
    priority: UploadPriority
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, image: _Optional[_Union[_image_pb2.Image, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., camera_id: _Optional[str] = ..., annotations: _Optional[_Iterable[_Union[_annotation_pb2.Annotation, _Mapping]]] = ..., detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ..., priority: _Optional[_Union[UploadPriority, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("item_id", "outbox_depth")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    outbox_depth: int
    def __init__(self, item_id: _Optional[str] = ..., outbox_depth: _Optional[int] = ...) -> None: ...

class LoadedModel(_message.Message):
    __slots__ = ("name", "info", "backend", "is_default", "load_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    info: _model_pb2.ModelInfo
    backend: str
    is_default: bool
    load_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., info: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ..., backend: _Optional[str] = ..., is_default: _Optional[bool] = ..., load_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OutboxStatus(_message.Message):
    __slots__ = ("mode", "depth", "size_bytes", "dropped", "last_error", "rejected", "uploaded")
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_FIELD_NUMBER: _ClassVar[int]
    mode: OutboxMode
    depth: int
    size_bytes: int
    dropped: int
    last_error: str
    rejected: int
    uploaded: int
    def __init__(self, mode: _Optional[_Union[OutboxMode, str]] = ..., depth: _Optional[int] = ..., size_bytes: _Optional[int] = ..., dropped: _Optional[int] = ..., last_error: _Optional[str] = ..., rejected: _Optional[int] = ..., uploaded: _Optional[int] = ...) -> None: ...

class GetAboutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAboutResponse(_message.Message):
    __slots__ = ("node_id", "software_version", "operation_mode", "version_control", "pinned_version", "organization", "project", "models", "outbox", "formats")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_MODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_CONTROL_FIELD_NUMBER: _ClassVar[int]
    PINNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    software_version: str
    operation_mode: OperationMode
    version_control: VersionControl
    pinned_version: str
    organization: str
    project: str
    models: _containers.RepeatedCompositeFieldContainer[LoadedModel]
    outbox: OutboxStatus
    formats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., software_version: _Optional[str] = ..., operation_mode: _Optional[_Union[OperationMode, str]] = ..., version_control: _Optional[_Union[VersionControl, str]] = ..., pinned_version: _Optional[str] = ..., organization: _Optional[str] = ..., project: _Optional[str] = ..., models: _Optional[_Iterable[_Union[LoadedModel, _Mapping]]] = ..., outbox: _Optional[_Union[OutboxStatus, _Mapping]] = ..., formats: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: _model_pb2.ModelInfo
    def __init__(self, info: _Optional[_Union[_model_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class ListLoadedModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLoadedModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[LoadedModel]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[LoadedModel, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class SetOperationModeRequest(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: OperationMode
    def __init__(self, mode: _Optional[_Union[OperationMode, str]] = ...) -> None: ...

class SetOperationModeResponse(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: OperationMode
    def __init__(self, mode: _Optional[_Union[OperationMode, str]] = ...) -> None: ...

class SetOutboxModeRequest(_message.Message):
    __slots__ = ("mode",)
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: OutboxMode
    def __init__(self, mode: _Optional[_Union[OutboxMode, str]] = ...) -> None: ...

class SetOutboxModeResponse(_message.Message):
    __slots__ = ("outbox",)
    OUTBOX_FIELD_NUMBER: _ClassVar[int]
    outbox: OutboxStatus
    def __init__(self, outbox: _Optional[_Union[OutboxStatus, _Mapping]] = ...) -> None: ...

class SetVersionControlRequest(_message.Message):
    __slots__ = ("version_control", "pinned_version")
    VERSION_CONTROL_FIELD_NUMBER: _ClassVar[int]
    PINNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    version_control: VersionControl
    pinned_version: str
    def __init__(self, version_control: _Optional[_Union[VersionControl, str]] = ..., pinned_version: _Optional[str] = ...) -> None: ...

class SetVersionControlResponse(_message.Message):
    __slots__ = ("version_control", "pinned_version")
    VERSION_CONTROL_FIELD_NUMBER: _ClassVar[int]
    PINNED_VERSION_FIELD_NUMBER: _ClassVar[int]
    version_control: VersionControl
    pinned_version: str
    def __init__(self, version_control: _Optional[_Union[VersionControl, str]] = ..., pinned_version: _Optional[str] = ...) -> None: ...
