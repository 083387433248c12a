"""WatchEvents resumes from a cursor: a reconnecting node misses nothing and sees nothing twice."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.hub.conftest import HubClient
from tests.hub.pictures import picture
from visionloop.loop.v1 import event_service_pb2 as pb
from visionloop.loop.v1 import image_service_pb2


async def _upload(hub: HubClient, project, seed: int) -> str:
    request = image_service_pb2.UploadImageRequest(ref=project, image=image_service_pb2.ImageUpload(data=picture(seed)))
    return (await hub.images.UploadImage(request)).metadata.id


async def test_reconnect_with_cursor_gets_exactly_the_missed_events(hub: HubClient, project) -> None:
    watch = hub.events.WatchEvents(pb.WatchEventsRequest(types=[pb.EVENT_TYPE_IMAGE_ADDED]))
    first = await _upload(hub, project, 1)
    event = (await watch.read()).event
    assert (event.type, event.subject) == (pb.EVENT_TYPE_IMAGE_ADDED, first)
    assert (event.ref.organization, event.ref.project) == ("acme", "weeds")
    cursor = event.cursor
    watch.cancel()

    missed = [await _upload(hub, project, 10 + i) for i in range(5)]
    await _upload(hub, project, 10)  # a duplicate adds no event

    resumed = hub.events.WatchEvents(pb.WatchEventsRequest(cursor=cursor, types=[pb.EVENT_TYPE_IMAGE_ADDED]))
    got = [(await resumed.read()).event.subject for _ in range(5)]
    assert got == missed
    # Nothing more is pending: the next event is a new one.
    later = await _upload(hub, project, 99)
    assert (await asyncio.wait_for(resumed.read(), 10)).event.subject == later
    resumed.cancel()


async def test_new_watch_starts_at_new_events_and_filters(hub: HubClient, project) -> None:
    await _upload(hub, project, 1)
    watch = hub.events.WatchEvents(pb.WatchEventsRequest(ref=project))
    other = hub.events.WatchEvents(pb.WatchEventsRequest(types=[pb.EVENT_TYPE_MODEL_PUBLISHED]))
    second = await _upload(hub, project, 2)
    assert (await asyncio.wait_for(watch.read(), 10)).event.subject == second
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(other.read(), 1.5)
    watch.cancel()
    other.cancel()


async def test_bad_cursor(hub: HubClient) -> None:
    watch = hub.events.WatchEvents(pb.WatchEventsRequest(cursor="abc"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch.read()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
