import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import category_pb2 as _category_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectRef(_message.Message):
    __slots__ = ("organization", "project")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("ref", "display_name", "description", "create_time")
    REF_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    display_name: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class CreateProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ...) -> None: ...

class GetProjectResponse(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: Project
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ("organization",)
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    organization: str
    def __init__(self, organization: _Optional[str] = ...) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[Project]
    def __init__(self, projects: _Optional[_Iterable[_Union[Project, _Mapping]]] = ...) -> None: ...

class CreateCategoryRequest(_message.Message):
    __slots__ = ("ref", "category")
    REF_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    category: _category_pb2.Category
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ..., category: _Optional[_Union[_category_pb2.Category, _Mapping]] = ...) -> None: ...

class CreateCategoryResponse(_message.Message):
    __slots__ = ("category",)
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    category: _category_pb2.Category
    def __init__(self, category: _Optional[_Union[_category_pb2.Category, _Mapping]] = ...) -> None: ...

class UpdateCategoryRequest(_message.Message):
    __slots__ = ("ref", "category")
    REF_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    category: _category_pb2.Category
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ..., category: _Optional[_Union[_category_pb2.Category, _Mapping]] = ...) -> None: ...

class UpdateCategoryResponse(_message.Message):
    __slots__ = ("category",)
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    category: _category_pb2.Category
    def __init__(self, category: _Optional[_Union[_category_pb2.Category, _Mapping]] = ...) -> None: ...

class ListCategoriesRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ...) -> None: ...

class ListCategoriesResponse(_message.Message):
    __slots__ = ("categories",)
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedCompositeFieldContainer[_category_pb2.Category]
    def __init__(self, categories: _Optional[_Iterable[_Union[_category_pb2.Category, _Mapping]]] = ...) -> None: ...

class DeleteCategoryRequest(_message.Message):
    __slots__ = ("ref", "category_id", "force")
    REF_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    ref: ProjectRef
    category_id: str
    force: bool
    def __init__(self, ref: _Optional[_Union[ProjectRef, _Mapping]] = ..., category_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteCategoryResponse(_message.Message):
    __slots__ = ("deleted_annotations",)
    DELETED_ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    deleted_annotations: int
    def __init__(self, deleted_annotations: _Optional[int] = ...) -> None: ...
