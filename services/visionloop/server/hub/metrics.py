"""The hub's Prometheus metrics: what the hub dashboard reads (images by state, training queue, storage).

The numbers come from a few aggregate queries that a background task refreshes every
``REFRESH_SECONDS`` (first right after start-up), so request handlers pay nothing for them.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from visionloop.common.v1 import image_pb2, training_pb2
from visionloop.runtime.logging import get_logger
from visionloop.server.hub.db import schema
from visionloop.server.hub.state import Hub

log = get_logger(__name__)

REFRESH_SECONDS = 30.0

IMAGES = Gauge("visionloop_hub_images", "Live images of all projects, by state (INBOX, ANNOTATE, ...).", ["state"])
IMAGE_BYTES = Gauge("visionloop_hub_image_bytes", "Bytes of all stored images.")
MODEL_BYTES = Gauge("visionloop_hub_model_bytes", "Bytes of all stored model artifacts.")
TRAININGS = Gauge("visionloop_hub_trainings", "Trainings of all projects, by phase (QUEUED, RUNNING, ...).", ["phase"])
LAST_REFRESH = Gauge(
    "visionloop_hub_metrics_refresh_timestamp_seconds", "Unix time the hub gauges were last refreshed."
)

_IMAGE_STATES = {
    v.number: v.name.removeprefix("IMAGE_STATE_") for v in image_pb2.ImageState.DESCRIPTOR.values if v.number
}
_PHASES = {
    v.number: v.name.removeprefix("TRAINING_PHASE_") for v in training_pb2.TrainingPhase.DESCRIPTOR.values if v.number
}


def _collect(session: Session) -> tuple[dict[int, int], int, int, dict[int, int]]:
    states = select(schema.Image.state, func.count()).group_by(schema.Image.state)
    images = {int(state): int(count) for state, count in session.execute(states).all()}
    image_bytes = session.scalar(select(func.coalesce(func.sum(schema.Image.size_bytes), 0))) or 0
    model_bytes = session.scalar(select(func.coalesce(func.sum(schema.ModelArtifact.size_bytes), 0))) or 0
    phases = select(schema.Training.phase, func.count()).group_by(schema.Training.phase)
    trainings = {int(phase): int(count) for phase, count in session.execute(phases).all()}
    return images, int(image_bytes), int(model_bytes), trainings


def refresh(hub: Hub) -> None:
    """Recompute every hub gauge from the database (blocking: run it in a thread)."""
    images, image_bytes, model_bytes, trainings = hub.db.read_sync(_collect)
    for number, name in _IMAGE_STATES.items():
        IMAGES.labels(name).set(images.get(number, 0))
    for number, name in _PHASES.items():
        TRAININGS.labels(name).set(trainings.get(number, 0))
    IMAGE_BYTES.set(image_bytes)
    MODEL_BYTES.set(model_bytes)
    LAST_REFRESH.set_to_current_time()


async def refresh_forever(hub: Hub, interval: float = REFRESH_SECONDS) -> None:
    """Refresh now, then every ``interval`` seconds until cancelled; a failed refresh is logged and retried."""
    while True:
        try:
            await asyncio.to_thread(refresh, hub)
        except Exception:
            log.warning("hub metrics refresh failed", exc_info=True)
        await asyncio.sleep(interval)


class MetricsRefresher:
    """Start/stop hooks for the hub's ServiceSpec."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._task: asyncio.Task[None] | None = None

    async def start(self, _server: object) -> None:
        self._task = asyncio.create_task(refresh_forever(self._hub), name="hub-metrics")

    async def stop(self, _server: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
