"""The Label Studio ML-backend bridge answers recorded Label Studio requests."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.annotator.conftest import Desk, open_desk
from tests.detector.conftest import REF
from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.loop.v1 import annotation_service_pb2, annotation_service_pb2_grpc

RECORDED = Path(__file__).parent / "label_studio"


@pytest.fixture
async def bridge_desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with open_desk(tmp_path, label_studio_port=0) as ready:
        yield ready


def _recorded(name: str, image_id: str) -> bytes:
    return (RECORDED / name).read_text().replace("{image_id}", image_id).encode()


async def _http(desk: Desk, path: str, body: bytes | None = None) -> tuple[int, Any]:
    assert desk.servicer.label_studio is not None
    url = f"http://127.0.0.1:{desk.servicer.label_studio.port}{path}"

    def send() -> tuple[int, Any]:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    return await asyncio.to_thread(send)


async def test_predict_answers_in_percent_and_a_webhook_creates_the_annotation(bridge_desk: Desk) -> None:
    desk = bridge_desk
    image_id = desk.image_ids[0]
    detections = detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_name="weed",
                confidence=0.75,
                model_version="1.0",
                box=geometry_pb2.Box(x=32, y=24, width=160, height=60),
            )
        ]
    )
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        await annotations.PutDetections(
            annotation_service_pb2.PutDetectionsRequest(ref=REF, image_id=image_id, detections=detections)
        )

        status, health = await _http(desk, "/health")
        assert status == 200
        assert health["status"] == "UP"
        body = json.loads(_recorded("predict.json", image_id))
        setup = json.dumps({"project": body["project"], "schema": body["label_config"]}).encode()
        assert (await _http(desk, "/setup", setup))[0] == 200

        status, predicted = await _http(desk, "/predict", _recorded("predict.json", image_id))
        assert status == 200
        (prediction,) = predicted["results"]
        (region,) = prediction["result"]
        assert region["from_name"] == "label"
        assert region["to_name"] == "image"
        assert region["type"] == "rectanglelabels"
        assert (region["original_width"], region["original_height"]) == (320, 240)
        assert region["value"]["rectanglelabels"] == ["weed"]
        value = region["value"]
        assert [value["x"], value["y"], value["width"], value["height"]] == pytest.approx([10, 10, 50, 25])
        assert prediction["score"] == pytest.approx(0.75)

        status, answer = await _http(desk, "/webhook", _recorded("webhook_annotation_created.json", image_id))
        assert status == 201
        assert len(answer["created"]) == 1
        listing = annotation_service_pb2.ListAnnotationsRequest(ref=REF, image_id=image_id)
        (stored,) = (await annotations.ListAnnotations(listing)).annotations
        assert stored.category_id == desk.categories["weed"].id
        assert stored.creator.person == "labelstudio:2"
        box = stored.shape.box
        assert [box.x, box.y, box.width, box.height] == pytest.approx([80, 30, 160, 60])

    status, _ = await _http(desk, "/predict", _recorded("predict.json", "e" * 64))
    assert status == 404
    status, _ = await _http(desk, "/predict", b"[1, 2]")
    assert status == 400
