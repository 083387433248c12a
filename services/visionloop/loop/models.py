"""The model registry: versions, per-format zips, lineage, metrics, conversion jobs."""

from __future__ import annotations

from visionloop.loop.hub import Hub
from visionloop.loop.v1 import model_service_pb2_grpc


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
