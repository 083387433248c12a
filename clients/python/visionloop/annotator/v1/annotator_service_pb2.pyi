from visionloop.common.v1 import access_pb2 as _access_pb2
from visionloop.common.v1 import annotation_pb2 as _annotation_pb2
from visionloop.common.v1 import geometry_pb2 as _geometry_pb2
from visionloop.common.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionTool(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_TOOL_UNSPECIFIED: _ClassVar[SessionTool]
    SESSION_TOOL_MASK: _ClassVar[SessionTool]
    SESSION_TOOL_BOX: _ClassVar[SessionTool]
    SESSION_TOOL_POINT: _ClassVar[SessionTool]

class Ranker(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RANKER_UNSPECIFIED: _ClassVar[Ranker]
    RANKER_LEAST_CONFIDENCE: _ClassVar[Ranker]
    RANKER_MARGIN: _ClassVar[Ranker]
    RANKER_ENTROPY: _ClassVar[Ranker]
    RANKER_DIVERSITY: _ClassVar[Ranker]

class Acquisition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACQUISITION_UNSPECIFIED: _ClassVar[Acquisition]
    ACQUISITION_BALANCED: _ClassVar[Acquisition]
    ACQUISITION_UNCERTAINTY: _ClassVar[Acquisition]
    ACQUISITION_RANDOM: _ClassVar[Acquisition]
    ACQUISITION_ARRIVAL: _ClassVar[Acquisition]

class Reducer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REDUCER_UNSPECIFIED: _ClassVar[Reducer]
    REDUCER_MAX: _ClassVar[Reducer]
    REDUCER_MEAN: _ClassVar[Reducer]
    REDUCER_SUM: _ClassVar[Reducer]
SESSION_TOOL_UNSPECIFIED: SessionTool
SESSION_TOOL_MASK: SessionTool
SESSION_TOOL_BOX: SessionTool
SESSION_TOOL_POINT: SessionTool
RANKER_UNSPECIFIED: Ranker
RANKER_LEAST_CONFIDENCE: Ranker
RANKER_MARGIN: Ranker
RANKER_ENTROPY: Ranker
RANKER_DIVERSITY: Ranker
ACQUISITION_UNSPECIFIED: Acquisition
ACQUISITION_BALANCED: Acquisition
ACQUISITION_UNCERTAINTY: Acquisition
ACQUISITION_RANDOM: Acquisition
ACQUISITION_ARRIVAL: Acquisition
REDUCER_UNSPECIFIED: Reducer
REDUCER_MAX: Reducer
REDUCER_MEAN: Reducer
REDUCER_SUM: Reducer

class PointPrompt(_message.Message):
    __slots__ = ("point", "positive")
    POINT_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    point: _geometry_pb2.Point
    positive: bool
    def __init__(self, point: _Optional[_Union[_geometry_pb2.Point, _Mapping]] = ..., positive: _Optional[bool] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("polygon", "mask", "box", "point", "score")
    POLYGON_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    polygon: _geometry_pb2.Polygon
    mask: _geometry_pb2.Mask
    box: _geometry_pb2.Box
    point: _geometry_pb2.Point
    score: float
    def __init__(self, polygon: _Optional[_Union[_geometry_pb2.Polygon, _Mapping]] = ..., mask: _Optional[_Union[_geometry_pb2.Mask, _Mapping]] = ..., box: _Optional[_Union[_geometry_pb2.Box, _Mapping]] = ..., point: _Optional[_Union[_geometry_pb2.Point, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class OpenSessionRequest(_message.Message):
    __slots__ = ("organization", "project", "image_id", "tool", "backend")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    image_id: str
    tool: SessionTool
    backend: str
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ..., image_id: _Optional[str] = ..., tool: _Optional[_Union[SessionTool, str]] = ..., backend: _Optional[str] = ...) -> None: ...

class OpenSessionResponse(_message.Message):
    __slots__ = ("session_id", "image_width", "image_height", "backend")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    image_width: int
    image_height: int
    backend: str
    def __init__(self, session_id: _Optional[str] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., backend: _Optional[str] = ...) -> None: ...

class PromptRequest(_message.Message):
    __slots__ = ("session_id", "points", "box", "category_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    points: _containers.RepeatedCompositeFieldContainer[PointPrompt]
    box: _geometry_pb2.Box
    category_id: str
    def __init__(self, session_id: _Optional[str] = ..., points: _Optional[_Iterable[_Union[PointPrompt, _Mapping]]] = ..., box: _Optional[_Union[_geometry_pb2.Box, _Mapping]] = ..., category_id: _Optional[str] = ...) -> None: ...

class PromptResponse(_message.Message):
    __slots__ = ("proposal", "prompt_count")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    prompt_count: int
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., prompt_count: _Optional[int] = ...) -> None: ...

class UndoRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class UndoResponse(_message.Message):
    __slots__ = ("proposal", "prompt_count")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    proposal: Proposal
    prompt_count: int
    def __init__(self, proposal: _Optional[_Union[Proposal, _Mapping]] = ..., prompt_count: _Optional[int] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AcceptRequest(_message.Message):
    __slots__ = ("session_id", "category_id", "person")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_ID_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    category_id: str
    person: str
    def __init__(self, session_id: _Optional[str] = ..., category_id: _Optional[str] = ..., person: _Optional[str] = ...) -> None: ...

class AcceptResponse(_message.Message):
    __slots__ = ("annotation",)
    ANNOTATION_FIELD_NUMBER: _ClassVar[int]
    annotation: _annotation_pb2.Annotation
    def __init__(self, annotation: _Optional[_Union[_annotation_pb2.Annotation, _Mapping]] = ...) -> None: ...

class CloseSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CloseSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PreAnnotateRequest(_message.Message):
    __slots__ = ("organization", "project", "image_ids", "limit")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ..., image_ids: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class PreAnnotateResponse(_message.Message):
    __slots__ = ("images", "suggestions", "model_version")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    images: int
    suggestions: int
    model_version: str
    def __init__(self, images: _Optional[int] = ..., suggestions: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class RankQueueRequest(_message.Message):
    __slots__ = ("organization", "project", "ranker", "reducer")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    RANKER_FIELD_NUMBER: _ClassVar[int]
    REDUCER_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    ranker: Ranker
    reducer: Reducer
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ..., ranker: _Optional[_Union[Ranker, str]] = ..., reducer: _Optional[_Union[Reducer, str]] = ...) -> None: ...

class SelectImagesRequest(_message.Message):
    __slots__ = ("organization", "project", "budget", "acquisition", "ranker", "reducer", "score_threshold", "seed")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    ACQUISITION_FIELD_NUMBER: _ClassVar[int]
    RANKER_FIELD_NUMBER: _ClassVar[int]
    REDUCER_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    organization: str
    project: str
    budget: int
    acquisition: Acquisition
    ranker: Ranker
    reducer: Reducer
    score_threshold: float
    seed: int
    def __init__(self, organization: _Optional[str] = ..., project: _Optional[str] = ..., budget: _Optional[int] = ..., acquisition: _Optional[_Union[Acquisition, str]] = ..., ranker: _Optional[_Union[Ranker, str]] = ..., reducer: _Optional[_Union[Reducer, str]] = ..., score_threshold: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class SelectedImage(_message.Message):
    __slots__ = ("image_id", "priority", "uncertainty")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    priority: float
    uncertainty: float
    def __init__(self, image_id: _Optional[str] = ..., priority: _Optional[float] = ..., uncertainty: _Optional[float] = ...) -> None: ...

class SelectImagesResponse(_message.Message):
    __slots__ = ("selected", "candidates", "model_version")
    SELECTED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    selected: _containers.RepeatedCompositeFieldContainer[SelectedImage]
    candidates: int
    model_version: str
    def __init__(self, selected: _Optional[_Iterable[_Union[SelectedImage, _Mapping]]] = ..., candidates: _Optional[int] = ..., model_version: _Optional[str] = ...) -> None: ...

class RankQueueResponse(_message.Message):
    __slots__ = ("ranked",)
    RANKED_FIELD_NUMBER: _ClassVar[int]
    ranked: int
    def __init__(self, ranked: _Optional[int] = ...) -> None: ...
