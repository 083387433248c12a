"""Deployment targets per project: follow latest, pin, roll back, watch."""

from __future__ import annotations

from visionloop.loop.hub import Hub
from visionloop.loop.v1 import deployment_service_pb2_grpc


class DeploymentServicer(deployment_service_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
