"""``visionloop annotate queue`` against a real hub and annotator."""

from __future__ import annotations

import asyncio
import re

import grpc
from click.testing import CliRunner

from tests.annotator.conftest import Desk
from tests.detector.conftest import REF
from visionloop.cli.annotate import annotate
from visionloop.common.v1 import detection_pb2, geometry_pb2, image_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
)

ROW = re.compile(r"^\s*[0-9.]+\s+[0-9]+\s+[0-9]+\s+[0-9a-f]{64}$")


async def test_queue_lists_by_priority_after_ranking(desk: Desk) -> None:
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        images = image_service_pb2_grpc.ImageServiceStub(channel)
        annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        for image_id, confidence in zip(desk.image_ids[:2], (0.9, 0.6), strict=True):
            await images.UpdateImage(
                image_service_pb2.UpdateImageRequest(ref=REF, image_id=image_id, state=image_pb2.IMAGE_STATE_ANNOTATE)
            )
            box = detection_pb2.BoxDetection(
                category_name="weed",
                confidence=confidence,
                model_version="1.0",
                box=geometry_pb2.Box(width=9, height=9),
            )
            detections = detection_pb2.Detections(boxes=[box])
            await annotations.PutDetections(
                annotation_service_pb2.PutDetectionsRequest(ref=REF, image_id=image_id, detections=detections)
            )
    annotator = f"127.0.0.1:{desk.annotator_port}"
    args = ["queue", "--loop-host", desk.hub_target, "--org", REF.organization, "--project", REF.project]
    result = await asyncio.to_thread(
        CliRunner().invoke, annotate, [*args, "--annotator", annotator, "--rank", "least-confidence"]
    )
    assert result.exit_code == 0, result.output
    # The in-process servers log to the same stdout: keep the table's rows.
    rows = [line.split() for line in result.stdout.splitlines() if ROW.match(line)]
    assert [row[-1] for row in rows] == [desk.image_ids[1], desk.image_ids[0]]
    assert [float(row[0]) for row in rows] == [0.4, 0.1]
    refused = await asyncio.to_thread(CliRunner().invoke, annotate, [*args, "--rank", "margin"])
    assert refused.exit_code != 0


SELECTED = re.compile(r"^\s*[0-9.]+\s+[0-9.]+\s+[0-9a-f]{64}$")


async def test_select_spends_a_budget_and_prints_the_picks_in_order(desk: Desk) -> None:
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        for image_id, confidence in zip(desk.image_ids[:3], (0.9, 0.6, 0.7), strict=True):
            box = detection_pb2.BoxDetection(
                category_name="weed",
                confidence=confidence,
                model_version="1.0",
                box=geometry_pb2.Box(width=9, height=9),
            )
            await annotations.PutDetections(
                annotation_service_pb2.PutDetectionsRequest(
                    ref=REF, image_id=image_id, detections=detection_pb2.Detections(boxes=[box])
                )
            )
    annotator = f"127.0.0.1:{desk.annotator_port}"
    args = ["select", "2", "--loop-host", desk.hub_target, "--org", REF.organization, "--project", REF.project]
    result = await asyncio.to_thread(
        CliRunner().invoke, annotate, [*args, "--annotator", annotator, "--acquisition", "uncertainty"]
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if SELECTED.match(line)]
    assert [row[-1] for row in rows] == [desk.image_ids[1], desk.image_ids[2]]
    assert [float(row[0]) for row in rows] == [1.0, 0.5]
    assert [float(row[1]) for row in rows] == [0.4, 0.3]
