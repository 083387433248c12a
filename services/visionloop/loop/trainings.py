"""The training queue with leases."""

from __future__ import annotations

from visionloop.loop.hub import Hub
from visionloop.loop.v1 import training_service_pb2_grpc


class TrainingServicer(training_service_pb2_grpc.TrainingServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
