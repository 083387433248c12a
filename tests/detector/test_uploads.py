"""Frames reach the hub: the active-learning filter after Detect, and Upload, through the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.detector.conftest import REF, Hub, settings_for, start_detector, upload, version_served
from visionloop.client.images import to_image
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import image_service_pb2, image_service_pb2_grpc
from visionloop.testing.frames import jpeg
from visionloop.testing.synthetic.models import model_zip


def uncertain_frame(shade: int = 128):
    """A square whose colour the synthetic model is unsure about (confidence about 0.5)."""
    import numpy as np

    pixels = np.full((480, 640, 3), 20, dtype=np.uint8)
    pixels[120:216, 200:296] = (0, 0, shade)
    return pixels


async def hub_images(hub: Hub, count: int) -> list[image_pb2.ImageMetadata]:
    """The hub's images once there are at least ``count`` (waits up to 15 s)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        for _ in range(150):
            images = list((await stub.ListImages(image_service_pb2.ListImagesRequest(ref=REF))).images)
            if len(images) >= count:
                return images
            await asyncio.sleep(0.1)
    raise AssertionError(f"the hub has {len(images)} images, expected {count}")


@pytest.fixture
async def detector(hub: Hub, tmp_path: Path):
    await upload(hub.settings.port, model_zip(tmp_path / "model.zip").read_bytes())
    server, port = await start_detector(settings_for(hub, tmp_path / "detector"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
        await version_served(stub, "1.0")
        yield stub
    await server.stop(0)


async def test_uncertain_frames_flow_to_the_hub_with_their_reasons(detector, hub: Hub) -> None:
    confident = image_pb2.Image(encoded=jpeg(uncertain_frame(255)))
    answer = await detector.Detect(pb.DetectRequest(image=confident, options=pb.DetectOptions(camera_id="front")))
    assert answer.detections.boxes
    assert not answer.uploaded

    uncertain = image_pb2.Image(encoded=jpeg(uncertain_frame()))
    disabled = pb.DetectOptions(camera_id="front", autoupload=pb.AUTO_UPLOAD_DISABLED)
    assert not (await detector.Detect(pb.DetectRequest(image=uncertain, options=disabled))).uploaded

    options = pb.DetectOptions(camera_id="front", tags=["field-3"])
    answer = await detector.Detect(pb.DetectRequest(image=uncertain, options=options))
    assert answer.uploaded
    assert "uncertain" in answer.upload_reason.split(",")
    # The same observation again is remembered and not uploaded twice.
    again = await detector.Detect(pb.DetectRequest(image=uncertain, options=options))
    assert not again.uploaded

    (stored,) = await hub_images(hub, 1)
    assert {"field-3", "uncertain"} <= set(stored.tags)
    assert stored.camera_id == "front"
    assert stored.source.startswith("detector:")
    assert stored.detection_count == len(answer.detections.boxes)


async def test_upload_rpc_queues_and_delivers(detector, hub: Hub) -> None:
    pixels = uncertain_frame(200)
    await detector.Upload(pb.UploadRequest(image=to_image(pixels, "bgr"), camera_id="rear"))
    response = await detector.Upload(
        pb.UploadRequest(
            image=image_pb2.Image(encoded=jpeg(uncertain_frame(90))),
            tags=["operator"],
            priority=pb.UPLOAD_PRIORITY_HIGH,
        )
    )
    assert response.item_id
    images = await hub_images(hub, 2)
    assert sorted(tuple(sorted(i.tags)) for i in images) == [("operator",), ("picked_by_system",)]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detector.Upload(pb.UploadRequest(image=image_pb2.Image(encoded=b"nope")))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    about = await detector.GetAbout(pb.GetAboutRequest())
    assert about.outbox.mode == pb.OUTBOX_MODE_CONTINUOUS_UPLOAD
    stopped = await detector.SetOutboxMode(pb.SetOutboxModeRequest(mode=pb.OUTBOX_MODE_STOPPED))
    assert stopped.outbox.mode == pb.OUTBOX_MODE_STOPPED
    await detector.Upload(pb.UploadRequest(image=image_pb2.Image(encoded=jpeg(uncertain_frame(60)))))
    assert (await detector.GetAbout(pb.GetAboutRequest())).outbox.depth == 1


async def test_the_filter_keeps_the_uploads_clock_which_a_simulation_moves_on(
    tmp_path: Path, stub_zip: Path, hub: Hub
) -> None:
    # The demo's robots come back hours later without anybody waiting: its clock jumps, and the
    # filter's memory of recent observations (60 s by default) has forgotten the frame.
    from visionloop.demo.stack import SimulatedClock

    settings = settings_for(hub, tmp_path / "detector").model_copy(update={"model_paths": f"stub={stub_zip}"})
    server, port = await start_detector(settings)
    try:
        clock = SimulatedClock()
        server.spec.context.uploads.clock = clock
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            request = pb.DetectRequest(
                image=image_pb2.Image(encoded=jpeg(uncertain_frame())), options=pb.DetectOptions(camera_id="front")
            )
            assert (await stub.Detect(request)).uploaded
            assert not (await stub.Detect(request)).uploaded  # remembered
            clock.advance(3600)
            assert (await stub.Detect(request)).uploaded  # an hour later, at once
    finally:
        await server.stop(0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
