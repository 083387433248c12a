"""Projects and their categories. Category ids are stable: renames never break references."""

from __future__ import annotations

import re
import uuid

import grpc
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionloop.common.v1 import category_pb2
from visionloop.loop.v1 import project_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2_grpc
from visionloop.runtime import access
from visionloop.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from visionloop.server.hub.db import schema
from visionloop.server.hub.protos import to_timestamp
from visionloop.server.hub.state import Hub, check_ref, get_project, utcnow

_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


def project_message(row: schema.Project) -> pb.Project:
    return pb.Project(
        ref=pb.ProjectRef(organization=row.organization, project=row.name),
        display_name=row.display_name,
        description=row.description,
        create_time=to_timestamp(row.create_time),
    )


def category_message(row: schema.Category) -> category_pb2.Category:
    return category_pb2.Category(
        id=row.id,
        name=row.name,
        type=row.type,  # type: ignore[arg-type]
        color=row.color,
        hotkey=row.hotkey,
        point_radius=row.point_radius,
    )


def _check_category_fields(category: category_pb2.Category) -> None:
    if not category.name.strip():
        raise InvalidArgument("category.name is required")
    if len(category.name) > 128:
        raise InvalidArgument("category.name is longer than 128 characters")
    if category.color and not _COLOR.match(category.color):
        raise InvalidArgument(f"category.color must look like #rrggbb, got {category.color!r}")
    if len(category.hotkey) > 1:
        raise InvalidArgument(f"category.hotkey must be a single key, got {category.hotkey!r}")
    if category.point_radius < 0:
        raise InvalidArgument("category.point_radius must not be negative")


def get_category(session: Session, project: schema.Project, category_id: str) -> schema.Category:
    row = session.get(schema.Category, category_id)
    if row is None or row.project_pk != project.pk:
        raise NotFound(f"category {category_id!r} does not exist in {project.organization}/{project.name}")
    return row


class ProjectServicer(project_service_pb2_grpc.ProjectServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def CreateProject(
        self, request: pb.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateProjectResponse:
        ref = request.project.ref
        for label, value in (("organization", ref.organization), ("project", ref.project)):
            if not _IDENTIFIER.match(value):
                raise InvalidArgument(f"project.ref.{label} {value!r} must be 1-64 characters of a-z, 0-9, '_' and '-'")
        check_ref(ref)

        def create(session: Session) -> schema.Project:
            row = schema.Project(
                organization=ref.organization,
                name=ref.project,
                display_name=request.project.display_name or ref.project,
                description=request.project.description,
                create_time=utcnow(),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyExists(f"project {ref.organization}/{ref.project} already exists") from None
            return row

        return pb.CreateProjectResponse(project=project_message(await self.hub.db.write(create)))

    async def GetProject(
        self, request: pb.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProjectResponse:
        row = await self.hub.db.read(lambda s: get_project(s, request.ref))
        return pb.GetProjectResponse(project=project_message(row))

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProjectsResponse:
        def list_(session: Session) -> list[schema.Project]:
            query = select(schema.Project).order_by(schema.Project.organization, schema.Project.name)
            if request.organization:
                query = query.where(schema.Project.organization == request.organization)
            return [row for row in session.scalars(query) if access.may_use(row.organization, row.name)]

        return pb.ListProjectsResponse(projects=[project_message(r) for r in await self.hub.db.read(list_)])

    async def CreateCategory(
        self, request: pb.CreateCategoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCategoryResponse:
        check_ref(request.ref)
        category = request.category
        _check_category_fields(category)
        if category.type == category_pb2.CATEGORY_TYPE_UNSPECIFIED:
            raise InvalidArgument("category.type is required (box, point, segmentation or classification)")

        def create(session: Session) -> schema.Category:
            project = get_project(session, request.ref)
            count = session.scalar(
                select(func.count()).select_from(schema.Category).where(schema.Category.project_pk == project.pk)
            )
            row = schema.Category(
                id=str(uuid.uuid4()),
                project_pk=project.pk,
                name=category.name.strip(),
                type=category.type,
                color=category.color or DEFAULT_COLORS[(count or 0) % len(DEFAULT_COLORS)],
                hotkey=category.hotkey,
                point_radius=category.point_radius,
                create_time=utcnow(),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyExists(
                    f"category {row.name!r} already exists in {request.ref.organization}/{request.ref.project}"
                ) from None
            return row

        return pb.CreateCategoryResponse(category=category_message(await self.hub.db.write(create)))

    async def UpdateCategory(
        self, request: pb.UpdateCategoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateCategoryResponse:
        check_ref(request.ref)
        category = request.category
        if not category.id:
            raise InvalidArgument("category.id is required")
        _check_category_fields(category)

        def update(session: Session) -> schema.Category:
            project = get_project(session, request.ref)
            row = get_category(session, project, category.id)
            if category.type not in (category_pb2.CATEGORY_TYPE_UNSPECIFIED, row.type):
                raise FailedPrecondition(
                    "a category's type cannot change (annotations depend on it); create a new category instead"
                )
            row.name = category.name.strip()
            row.color = category.color or row.color
            row.hotkey = category.hotkey
            row.point_radius = category.point_radius
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyExists(f"another category is already named {row.name!r}") from None
            return row

        return pb.UpdateCategoryResponse(category=category_message(await self.hub.db.write(update)))

    async def ListCategories(
        self, request: pb.ListCategoriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCategoriesResponse:
        def list_(session: Session) -> list[schema.Category]:
            project = get_project(session, request.ref)
            query = (
                select(schema.Category)
                .where(schema.Category.project_pk == project.pk)
                .order_by(schema.Category.create_time, schema.Category.name)
            )
            return list(session.scalars(query))

        return pb.ListCategoriesResponse(categories=[category_message(r) for r in await self.hub.db.read(list_)])

    async def DeleteCategory(
        self, request: pb.DeleteCategoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCategoryResponse:
        def delete(session: Session) -> int:
            project = get_project(session, request.ref)
            row = get_category(session, project, request.category_id)
            used = (
                session.scalar(
                    select(func.count()).select_from(schema.Annotation).where(schema.Annotation.category_id == row.id)
                )
                or 0
            )
            if used and not request.force:
                raise FailedPrecondition(
                    f"category {row.name!r} is used by {used} annotations; pass force to delete them too"
                )
            session.delete(row)
            return used

        return pb.DeleteCategoryResponse(deleted_annotations=await self.hub.db.write(delete))
