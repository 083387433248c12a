"""An EXIF-rotated JPEG is the same upright picture in the hub, the detector, the trainer and the
annotator: the same width and height, the same pixels, and a box drawn on it fits everywhere.

Real servers on loopback: a hub, a detector serving the synthetic colour model, an annotator; the
trainer's data download runs against the hub as in a training.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from tests import crafted
from tests.annotator.conftest import start_annotator
from tests.detector.conftest import REF, Hub, start_detector
from visionloop.annotator.v1 import annotator_service_pb2 as apb
from visionloop.annotator.v1 import annotator_service_pb2_grpc
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import annotation_pb2, geometry_pb2, image_pb2, model_pb2
from visionloop.detector.v1 import detector_service_pb2 as dpb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib import images, preprocess
from visionloop.loop.v1 import annotation_service_pb2, annotation_service_pb2_grpc, image_service_pb2_grpc
from visionloop.loop.v1 import image_service_pb2 as ipb
from visionloop.server.annotator import service as annotator_service
from visionloop.server.converter import samples
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.trainer import data
from visionloop.server.trainer.config import TrainerSettings
from visionloop.server.trainer.hub_client import TrainerHub
from visionloop.server.trainer.plugin import CategoryInfo, TrainImage
from visionloop.testing.frames import frame
from visionloop.testing.ports import free_port
from visionloop.testing.synthetic.models import model_zip

WIDTH, HEIGHT = 240, 320  # the upright picture: taller than wide
SQUARE = (40, 200, 48)  # x, y, size of the red square in the upright picture
UPRIGHT = frame(WIDTH, HEIGHT, squares=((*SQUARE, "red"),))  # BGR
# Stored a quarter turn counter-clockwise (320x240), tagged "turn 90° clockwise to view" (6).
STORED = crafted.exif_jpeg(np.rot90(cv2.cvtColor(UPRIGHT, cv2.COLOR_BGR2RGB)), 6)


def _box(x: float, y: float, width: float, height: float) -> geometry_pb2.Box:
    return geometry_pb2.Box(x=x, y=y, width=width, height=height)


@dataclass
class Stack:
    hub: Hub
    hub_channel: grpc.aio.Channel
    detector: detector_service_pb2_grpc.DetectorServiceStub
    annotator: annotator_service_pb2_grpc.AnnotatorServiceStub
    image_id: str
    weed_id: str


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    hub = Hub(tmp_path / "hub", free_port())
    await hub.start()
    target = f"127.0.0.1:{hub.settings.port}"

    def seed() -> tuple[str, ipb.UploadImageResponse]:
        with LoopClient(target, REF.organization, REF.project) as client:
            client.create_project()
            return client.create_category("weed", "box").id, client.upload_image(STORED)

    weed_id, uploaded = await asyncio.to_thread(seed)
    detector_settings = DetectorSettings(
        port=0, data_dir=tmp_path / "detector", model_paths=f"stub={model_zip(tmp_path / 'stub.zip')}"
    )
    detector, detector_port = await start_detector(detector_settings)
    annotator = await start_annotator(hub, tmp_path / "annotator")
    async with (
        grpc.aio.insecure_channel(target) as hub_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{detector_port}") as detector_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{annotator.port}") as annotator_channel,
    ):
        yield Stack(
            hub,
            hub_channel,
            detector_service_pb2_grpc.DetectorServiceStub(detector_channel),
            annotator_service_pb2_grpc.AnnotatorServiceStub(annotator_channel),
            uploaded.metadata.id,
            weed_id,
        )
    await annotator.stop(0)
    await detector.stop(0)
    await hub.stop()


def test_the_stored_jpeg_really_is_rotated() -> None:
    raw = cv2.imdecode(np.frombuffer(STORED, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert raw.shape == (WIDTH, HEIGHT, 3)  # as stored: 320 wide, 240 high
    assert images.inspect(STORED, images.DEFAULT_LIMITS) == images.ImageInfo(images.JPEG, WIDTH, HEIGHT, 6)


def test_every_consumer_decodes_the_same_upright_pixels(tmp_path: Path) -> None:
    expected = images.decode(STORED, images.DEFAULT_LIMITS)
    assert expected.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(expected.astype(int) - UPRIGHT.astype(int)).mean() < 2  # JPEG's loss, not a turn
    path = tmp_path / "image"
    path.write_bytes(STORED)
    trainer_image = TrainImage("id", path, WIDTH, HEIGHT, ())
    converted = samples.prepare_all([samples.ValidationImage("id", STORED)], model_pb2.ModelInput(width=64, height=64))
    consumers = {
        "detector": preprocess.decode(image_pb2.Image(encoded=STORED), 1 << 30, 1 << 30).pixels,
        "trainer": trainer_image.pixels(),
        "annotator": annotator_service.decode(STORED, images.DEFAULT_LIMITS),
        "opencv": cv2.imdecode(np.frombuffer(STORED, np.uint8), cv2.IMREAD_COLOR),  # applies EXIF too
    }
    for name, pixels in consumers.items():
        tolerance = 1 if name == "opencv" else 0  # another build of libjpeg-turbo may round differently
        assert pixels.shape == expected.shape, name
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= tolerance, name
    assert converted[0].size == (WIDTH, HEIGHT)


async def test_hub_detector_trainer_and_annotator_see_the_upright_picture(stack: Stack, tmp_path: Path) -> None:
    # The hub records the upright size, and a box drawn on the upright picture fits it.
    images_stub = image_service_pb2_grpc.ImageServiceStub(stack.hub_channel)
    metadata = (await images_stub.GetImage(ipb.GetImageRequest(ref=REF, image_id=stack.image_id))).metadata
    assert (metadata.width, metadata.height) == (WIDTH, HEIGHT)
    annotations = annotation_service_pb2_grpc.AnnotationServiceStub(stack.hub_channel)
    x, y, size = SQUARE

    def annotate(box: geometry_pb2.Box) -> annotation_pb2.Annotation:
        return annotation_pb2.Annotation(
            image_id=stack.image_id,
            category_id=stack.weed_id,
            shape=geometry_pb2.Shape(box=box),
            creator=annotation_pb2.Creator(person="anna"),
        )

    request = annotation_service_pb2.CreateAnnotationRequest
    await annotations.CreateAnnotation(request(ref=REF, annotation=annotate(_box(x, y, size, size))))
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # fits the stored 320x240, not the upright picture
        await annotations.CreateAnnotation(request(ref=REF, annotation=annotate(_box(250, 10, 40, 40))))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    await images_stub.UpdateImage(
        ipb.UpdateImageRequest(ref=REF, image_id=stack.image_id, state=image_pb2.IMAGE_STATE_COMPLETE)
    )

    # The detector answers in the upright picture's pixels: the red square where it is upright.
    found = await stack.detector.Detect(dpb.DetectRequest(image=image_pb2.Image(encoded=STORED)))
    assert (found.image_width, found.image_height) == (WIDTH, HEIGHT)
    reds = [b.box for b in found.detections.boxes if b.category_name == "red"]
    assert reds
    for box in reds:  # the model reports red cells of the square, all inside it
        assert x - 4 <= box.x, box
        assert box.x + box.width <= x + size + 4, box
        assert y - 4 <= box.y, box
        assert box.y + box.height <= y + size + 4, box

    # The trainer's data: the upright size, the annotation inside it, the pixels it decodes.
    settings = TrainerSettings(
        data_dir=tmp_path / "trainer",
        loop_host=f"127.0.0.1:{stack.hub.settings.port}",
        loop_organization=REF.organization,
        loop_project=REF.project,
    )
    trainer_hub = TrainerHub(settings, "trainer-test", timedelta(seconds=30))
    try:
        training = await asyncio.to_thread(
            data.download, trainer_hub, tmp_path / "training", [CategoryInfo(stack.weed_id, "weed", "box")], bool
        )
    finally:
        trainer_hub.close()
    [image] = training.train + training.test
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    assert image.annotations[0].shape.box.y == y
    assert image.pixels().shape == (HEIGHT, WIDTH, 3)

    # The annotator opens the upright picture and segments the square where it is.
    session = await stack.annotator.OpenSession(apb.OpenSessionRequest(image_id=stack.image_id, backend="classical"))
    assert (session.image_width, session.image_height) == (WIDTH, HEIGHT)
    centre = geometry_pb2.Point(x=x + size / 2, y=y + size / 2)
    prompt = apb.PromptRequest(session_id=session.session_id, points=[apb.PointPrompt(point=centre, positive=True)])
    proposal = (await stack.annotator.Prompt(prompt)).proposal
    assert (proposal.box.x, proposal.box.y, proposal.box.width, proposal.box.height) == pytest.approx(
        (x, y, size, size), abs=4
    )
