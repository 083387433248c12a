"""Human annotations and model detections per image (kept apart); dataset import and export."""

from __future__ import annotations

import grpc
from sqlalchemy import select
from sqlalchemy.orm import Session

from visionloop.loop.db import schema
from visionloop.loop.hub import Hub, get_project, utcnow
from visionloop.loop.images import get_image
from visionloop.loop.labels import (
    add_annotation,
    annotation_message,
    check_shape,
    get_detections,
    list_annotations,
    put_detections,
    resolve_category,
)
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import annotation_service_pb2_grpc
from visionloop.runtime.errors import InvalidArgument, NotFound


def _annotation_row(
    session: Session, project: schema.Project, annotation_id: str
) -> tuple[schema.Annotation, schema.Image]:
    found = session.execute(
        select(schema.Annotation, schema.Image)
        .join(schema.Image, schema.Image.pk == schema.Annotation.image_pk)
        .where(schema.Annotation.id == annotation_id, schema.Image.project_pk == project.pk)
    ).one_or_none()
    if found is None:
        raise NotFound(f"annotation {annotation_id!r} does not exist in {project.organization}/{project.name}")
    return found[0], found[1]


class AnnotationServicer(annotation_service_pb2_grpc.AnnotationServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def CreateAnnotation(
        self, request: pb.CreateAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateAnnotationResponse:
        annotation = request.annotation
        if not annotation.image_id:
            raise InvalidArgument("annotation.image_id is required")

        def create(session: Session) -> pb.CreateAnnotationResponse:
            project = get_project(session, request.ref)
            image = get_image(session, project, annotation.image_id)
            row = add_annotation(session, project, image, annotation)
            session.flush()
            category = session.get(schema.Category, row.category_id)
            assert category is not None
            return pb.CreateAnnotationResponse(annotation=annotation_message(row, image.sha256, category.name))

        return await self.hub.db.write(create)

    async def UpdateAnnotation(
        self, request: pb.UpdateAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateAnnotationResponse:
        annotation = request.annotation
        if not annotation.id:
            raise InvalidArgument("annotation.id is required")

        def update(session: Session) -> pb.UpdateAnnotationResponse:
            project = get_project(session, request.ref)
            row, image = _annotation_row(session, project, annotation.id)
            if annotation.category_id or annotation.category_name:
                category = resolve_category(session, project, annotation.category_id, annotation.category_name)
            else:
                category = session.get(schema.Category, row.category_id)
                assert category is not None
            shape = annotation.shape if annotation.HasField("shape") else type(annotation.shape).FromString(row.shape)
            check_shape(shape, category, image)
            row.category_id = category.id
            row.shape = shape.SerializeToString()
            row.update_time = utcnow()
            if annotation.creator.WhichOneof("kind"):
                row.creator_person = annotation.creator.person
                row.creator_model_version = annotation.creator.model_version
            return pb.UpdateAnnotationResponse(annotation=annotation_message(row, image.sha256, category.name))

        return await self.hub.db.write(update)

    async def DeleteAnnotation(
        self, request: pb.DeleteAnnotationRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteAnnotationResponse:
        def delete(session: Session) -> None:
            project = get_project(session, request.ref)
            row, image = _annotation_row(session, project, request.annotation_id)
            session.delete(row)
            image.annotation_count = max(0, image.annotation_count - 1)

        await self.hub.db.write(delete)
        return pb.DeleteAnnotationResponse()

    async def ListAnnotations(
        self, request: pb.ListAnnotationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAnnotationsResponse:
        def read(session: Session) -> pb.ListAnnotationsResponse:
            project = get_project(session, request.ref)
            return pb.ListAnnotationsResponse(
                annotations=list_annotations(session, get_image(session, project, request.image_id))
            )

        return await self.hub.db.read(read)

    async def PutDetections(
        self, request: pb.PutDetectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PutDetectionsResponse:
        def put(session: Session) -> int:
            project = get_project(session, request.ref)
            return put_detections(session, get_image(session, project, request.image_id), request.detections)

        return pb.PutDetectionsResponse(stored=await self.hub.db.write(put))

    async def GetDetections(
        self, request: pb.GetDetectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDetectionsResponse:
        def read(session: Session) -> pb.GetDetectionsResponse:
            project = get_project(session, request.ref)
            image = get_image(session, project, request.image_id)
            return pb.GetDetectionsResponse(detections=get_detections(session, image, request.model_version))

        return await self.hub.db.read(read)
