"""The hub's gauges (images by state, training queue, storage) follow the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from visionloop.common.v1 import image_pb2
from visionloop.server.hub.app import ensure_project
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.metrics import MetricsRefresher, refresh
from visionloop.server.hub.state import Hub, utcnow


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def make_hub(tmp_path: Path) -> Hub:
    hub = Hub.from_settings(LoopSettings(VISIONLOOP_DATA_DIR=tmp_path))
    hub.db.migrate()
    ensure_project(hub, "acme/weeds")
    return hub


def add_images(hub: Hub, states: list[int], size: int) -> None:
    def write(session: Session) -> None:
        project = session.scalar(select(schema.Project.pk).where(schema.Project.name == "weeds"))
        for number, state in enumerate(states):
            session.add(
                schema.Image(
                    project_pk=project,
                    sha256=f"{number:064x}",
                    upload_time=utcnow(),
                    state=state,
                    width=4,
                    height=4,
                    content_type="image/png",
                    size_bytes=size,
                )
            )

    hub.db.write_sync(write)


def test_refresh_counts_images_by_state_and_their_bytes(tmp_path: Path) -> None:
    hub = make_hub(tmp_path)
    try:
        refresh(hub)
        assert sample("visionloop_hub_images", state="INBOX") == 0
        assert sample("visionloop_hub_trainings", phase="QUEUED") == 0
        add_images(hub, [image_pb2.IMAGE_STATE_INBOX] * 3 + [image_pb2.IMAGE_STATE_COMPLETE], size=1000)
        refresh(hub)
        assert sample("visionloop_hub_images", state="INBOX") == 3
        assert sample("visionloop_hub_images", state="COMPLETE") == 1
        assert sample("visionloop_hub_images", state="TRASH") == 0
        assert sample("visionloop_hub_image_bytes") == 4000
        assert sample("visionloop_hub_model_bytes") == 0
        assert (sample("visionloop_hub_metrics_refresh_timestamp_seconds") or 0) > 0
    finally:
        hub.db.close()


async def test_refresher_updates_right_after_start_and_stops(tmp_path: Path) -> None:
    hub = make_hub(tmp_path)
    try:
        add_images(hub, [image_pb2.IMAGE_STATE_ANNOTATE] * 2, size=10)
        refresher = MetricsRefresher(hub)
        await refresher.start(None)
        for _ in range(100):
            if sample("visionloop_hub_images", state="ANNOTATE") == 2:
                break
            await asyncio.sleep(0.05)
        assert sample("visionloop_hub_images", state="ANNOTATE") == 2
        await refresher.stop(None)
    finally:
        hub.db.close()
