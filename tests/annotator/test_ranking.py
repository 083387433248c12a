"""Active-learning criteria with hand-computed values, and RankQueue ordering the hub's queue."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.annotator import shapes
from tests.annotator.conftest import Desk, open_desk
from tests.detector.conftest import REF
from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import annotation_pb2, detection_pb2, geometry_pb2, image_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
)
from visionloop.server.annotator import ranking
from visionloop.server.annotator.selection import SELECTED_TAG


def _box(confidence: float, x: float = 10, category: str = "weed") -> detection_pb2.BoxDetection:
    return detection_pb2.BoxDetection(
        category_name=category,
        confidence=confidence,
        model_version="1.0",
        box=geometry_pb2.Box(x=x, y=10, width=40, height=40),
    )


def _detections(*boxes: detection_pb2.BoxDetection) -> detection_pb2.Detections:
    return detection_pb2.Detections(boxes=list(boxes))


def test_one_detection_is_a_two_way_distribution() -> None:
    # confidence 0.6 -> (0.6, 0.4)
    one = [0.6]
    assert ranking.object_score(one, pb.RANKER_LEAST_CONFIDENCE) == pytest.approx(0.4)
    assert ranking.object_score(one, pb.RANKER_MARGIN) == pytest.approx(0.8)  # 1 - (0.6 - 0.4)
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / math.log(2)
    assert ranking.object_score(one, pb.RANKER_ENTROPY) == pytest.approx(entropy)
    assert entropy == pytest.approx(0.97095, abs=1e-5)
    assert ranking.object_score([0.5], pb.RANKER_ENTROPY) == pytest.approx(1.0)


def test_categories_on_the_same_spot_form_one_object() -> None:
    detections = _detections(_box(0.5, category="weed"), _box(0.3, x=12, category="crop"))
    assert ranking.objects(detections) == [[pytest.approx(0.5), pytest.approx(0.3)]]
    # (0.5, 0.3, 0.2 left over)
    assert ranking.image_priority(detections, pb.RANKER_LEAST_CONFIDENCE, pb.REDUCER_MAX) == pytest.approx(0.5)
    assert ranking.image_priority(detections, pb.RANKER_MARGIN, pb.REDUCER_MAX) == pytest.approx(0.8)
    entropy = ranking.image_priority(detections, pb.RANKER_ENTROPY, pb.REDUCER_MAX)
    assert entropy == pytest.approx(1.02965 / 1.09861, abs=1e-4)


def test_reducers_combine_objects_into_the_image_priority() -> None:
    detections = _detections(_box(0.9), _box(0.6, x=200))  # apart: two objects, scores 0.1 and 0.4
    assert ranking.image_priority(detections, pb.RANKER_LEAST_CONFIDENCE, pb.REDUCER_MAX) == pytest.approx(0.4)
    assert ranking.image_priority(detections, pb.RANKER_LEAST_CONFIDENCE, pb.REDUCER_MEAN) == pytest.approx(0.25)
    assert ranking.image_priority(_detections(), pb.RANKER_ENTROPY, pb.REDUCER_MEAN) == 0.0


def test_k_centre_walks_the_farthest_images_first() -> None:
    # Reference at 0; queue 2, 5, 9: 9 first (9 away); then 5 is 4 from 9; then 2 is 2 from 0.
    priorities = ranking.k_centre(np.array([[2.0], [5.0], [9.0]]), np.array([[0.0]]))
    assert priorities.tolist() == [2.0, 4.0, 9.0]
    assert ranking.k_centre(np.zeros((0, 1)), np.array([[0.0]])).tolist() == []


async def _queue(desk: Desk, channel: grpc.aio.Channel, detections: dict[int, detection_pb2.Detections]) -> None:
    images = image_service_pb2_grpc.ImageServiceStub(channel)
    annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
    for index, image_id in enumerate(desk.image_ids):
        await images.UpdateImage(
            image_service_pb2.UpdateImageRequest(ref=REF, image_id=image_id, state=image_pb2.IMAGE_STATE_ANNOTATE)
        )
        if index in detections:
            request = annotation_service_pb2.PutDetectionsRequest(
                ref=REF, image_id=image_id, detections=detections[index]
            )
            await annotations.PutDetections(request)


async def _order(channel: grpc.aio.Channel) -> list[tuple[str, float]]:
    request = image_service_pb2.ListAnnotationQueueRequest(ref=REF)
    queue = await image_service_pb2_grpc.ImageServiceStub(channel).ListAnnotationQueue(request)
    return [(image.id, image.priority) for image in queue.images]


async def test_rank_queue_serves_the_most_uncertain_image_first(desk: Desk) -> None:
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        await _queue(
            desk,
            channel,
            {
                0: _detections(_box(0.95)),  # sure: 0.05
                1: _detections(_box(0.55)),  # unsure: 0.45
                2: _detections(_box(0.9), _box(0.7, x=200)),  # max 0.3, mean 0.2
            },
        )  # image 3: no detections, 0
        ranked = await desk.stub.RankQueue(pb.RankQueueRequest(ranker=pb.RANKER_LEAST_CONFIDENCE))
        assert ranked.ranked == 4
        order = await _order(channel)
        ids = desk.image_ids
        assert [image_id for image_id, _ in order] == [ids[1], ids[2], ids[0], ids[3]]
        assert [p for _, p in order] == pytest.approx([0.45, 0.3, 0.05, 0.0], abs=1e-6)

        await desk.stub.RankQueue(pb.RankQueueRequest(ranker=pb.RANKER_LEAST_CONFIDENCE, reducer=pb.REDUCER_MEAN))
        order = dict(await _order(channel))
        assert order[ids[2]] == pytest.approx(0.2, abs=1e-6)


async def test_diversity_puts_a_near_copy_of_an_annotated_image_last(desk: Desk) -> None:
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        await _queue(desk, channel, {})
        # Scene 0 is annotated; the queue's last image is scene 0 with a small extra object.
        annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        leaf = annotation_pb2.Annotation(
            image_id=desk.image_ids[0],
            category_id=desk.categories["weed"].id,
            shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=10, y=10, width=20, height=20)),
            creator=annotation_pb2.Creator(person="anna"),
        )
        await annotations.CreateAnnotation(annotation_service_pb2.CreateAnnotationRequest(ref=REF, annotation=leaf))
        images = image_service_pb2_grpc.ImageServiceStub(channel)
        await images.UpdateImage(
            image_service_pb2.UpdateImageRequest(
                ref=REF, image_id=desk.image_ids[0], state=image_pb2.IMAGE_STATE_COMPLETE
            )
        )
        ranked = await desk.stub.RankQueue(pb.RankQueueRequest(ranker=pb.RANKER_DIVERSITY))
        assert ranked.ranked == 3
        order = await _order(channel)
        assert order[-1][0] == desk.image_ids[-1]
        assert order[0][1] > order[-1][1] > 0


async def test_unknown_ranker_is_invalid(desk: Desk) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await desk.stub.RankQueue(pb.RankQueueRequest(ranker=42))  # type: ignore[arg-type]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def watching_desk(tmp_path: Path) -> AsyncIterator[Desk]:
    # A cursor from the hub's first event: the watcher sees every upload of the test.
    (tmp_path / "annotator").mkdir()
    (tmp_path / "annotator" / "annotator-events.cursor").write_text("0")
    async with open_desk(tmp_path) as ready:
        yield ready


async def _priority_becomes(images: image_service_pb2_grpc.ImageServiceStub, image_id: str, wanted: float) -> None:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        request = image_service_pb2.GetImageRequest(ref=REF, image_id=image_id)
        priority = (await images.GetImage(request)).metadata.priority
        if priority == pytest.approx(wanted, abs=1e-6):
            return
        assert asyncio.get_running_loop().time() < deadline, f"priority stayed {priority}, wanted {wanted}"
        await asyncio.sleep(0.05)


async def test_images_arriving_with_detections_are_ranked_at_once(watching_desk: Desk) -> None:
    desk = watching_desk
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        images = image_service_pb2_grpc.ImageServiceStub(channel)

        async def arrive(seed: int, confidence: float) -> str:
            upload = image_service_pb2.ImageUpload(
                data=shapes.scene(seed).png(), detections=_detections(_box(confidence))
            )
            request = image_service_pb2.UploadImageRequest(ref=REF, image=upload)
            return (await images.UploadImage(request)).metadata.id

        first = await arrive(20, 0.7)
        await _priority_becomes(images, first, 0.3)  # least confidence by default
        await desk.stub.RankQueue(pb.RankQueueRequest(ranker=pb.RANKER_MARGIN))
        second = await arrive(21, 0.7)
        await _priority_becomes(images, second, 0.6)  # now margin: 1 - (0.7 - 0.3)
    assert desk.servicer.watcher is not None
    assert desk.servicer.watcher.ranked == 2


def test_the_library_knows_the_contracts_rankers_and_reducers_by_number() -> None:
    from visionloop.lib.acquisition import Ranker, Reducer

    assert {r.name: r.value for r in Ranker} == {
        name.removeprefix("RANKER_"): value
        for name, value in pb.Ranker.items()
        if name not in ("RANKER_UNSPECIFIED", "RANKER_DIVERSITY")
    }
    assert {r.name: r.value for r in Reducer} == {
        name.removeprefix("REDUCER_"): value for name, value in pb.Reducer.items() if name != "REDUCER_UNSPECIFIED"
    }


async def test_the_watcher_leaves_an_image_a_budget_picked_in_the_order_of_its_pick(watching_desk: Desk) -> None:
    desk = watching_desk
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        images = image_service_pb2_grpc.ImageServiceStub(channel)

        async def arrive(seed: int, tags: list[str]) -> str:
            upload = image_service_pb2.ImageUpload(
                data=shapes.scene(seed).png(),
                metadata=image_pb2.ImageMetadata(tags=tags),
                detections=_detections(_box(0.7)),
            )
            return (await images.UploadImage(image_service_pb2.UploadImageRequest(ref=REF, image=upload))).metadata.id

        picked = await arrive(30, [SELECTED_TAG])
        later = await arrive(31, [])
        await _priority_becomes(images, later, 0.3)  # the watcher has seen both events, in order
        request = image_service_pb2.GetImageRequest(ref=REF, image_id=picked)
        assert (await images.GetImage(request)).metadata.priority == 0.0
