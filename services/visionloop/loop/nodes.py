"""The node registry: register, heartbeat, offline detection."""

from __future__ import annotations

from visionloop.loop.hub import Hub
from visionloop.loop.v1 import node_service_pb2_grpc


class NodeServicer(node_service_pb2_grpc.NodeServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
