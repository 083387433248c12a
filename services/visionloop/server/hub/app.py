"""The loop hub: projects, images, annotations, models, deployments, trainings, nodes and events.

Metadata lives in SQL (SQLite embedded, PostgreSQL in a cluster), blobs in an object store
(a local folder embedded, S3 in a cluster). The schema is migrated at start-up.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session

from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    node_service_pb2,
    node_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    training_service_pb2,
    training_service_pb2_grpc,
)
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.server.hub.annotations import AnnotationServicer
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.deployments import DeploymentServicer
from visionloop.server.hub.events import EventServicer
from visionloop.server.hub.images import ImageServicer
from visionloop.server.hub.metrics import MetricsRefresher
from visionloop.server.hub.models import ModelServicer
from visionloop.server.hub.nodes import NodeServicer
from visionloop.server.hub.projects import ProjectServicer
from visionloop.server.hub.state import Hub, utcnow
from visionloop.server.hub.sweeper import BlobSweeper
from visionloop.server.hub.trainings import TrainingServicer

SETTINGS = LoopSettings


def ensure_project(hub: Hub, name: str) -> None:
    """Create ``organization/project`` unless it exists (the embedded default starts ready to use)."""
    organization, _, project = name.partition("/")

    def create(session: Session) -> None:
        exists = session.scalar(
            select(schema.Project.pk).where(schema.Project.organization == organization, schema.Project.name == project)
        )
        if exists is None:
            session.add(
                schema.Project(
                    organization=organization, name=project, display_name=project, description="", create_time=utcnow()
                )
            )

    hub.db.write_sync(create)


def create(settings: LoopSettings) -> ServiceSpec:
    hub = Hub.from_settings(settings)
    mounts = [
        Mount.generated(ProjectServicer(hub), project_service_pb2_grpc, project_service_pb2, "ProjectService"),
        Mount.generated(ImageServicer(hub), image_service_pb2_grpc, image_service_pb2, "ImageService"),
        Mount.generated(
            AnnotationServicer(hub), annotation_service_pb2_grpc, annotation_service_pb2, "AnnotationService"
        ),
        Mount.generated(ModelServicer(hub), model_service_pb2_grpc, model_service_pb2, "ModelService"),
        Mount.generated(
            DeploymentServicer(hub), deployment_service_pb2_grpc, deployment_service_pb2, "DeploymentService"
        ),
        Mount.generated(TrainingServicer(hub), training_service_pb2_grpc, training_service_pb2, "TrainingService"),
        Mount.generated(NodeServicer(hub), node_service_pb2_grpc, node_service_pb2, "NodeService"),
        Mount.generated(EventServicer(hub), event_service_pb2_grpc, event_service_pb2, "EventService"),
    ]

    async def start(server: GrpcServer) -> None:
        if not settings.public_address:  # model.json names the hub by the address it really listens on
            hub.host = server.address
        await asyncio.to_thread(hub.db.migrate)
        if settings.bootstrap_project:
            await asyncio.to_thread(ensure_project, hub, settings.bootstrap_project)

    async def close(server: GrpcServer) -> None:
        hub.close()

    refresher = MetricsRefresher(hub)  # hub gauges (images, queue, storage), refreshed after the migration
    sweeper = BlobSweeper(hub)
    return ServiceSpec(
        name="loop",
        mounts=mounts,
        on_start=[start, refresher.start, sweeper.start],
        on_stop=[sweeper.stop, refresher.stop, close],
        context=hub,
    )
