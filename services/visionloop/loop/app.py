"""The loop hub: mounts the hub's gRPC services.

The contracts are complete; the storage-backed implementations arrive with issue [2], until
then every hub RPC answers UNIMPLEMENTED through the standard runtime.
"""

from __future__ import annotations

from visionloop.loop.config import LoopSettings
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
from visionloop.runtime.server import Mount, ServiceSpec

SETTINGS = LoopSettings

_SERVICES = (
    ("ProjectService", project_service_pb2, project_service_pb2_grpc),
    ("ImageService", image_service_pb2, image_service_pb2_grpc),
    ("AnnotationService", annotation_service_pb2, annotation_service_pb2_grpc),
    ("ModelService", model_service_pb2, model_service_pb2_grpc),
    ("DeploymentService", deployment_service_pb2, deployment_service_pb2_grpc),
    ("TrainingService", training_service_pb2, training_service_pb2_grpc),
    ("NodeService", node_service_pb2, node_service_pb2_grpc),
    ("EventService", event_service_pb2, event_service_pb2_grpc),
)


def create(settings: LoopSettings) -> ServiceSpec:
    mounts = [
        Mount.generated(getattr(grpc_module, f"{name}Servicer")(), grpc_module, pb2, name)
        for name, pb2, grpc_module in _SERVICES
    ]
    return ServiceSpec(name="loop", mounts=mounts)
