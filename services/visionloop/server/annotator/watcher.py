"""Queue priorities follow new detections: images that arrive with detections are ranked at once.

The watcher follows the hub's IMAGE_ADDED events of the annotator's project and sets each new
image's priority from its stored detections, with the criterion of the project's last RankQueue
(least confidence, max by default). An image a label budget picked already (SelectImages, tag
``selected``) keeps the priority of its pick: the queue stays in the selection's order. The event
cursor is kept in the data folder, so a restarted annotator resumes where it stopped; without one
it starts with new events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc

from visionloop.loop.v1 import event_service_pb2, event_service_pb2_grpc, project_service_pb2
from visionloop.runtime import errors
from visionloop.runtime.files import write_atomically
from visionloop.runtime.logging import get_logger
from visionloop.runtime.resources import report, shortage_of
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling
from visionloop.server.annotator import ranking
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.selection import SELECTED_TAG

log = get_logger(__name__)
Criteria = Callable[[], tuple[int, int]]
RETRY_SECONDS = (0.5, 1, 2, 5, 10)


class PriorityWatcher:
    def __init__(self, hub: AnnotatorHub, ref: project_service_pb2.ProjectRef, state: Path, criteria: Criteria) -> None:
        self.hub = hub
        self.ref = ref
        self.state = state
        self.criteria = criteria
        self.ranked = 0
        self._events = event_service_pb2_grpc.EventServiceStub(hub.channel)
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="annotator-priorities")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    def _cursor(self) -> str:
        try:
            return self.state.read_text().strip()
        except FileNotFoundError:
            return ""

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                raise_if_cancelling()
                if error.code() is grpc.StatusCode.OUT_OF_RANGE:  # history gone: start with new events
                    await asyncio.to_thread(self.state.unlink, missing_ok=True)
                log.warning("event stream ended; reconnecting", code=error.code().name, details=error.details())
            except errors.ServiceError as error:
                log.warning("could not rank a new image", error=error.message)
            except OSError as error:  # the cursor could not be saved (a full disk): resume from the last one saved
                if (shortage := shortage_of(error)) is not None:
                    report(shortage, error, file=str(self.state))
                else:
                    log.warning("could not save the event cursor", file=str(self.state), error=str(error))
            await asyncio.sleep(RETRY_SECONDS[min(self._failures, len(RETRY_SECONDS) - 1)])
            self._failures += 1

    async def _selected(self, image_id: str) -> bool:
        try:
            metadata = await self.hub.metadata(self.ref, image_id)
        except errors.NotFound:
            return True  # gone (purged): nothing to rank
        return SELECTED_TAG in metadata.tags

    async def _follow(self) -> None:
        request = event_service_pb2.WatchEventsRequest(
            cursor=await asyncio.to_thread(self._cursor), types=[event_service_pb2.EVENT_TYPE_IMAGE_ADDED], ref=self.ref
        )
        async for message in self._events.WatchEvents(request):
            event = message.event
            detections = await self.hub.detections(self.ref, event.subject)
            if ranking.objects(detections) and not await self._selected(event.subject):
                ranker, reducer = self.criteria()
                await self.hub.set_priority(
                    self.ref, event.subject, ranking.image_priority(detections, ranker, reducer)
                )
                self.ranked += 1
            await asyncio.to_thread(write_atomically, self.state, event.cursor.encode())
            self._failures = 0
