"""Validation and storage of annotations and detections, shared by uploads and AnnotationService."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable

from google.protobuf.message import Message
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from visionloop.common.v1 import annotation_pb2, category_pb2, detection_pb2, geometry_pb2
from visionloop.runtime.errors import InvalidArgument, NotFound
from visionloop.server.hub.db import schema
from visionloop.server.hub.protos import to_timestamp
from visionloop.server.hub.state import AnyProject, utcnow

# keyed by the stored category type (an int column)
_SHAPE_FOR_TYPE: dict[int, str] = {
    category_pb2.CATEGORY_TYPE_BOX: "box",
    category_pb2.CATEGORY_TYPE_POINT: "point",
    category_pb2.CATEGORY_TYPE_SEGMENTATION: "polygon",
    category_pb2.CATEGORY_TYPE_CLASSIFICATION: "whole_image",
}
_SEGMENTS = ("polygon", "multi_polygon", "mask")  # the shapes a segmentation category takes
_TYPE_NAME: dict[int, str] = {
    category_pb2.CATEGORY_TYPE_BOX: "box",
    category_pb2.CATEGORY_TYPE_POINT: "point",
    category_pb2.CATEGORY_TYPE_SEGMENTATION: "segmentation",
    category_pb2.CATEGORY_TYPE_CLASSIFICATION: "classification",
}


def _finite(label: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(f"{label} has a non-finite coordinate")


def check_box(label: str, box: geometry_pb2.Box, image: schema.Image) -> None:
    _finite(label, box.x, box.y, box.width, box.height)
    if box.width < 0 or box.height < 0:
        raise InvalidArgument(f"{label} has a negative size ({box.width:g} x {box.height:g})")
    if box.x >= image.width or box.y >= image.height or box.x + box.width <= 0 or box.y + box.height <= 0:
        raise InvalidArgument(f"{label} lies outside the {image.width}x{image.height} image")


def check_point(label: str, point: geometry_pb2.Point, image: schema.Image) -> None:
    _finite(label, point.x, point.y)
    if not (0 <= point.x <= image.width and 0 <= point.y <= image.height):
        raise InvalidArgument(f"{label} ({point.x:g}, {point.y:g}) lies outside the {image.width}x{image.height} image")


def check_polygon(label: str, polygon: geometry_pb2.Polygon, image: schema.Image) -> None:
    if len(polygon.points) < 3:
        raise InvalidArgument(f"{label} needs at least 3 points, got {len(polygon.points)}")
    for point in polygon.points:
        _finite(label, point.x, point.y)


def resolve_category(session: Session, project: AnyProject, category_id: str, category_name: str) -> schema.Category:
    """The category by id, else by name; NOT_FOUND naming what was asked for."""
    if category_id:
        row = session.get(schema.Category, category_id)
        if row is not None and row.project_pk == project.pk:
            return row
        raise NotFound(f"category id {category_id!r} does not exist in {project.organization}/{project.name}")
    if category_name:
        row = session.scalars(
            select(schema.Category).where(
                schema.Category.project_pk == project.pk, schema.Category.name == category_name
            )
        ).one_or_none()
        if row is not None:
            return row
        raise NotFound(
            f"category {category_name!r} does not exist in {project.organization}/{project.name}; "
            "create it with ProjectService.CreateCategory"
        )
    raise InvalidArgument("category_id or category_name is required")


def check_mask(label: str, mask: geometry_pb2.Mask, image: schema.Image) -> None:
    if (mask.width, mask.height) != (image.width, image.height):
        raise InvalidArgument(
            f"{label} is {mask.width}x{mask.height}; it must be the image's {image.width}x{image.height}"
        )
    if sum(mask.counts) != image.width * image.height:
        raise InvalidArgument(
            f"{label}'s runs cover {sum(mask.counts)} pixels, the image has {image.width * image.height}"
        )


def check_shape(shape: geometry_pb2.Shape, category: schema.Category, image: schema.Image) -> None:
    kind = shape.WhichOneof("kind")
    expected = _SHAPE_FOR_TYPE.get(category.type)
    if kind != expected and not (category.type == category_pb2.CATEGORY_TYPE_SEGMENTATION and kind in _SEGMENTS):
        wanted = "polygon, multi_polygon or mask" if expected == "polygon" else expected
        raise InvalidArgument(
            f"category {category.name!r} is a {_TYPE_NAME.get(category.type, '?')} category: "
            f"its annotations need shape.{wanted}, got {kind or 'no shape'}"
        )
    if kind == "box":
        check_box("annotation box", shape.box, image)
    elif kind == "point":
        check_point("annotation point", shape.point, image)
    elif kind == "polygon":
        check_polygon("annotation polygon", shape.polygon, image)
    elif kind == "multi_polygon":
        if not shape.multi_polygon.polygons:
            raise InvalidArgument("annotation multi_polygon has no polygons")
        for polygon in shape.multi_polygon.polygons:
            check_polygon("annotation multi_polygon outline", polygon, image)
    elif kind == "mask":
        check_mask("annotation mask", shape.mask, image)


def add_annotation(
    session: Session, project: AnyProject, image: schema.Image, annotation: annotation_pb2.Annotation
) -> schema.Annotation:
    category = resolve_category(session, project, annotation.category_id, annotation.category_name)
    check_shape(annotation.shape, category, image)
    creator = annotation.creator
    if creator.WhichOneof("kind") is None:
        raise InvalidArgument("annotation.creator is required: a person or the model version it was accepted from")
    now = utcnow()
    row = schema.Annotation(
        id=str(uuid.uuid4()),
        image_pk=image.pk,
        category_id=category.id,
        shape=annotation.shape.SerializeToString(),
        crowd=annotation.crowd,
        creator_person=creator.person,
        creator_model_version=creator.model_version,
        create_time=now,
        update_time=now,
    )
    session.add(row)
    image.annotation_count += 1
    return row


def annotation_message(row: schema.Annotation, image_sha256: str, category_name: str) -> annotation_pb2.Annotation:
    creator = (
        annotation_pb2.Creator(model_version=row.creator_model_version)
        if row.creator_model_version
        else annotation_pb2.Creator(person=row.creator_person)
    )
    return annotation_pb2.Annotation(
        id=row.id,
        image_id=image_sha256,
        category_id=row.category_id,
        category_name=category_name,
        shape=geometry_pb2.Shape.FromString(row.shape),
        crowd=row.crowd,
        creator=creator,
        create_time=to_timestamp(row.create_time),
        update_time=to_timestamp(row.update_time),
    )


def list_annotations(session: Session, image: schema.Image) -> list[annotation_pb2.Annotation]:
    rows = session.execute(
        select(schema.Annotation, schema.Category.name)
        .join(schema.Category, schema.Category.id == schema.Annotation.category_id)
        .where(schema.Annotation.image_pk == image.pk)
        .order_by(schema.Annotation.create_time, schema.Annotation.id)
    ).all()
    return [annotation_message(row, image.sha256, name) for row, name in rows]


_DETECTION_KINDS = (
    ("boxes", category_pb2.CATEGORY_TYPE_BOX, detection_pb2.BoxDetection),
    ("points", category_pb2.CATEGORY_TYPE_POINT, detection_pb2.PointDetection),
    ("segmentations", category_pb2.CATEGORY_TYPE_SEGMENTATION, detection_pb2.SegmentationDetection),
    ("classifications", category_pb2.CATEGORY_TYPE_CLASSIFICATION, detection_pb2.ClassificationDetection),
)


def _each_detection(detections: detection_pb2.Detections) -> Iterable[tuple[int, object]]:
    for field, kind, _ in _DETECTION_KINDS:
        for item in getattr(detections, field):
            yield kind, item


def put_detections(session: Session, image: schema.Image, detections: detection_pb2.Detections) -> int:
    """Store detections, replacing earlier ones of the same model versions; returns how many were stored."""
    items = list(_each_detection(detections))
    versions = set()
    for kind, item in items:
        label = f"detection of {item.category_name or item.category_id or '?'}"  # type: ignore[attr-defined]
        if not item.model_version:  # type: ignore[attr-defined]
            raise InvalidArgument(f"{label} has no model_version")
        if not 0 <= item.confidence <= 1:  # type: ignore[attr-defined]
            raise InvalidArgument(f"{label} has confidence {item.confidence:g} outside [0, 1]")  # type: ignore[attr-defined]
        if not (item.category_id or item.category_name):  # type: ignore[attr-defined]
            raise InvalidArgument(f"{label} has neither category_id nor category_name")
        if kind == category_pb2.CATEGORY_TYPE_BOX:
            check_box(label, item.box, image)  # type: ignore[attr-defined]
        elif kind == category_pb2.CATEGORY_TYPE_POINT:
            check_point(label, item.point, image)  # type: ignore[attr-defined]
        elif kind == category_pb2.CATEGORY_TYPE_SEGMENTATION:
            check_polygon(label, item.polygon, image)  # type: ignore[attr-defined]
        versions.add(item.model_version)  # type: ignore[attr-defined]
    if versions:
        session.execute(
            delete(schema.Detection).where(
                schema.Detection.image_pk == image.pk, schema.Detection.model_version.in_(versions)
            )
        )
    for kind, item in items:
        session.add(
            schema.Detection(
                image_pk=image.pk,
                model_version=item.model_version,  # type: ignore[attr-defined]
                kind=kind,
                category_id=item.category_id,  # type: ignore[attr-defined]
                category_name=item.category_name,  # type: ignore[attr-defined]
                confidence=item.confidence,  # type: ignore[attr-defined]
                payload=item.SerializeToString(),  # type: ignore[attr-defined]
            )
        )
    session.flush()
    image.detection_count = (
        session.scalar(select(func.count()).select_from(schema.Detection).where(schema.Detection.image_pk == image.pk))
        or 0
    )
    return len(items)


def get_detections(session: Session, image: schema.Image, model_version: str = "") -> detection_pb2.Detections:
    query = select(schema.Detection).where(schema.Detection.image_pk == image.pk)
    if model_version:
        query = query.where(schema.Detection.model_version == model_version)
    result = detection_pb2.Detections()
    by_kind: dict[int, tuple[str, type[Message]]] = {kind: (field, cls) for field, kind, cls in _DETECTION_KINDS}
    for row in session.scalars(query.order_by(schema.Detection.confidence.desc(), schema.Detection.pk)):
        field, cls = by_kind[row.kind]
        getattr(result, field).append(cls.FromString(row.payload))
    return result
