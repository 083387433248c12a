"""Camera-rate streams and model swaps under load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.detector.conftest import DetectorClient
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.lib.archives import safe_extract
from visionloop.server.detector.admission import AdmissionPolicy
from visionloop.server.detector.models import open_onnx_model
from visionloop.testing.frames import frame, jpeg

FPS = 30


async def camera(
    detector: DetectorClient, name: str, frames: list[bytes], seconds: float
) -> list[pb.DetectStreamResponse]:
    """Send frames at FPS for ``seconds`` on one stream; return every answer."""
    count = int(seconds * FPS)

    async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / FPS - time.perf_counter()))
            options = pb.DetectOptions(camera_id=name) if i == 0 else None
            yield pb.DetectStreamRequest(
                frame_id=i, image=image_pb2.Image(encoded=frames[i % len(frames)]), options=options
            )

    return [answer async for answer in detector.stub.DetectStream(requests())]


@pytest.mark.slow
async def test_four_cameras_at_30_fps_for_10_seconds(detector: DetectorClient) -> None:
    frames = [jpeg(frame(squares=((20 * i, 200, 80, "red"),))) for i in range(10)]
    answers = await asyncio.gather(*(camera(detector, f"cam{c}", frames, 10.0) for c in range(4)))
    for stream in answers:
        assert [a.frame_id for a in stream] == list(range(10 * FPS))  # every frame answered, in order
        assert all(a.error_code == 0 and a.result.detections.boxes for a in stream)


async def test_swap_under_load_drops_nothing(detector: DetectorClient, stub_zip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "v2"
    safe_extract(stub_zip, folder)
    frames = [jpeg(frame(squares=((30 * i, 100, 64, "green"),))) for i in range(5)]
    streams = [asyncio.create_task(camera(detector, f"cam{c}", frames, 3.0)) for c in range(4)]
    await asyncio.sleep(1.0)
    # The replacement is opened as the detector opens its models: with its (opened-up) admission.
    settings = detector.settings
    admission = AdmissionPolicy(settings.queue_budget_ms / 1000, settings.max_queued_batches, settings.max_batch_size)
    replacement = await open_onnx_model("stub", folder, admission=admission)
    replacement.info.version = "2.0"
    await detector.servicer.models.put(replacement)
    answers = await asyncio.gather(*streams)
    for stream in answers:
        assert [a.frame_id for a in stream] == list(range(3 * FPS))
        assert all(a.error_code == 0 for a in stream), [a.error_message for a in stream if a.error_code]
        versions = [a.result.model_version for a in stream]
        assert set(versions) == {"local", "2.0"}  # every answer names the model that produced it
        assert versions == sorted(versions, key=lambda v: v == "2.0")  # old answers first, then the new model
