"""The node registry: register, heartbeat, offline detection.

Offline is computed on read from the last heartbeat, so no sweeper has to run and every hub
replica agrees on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc
from google.protobuf import duration_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from visionloop.common.v1 import node_pb2
from visionloop.loop.v1 import node_service_pb2 as pb
from visionloop.loop.v1 import node_service_pb2_grpc
from visionloop.runtime import access
from visionloop.runtime.errors import Aborted, InvalidArgument, NotFound, PermissionDenied
from visionloop.server.hub.db import schema
from visionloop.server.hub.state import Hub

_MAX_NODE_ID = 128
_MAX_NAME = 256


def _check_status(status: node_pb2.NodeStatus, registering: bool) -> None:
    if not status.node_id:
        raise InvalidArgument("status.node_id is required (a stable id the node keeps in its data folder)")
    if len(status.node_id) > _MAX_NODE_ID:
        raise InvalidArgument(f"status.node_id is longer than {_MAX_NODE_ID} characters")
    if len(status.name) > _MAX_NAME:
        raise InvalidArgument(f"status.name is longer than {_MAX_NAME} characters")
    if registering and not status.name:
        raise InvalidArgument("status.name is required, e.g. robot-7-detector")
    if status.type not in node_pb2.NodeType.values():
        raise InvalidArgument(f"status.type {status.type} is not a known node type")
    if registering and status.type == node_pb2.NODE_TYPE_UNSPECIFIED:
        raise InvalidArgument("status.type is required (detector, trainer, converter or annotator)")
    if status.state == node_pb2.NODE_STATE_OFFLINE:
        raise InvalidArgument("status.state NODE_STATE_OFFLINE is set by the hub only; report the node's own state")


def _visible(status: node_pb2.NodeStatus) -> bool:
    """Whether the caller's token may see or speak for a node: one limited to projects, only for
    nodes working for them (not for multi-project nodes)."""
    return access.may_use(status.organization, status.project)


def _check_visible(status: node_pb2.NodeStatus) -> None:
    if not _visible(status):
        works_for = f"{status.organization}/{status.project}" if status.organization else "every project"
        raise PermissionDenied(f"node {status.node_id!r} works for {works_for}, which this token may not use")


class NodeServicer(node_service_pb2_grpc.NodeServiceServicer):
    # Class attribute so tests can shorten it.
    heartbeat_interval = timedelta(seconds=10)

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def offline_after(self) -> timedelta:
        """A node is offline after missing about three heartbeats: one late beat is no outage."""
        return 3 * self.heartbeat_interval

    def _interval(self) -> duration_pb2.Duration:
        interval = duration_pb2.Duration()
        interval.FromTimedelta(self.heartbeat_interval)
        return interval

    def _shown(self, row: schema.Node, now: datetime) -> node_pb2.NodeStatus:
        """The stored status as operators see it: hub heartbeat time, offline when overdue."""
        status = node_pb2.NodeStatus.FromString(row.status)
        status.last_heartbeat_time.FromDatetime(row.last_heartbeat_time)
        if now - row.last_heartbeat_time > self.offline_after:
            status.state = node_pb2.NODE_STATE_OFFLINE
        return status

    @staticmethod
    def _store(row: schema.Node, status: node_pb2.NodeStatus, now: datetime) -> None:
        status.last_heartbeat_time.FromDatetime(now)
        row.name = status.name
        row.type = status.type
        row.status = status.SerializeToString()
        row.last_heartbeat_time = now

    async def RegisterNode(
        self, request: pb.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterNodeResponse:
        _check_status(request.status, registering=True)
        _check_visible(request.status)

        def register(session: Session) -> node_pb2.NodeStatus:
            status = node_pb2.NodeStatus()
            status.CopyFrom(request.status)
            now = self.hub.now()
            row = session.get(schema.Node, status.node_id)
            if row is not None:
                _check_visible(node_pb2.NodeStatus.FromString(row.status))  # another project's node keeps its id
            else:
                row = schema.Node(node_id=status.node_id, register_time=now)
                session.add(row)
            self._store(row, status, now)
            try:
                session.flush()
            except IntegrityError:  # PostgreSQL only: the same id registered by two processes at once
                raise Aborted(f"node {status.node_id!r} was registered concurrently; retry") from None
            return self._shown(row, now)

        status = await self.hub.db.write(register)
        return pb.RegisterNodeResponse(status=status, heartbeat_interval=self._interval())

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        _check_status(request.status, registering=False)
        _check_visible(request.status)

        def beat(session: Session) -> None:
            row = session.get(schema.Node, request.status.node_id)
            if row is None:
                raise NotFound(
                    f"node {request.status.node_id!r} is not registered; call RegisterNode first "
                    "(and again whenever the hub answers NOT_FOUND, e.g. after a hub reset)"
                )
            _check_visible(node_pb2.NodeStatus.FromString(row.status))
            status = node_pb2.NodeStatus()
            status.CopyFrom(request.status)
            # A heartbeat may leave out what registration fixed.
            status.name = status.name or row.name
            status.type = status.type or row.type  # type: ignore[assignment]
            self._store(row, status, self.hub.now())

        await self.hub.db.write(beat)
        return pb.HeartbeatResponse(heartbeat_interval=self._interval())

    async def GetNode(self, request: pb.GetNodeRequest, context: grpc.aio.ServicerContext) -> pb.GetNodeResponse:
        if not request.node_id:
            raise InvalidArgument("node_id is required")

        def get(session: Session) -> node_pb2.NodeStatus:
            row = session.get(schema.Node, request.node_id)
            if row is None:
                raise NotFound(f"node {request.node_id!r} is not registered; list nodes with ListNodes")
            status = self._shown(row, self.hub.now())
            _check_visible(status)
            return status

        return pb.GetNodeResponse(status=await self.hub.db.read(get))

    async def ListNodes(self, request: pb.ListNodesRequest, context: grpc.aio.ServicerContext) -> pb.ListNodesResponse:
        def list_(session: Session) -> list[node_pb2.NodeStatus]:
            query = select(schema.Node).order_by(schema.Node.name, schema.Node.node_id)
            if request.type != node_pb2.NODE_TYPE_UNSPECIFIED:
                query = query.where(schema.Node.type == request.type)
            now = self.hub.now()
            shown = [status for row in session.scalars(query) if _visible(status := self._shown(row, now))]
            if request.include_offline:
                return shown
            return [status for status in shown if status.state != node_pb2.NODE_STATE_OFFLINE]

        return pb.ListNodesResponse(nodes=await self.hub.db.read(list_))
