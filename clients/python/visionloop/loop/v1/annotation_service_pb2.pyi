from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import annotation_pb2 as _annotation_pb2
from visionloop.common.v1 import detection_pb2 as _detection_pb2
from visionloop.common.v1 import transfer_pb2 as _transfer_pb2
from visionloop.loop.v1 import project_service_pb2 as _project_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_COCO: _ClassVar[DatasetFormat]
    DATASET_FORMAT_YOLO: _ClassVar[DatasetFormat]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_COCO: DatasetFormat
DATASET_FORMAT_YOLO: DatasetFormat

class CreateAnnotationRequest(_message.Message):
    __slots__ = ("ref", "annotation")
    REF_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    annotation: _annotation_pb2.Annotation
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ...) -> None: ...

class CreateAnnotationResponse(_message.Message):
    __slots__ = ("annotation",)
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    annotation: _annotation_pb2.Annotation
    def __init__(self, annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ...) -> None: ...

class UpdateAnnotationRequest(_message.Message):
    __slots__ = ("ref", "annotation")
    REF_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    annotation: _annotation_pb2.Annotation
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ...) -> None: ...

class UpdateAnnotationResponse(_message.Message):
    __slots__ = ("annotation",)
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    annotation: _annotation_pb2.Annotation
    def __init__(self, annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ...) -> None: ...

class DeleteAnnotationRequest(_message.Message):
    __slots__ = ("ref", "annotation_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    ANNOTATION_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    annotation_id: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., annotation_id: _Optional[str] = ...) -> None: ...

class DeleteAnnotationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAnnotationsRequest(_message.Message):
    __slots__ = ("ref", "image_id")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_id: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_id: _Optional[str] = ...) -> None: ...

class ListAnnotationsResponse(_message.Message):
    __slots__ = ("annotations",)
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    annotations: _containers.RepeatedCompositeFieldContainer[_annotation_pb2.Annotation]
    def __init__(self, annotations: _Optional[_Iterable[_Union[_annotation_pb2.Annotation, _Mapping]]] = ...) -> None: ...

class PutDetectionsRequest(_message.Message):
    __slots__ = ("ref", "image_id", "detections")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_id: str
    detections: _detection_pb2.Detections
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_id: _Optional[str] = ..., detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ...) -> None: ...

class PutDetectionsResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    def __init__(self, stored: _Optional[int] = ...) -> None: ...

class GetDetectionsRequest(_message.Message):
    __slots__ = ("ref", "image_id", "model_version")
    REF_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    image_id: str
    model_version: str
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., image_id: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetDetectionsResponse(_message.Message):
    __slots__ = ("detections",)
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    detections: _detection_pb2.Detections
    def __init__(self, detections: _Optional[_Union[_detection_pb2.Detections, _Mapping]] = ...) -> None: ...

class ImportDatasetHeader(_message.Message):
    __slots__ = ("ref", "format", "blob", "tags")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    format: DatasetFormat
    blob: _transfer_pb2.BlobHeader
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., blob: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class ImportDatasetRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: ImportDatasetHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, header: _Optional[_Union[ImportDatasetHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...

class ImportDatasetResponse(_message.Message):
    __slots__ = ("images_added", "images_duplicate", "images_skipped", "annotations_added", "categories_added", "warnings")
    IMAGES_ADDED_FIELD_NUMBER: _ClassVar[int]
    IMAGES_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_ADDED_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_ADDED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    images_added: int
    images_duplicate: int
    images_skipped: int
    annotations_added: int
    categories_added: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, images_added: _Optional[int] = ..., images_duplicate: _Optional[int] = ..., images_skipped: _Optional[int] = ..., annotations_added: _Optional[int] = ..., categories_added: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportDatasetRequest(_message.Message):
    __slots__ = ("ref", "format")
    REF_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ref: _project_service_pb2.ProjectRef
    format: DatasetFormat
    def __init__(self, ref: _Optional[_Union[_project_service_pb2.ProjectRef, _Mapping]] = ..., format: _Optional[_Union[DatasetFormat, str]] = ...) -> None: ...

class ExportDatasetResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _transfer_pb2.BlobHeader
    chunk: _transfer_pb2.BlobChunk
    def __init__(self, header: _Optional[_Union[_transfer_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[_Union[_transfer_pb2.BlobChunk, _Mapping]] = ...) -> None: ...
