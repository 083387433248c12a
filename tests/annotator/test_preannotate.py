"""Pre-annotation with the deployed model: suggestions stored on the hub, priorities from them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.annotator.conftest import Desk
from tests.detector.conftest import REF, upload
from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import image_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
)
from visionloop.testing.frames import frame, jpeg


async def test_without_a_deployed_model_pre_annotation_is_a_failed_precondition(desk: Desk) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await desk.stub.PreAnnotate(pb.PreAnnotateRequest())
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_pre_annotation_stores_the_deployed_models_detections(desk: Desk, stub_zip: Path) -> None:
    version = await upload(desk.hub.settings.port, await asyncio.to_thread(stub_zip.read_bytes))
    with desk.client() as client:
        squares = await asyncio.to_thread(
            client.upload_image, jpeg(frame(squares=((200, 120, 96, "red"), (400, 300, 80, "green"))))
        )
        empty = await asyncio.to_thread(client.upload_image, jpeg(frame()))
    queued = [squares.metadata.id, empty.metadata.id]
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        images = image_service_pb2_grpc.ImageServiceStub(channel)
        for image_id in queued:
            await images.UpdateImage(
                image_service_pb2.UpdateImageRequest(ref=REF, image_id=image_id, state=image_pb2.IMAGE_STATE_ANNOTATE)
            )
        response = await desk.stub.PreAnnotate(pb.PreAnnotateRequest())
        assert response.images == 2
        assert response.model_version == version
        assert response.suggestions >= 2
        annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        request = annotation_service_pb2.GetDetectionsRequest(ref=REF, image_id=squares.metadata.id)
        stored = (await annotations.GetDetections(request)).detections
        assert {box.category_name for box in stored.boxes} >= {"red", "green"}
        assert all(box.model_version == version for box in stored.boxes)
        queue = await images.ListAnnotationQueue(image_service_pb2.ListAnnotationQueueRequest(ref=REF))
        priorities = {image.id: image.priority for image in queue.images}
        top = max(1 - box.confidence for box in stored.boxes)
        assert priorities[squares.metadata.id] == pytest.approx(top, abs=1e-5)
        assert priorities[empty.metadata.id] == 0.0

        again = await desk.stub.PreAnnotate(pb.PreAnnotateRequest(image_ids=[squares.metadata.id]))
        assert again.images == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await desk.stub.PreAnnotate(pb.PreAnnotateRequest(image_ids=["f" * 64]))
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND
