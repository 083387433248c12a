import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import annotation_pb2 as _annotation_pb2
from visionloop.common.v1 import detection_pb2 as _detection_pb2
from visionloop.common.v1 import image_pb2 as _image_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from visionloop.common.v1 import transfer_pb2 as _transfer_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ORDER_UNSPECIFIED: _ClassVar[ImageOrder]
    IMAGE_ORDER_NEWEST: _ClassVar[ImageOrder]
    IMAGE_ORDER_PRIORITY: _ClassVar[ImageOrder]
    IMAGE_ORDER_OLDEST: _ClassVar[ImageOrder]
IMAGE_ORDER_UNSPECIFIED: ImageOrder
IMAGE_ORDER_NEWEST: ImageOrder
IMAGE_ORDER_PRIORITY: ImageOrder
IMAGE_ORDER_OLDEST: ImageOrder

class ImageUpload(_message.Message):
    __slots__ = ("data", "metadata", "annotations", "detections")
    DATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    metadata: _image_pb2.ImageMetadata
    annotations: _containers.RepeatedCompositeFieldContainer[_annotation_pb2.Annotation]
    detections: _detection_pb2.Detections
    def __init__(self, data: _Optional[bytes] = ..., metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ..., annotations: _Optional[_Iterable[_Union[_annotation_pb2.Annotation, _Mapping]]] = ..., detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ...) -> None: ...

class UploadImageRequest(_message.Message):
    __slots__ = ("ref", "image")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image: ImageUpload
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image: _Optional[_Union[ImageUpload, _Mapping]] = ...) -> None: ...

class UploadImageResponse(_message.Message):
    __slots__ = ("metadata", "duplicate")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    metadata: _image_pb2.ImageMetadata
    duplicate: bool
    def __init__(self, metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ImageHeader(_message.Message):
    __slots__ = ("sequence", "blob", "metadata", "annotations", "detections")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    blob: _transfer_pb2.BlobHeader
    metadata: _image_pb2.ImageMetadata
    annotations: _containers.RepeatedCompositeFieldContainer[_annotation_pb2.Annotation]
    detections: _detection_pb2.Detections
    def __init__(self, sequence: _Optional[int] = ..., blob: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ..., annotations: _Optional[_Iterable[_Union[_annotation_pb2.Annotation, _Mapping]]] = ..., detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ...) -> None: ...

class UploadImagesRequest(_message.Message):
    __slots__ = ("ref", "header", "chunk")
    REF_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    header: ImageHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., header: _Optional[_Union[ImageHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

class UploadImagesResponse(_message.Message):
    __slots__ = ("sequence", "metadata", "duplicate", "error_code", "error_message", "retry_later")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_LATER_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    metadata: _image_pb2.ImageMetadata
    duplicate: bool
    error_code: int
    error_message: str
    retry_later: bool
    def __init__(self, sequence: _Optional[int] = ..., metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ..., duplicate: _Optional[bool] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., retry_later: _Optional[bool] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("ref", "image_id", "include_labels")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LABELS_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_id: str
    include_labels: bool
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_id: _Optional[str] = ..., include_labels: _Optional[bool] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("metadata", "annotations", "detections")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    metadata: _image_pb2.ImageMetadata
    annotations: _containers.RepeatedCompositeFieldContainer[_annotation_pb2.Annotation]
    detections: _detection_pb2.Detections
    def __init__(self, metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ..., annotations: _Optional[_Iterable[_Union[_annotation_pb2.Annotation, _Mapping]]] = ..., detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ...) -> None: ...

class ImageFilter(_message.Message):
    __slots__ = ("states", "tags", "camera_id", "upload_time_from", "upload_time_to", "has_annotations", "has_detections")
    STATES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_FROM_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_TO_FIELD_NUMBER: _ClassVar[int]
    HAS_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    HAS_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_image_pb2.ImageState]
    tags: _containers.RepeatedScalarFieldContainer[str]
    camera_id: str
    upload_time_from: _timestamp_pb2.Timestamp
    upload_time_to: _timestamp_pb2.Timestamp
    has_annotations: bool
    has_detections: bool
    def __init__(self, states: _Optional[_Iterable[_Union[_image_pb2.ImageState, str]]] = ..., tags: _Optional[_Iterable[str]] = ..., camera_id: _Optional[str] = ..., upload_time_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., upload_time_to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., has_annotations: _Optional[bool] = ..., has_detections: _Optional[bool] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ("ref", "filter", "order", "page_size", "page_token")
    REF_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    filter: ImageFilter
    order: ImageOrder
    page_size: int
    page_token: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., filter: _Optional[_Union[ImageFilter, _Mapping]] = ..., order: _Optional[_Union[ImageOrder, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_image_pb2.ImageMetadata]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[_image_pb2.ImageMetadata, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateImageRequest(_message.Message):
    __slots__ = ("ref", "image_id", "add_tags", "remove_tags", "state", "priority")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_id: str
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    state: _image_pb2.ImageState
    priority: float
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_id: _Optional[str] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[_image_pb2.ImageState, str]] = ..., priority: _Optional[float] = ...) -> None: ...

class UpdateImageResponse(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _image_pb2.ImageMetadata
    def __init__(self, metadata: _Optional[_Union[_image_pb2.ImageMetadata, _Mapping]] = ...) -> None: ...

class DownloadImagesRequest(_message.Message):
    __slots__ = ("ref", "image_ids")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadImagesResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _transfer_pb2.BlobHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, header: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

class ListAnnotationQueueRequest(_message.Message):
    __slots__ = ("ref", "page_size", "page_token")
    REF_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    page_size: int
    page_token: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAnnotationQueueResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_image_pb2.ImageMetadata]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[_image_pb2.ImageMetadata, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
