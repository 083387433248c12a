"""WatchEvents: the event log streamed from a cursor.

The cursor is the event's sequence number. A watcher that reconnects with the last cursor it
saw receives exactly the events after it, in order; nothing is missed or repeated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import grpc
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from visionloop.loop.v1 import event_service_pb2 as pb
from visionloop.loop.v1 import event_service_pb2_grpc, project_service_pb2
from visionloop.runtime import access
from visionloop.runtime.errors import InvalidArgument
from visionloop.server.hub.db import schema
from visionloop.server.hub.protos import to_timestamp
from visionloop.server.hub.state import Hub, check_ref

BATCH = 500


def event_message(row: schema.Event) -> pb.Event:
    return pb.Event(
        cursor=str(row.seq),
        type=row.type,  # type: ignore[arg-type]
        ref=project_service_pb2.ProjectRef(organization=row.organization, project=row.project),
        subject=row.subject,
        detail=row.detail,
        time=to_timestamp(row.time),
    )


class EventServicer(event_service_pb2_grpc.EventServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        if request.cursor:
            if not request.cursor.isdigit():
                raise InvalidArgument(f"cursor {request.cursor!r} is not a cursor this hub issued")
            cursor = int(request.cursor)
        else:
            cursor = await self.hub.db.read(lambda s: s.scalar(select(func.max(schema.Event.seq))) or 0)
        if request.HasField("ref") and (request.ref.organization or request.ref.project):
            check_ref(request.ref)
        else:
            access.check_every_project("ref")
        types = [t for t in request.types if t != pb.EVENT_TYPE_UNSPECIFIED]

        def batch(session: Session, after: int) -> list[schema.Event]:
            query = select(schema.Event).where(schema.Event.seq > after)
            if types:
                query = query.where(schema.Event.type.in_(types))
            if request.ref.organization:
                query = query.where(
                    schema.Event.organization == request.ref.organization, schema.Event.project == request.ref.project
                )
            return list(session.scalars(query.order_by(schema.Event.seq).limit(BATCH)))

        while True:
            seen = self.hub.events.generation
            rows = await self.hub.db.read(partial(batch, after=cursor))
            for row in rows:
                yield pb.WatchEventsResponse(event=event_message(row))
                cursor = row.seq
            if len(rows) < BATCH:
                await self.hub.events.wait(seen)
