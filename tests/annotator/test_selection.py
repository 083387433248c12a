"""SelectImages against a real hub: a label budget spent on the inbox, the queue in the picks' order."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.annotator.conftest import Desk
from tests.detector.conftest import REF
from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import detection_pb2, geometry_pb2, image_pb2
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
)
from visionloop.server.annotator.labelstudio.project import queue as queue_order
from visionloop.server.annotator.selection import SELECTED_TAG


def _found(*objects: tuple[float, float]) -> detection_pb2.Detections:
    """Weed boxes (confidence, x), each on a spot of its own."""
    return detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_name="weed",
                confidence=confidence,
                model_version="1.0",
                box=geometry_pb2.Box(x=x, y=10, width=40, height=40),
            )
            for confidence, x in objects
        ]
    )


async def _detect(channel: grpc.aio.Channel, found: dict[str, detection_pb2.Detections]) -> None:
    annotations = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
    for image_id, detections in found.items():
        await annotations.PutDetections(
            annotation_service_pb2.PutDetectionsRequest(ref=REF, image_id=image_id, detections=detections)
        )


async def _state(channel: grpc.aio.Channel, state: int, order: int) -> list[image_pb2.ImageMetadata]:
    images = image_service_pb2_grpc.ImageServiceStub(channel)
    request = image_service_pb2.ListImagesRequest(
        ref=REF, filter=image_service_pb2.ImageFilter(states=[state]), order=order
    )
    return list((await images.ListImages(request)).images)


async def test_the_budget_goes_to_the_most_uncertain_and_the_queue_follows_the_picks(desk: Desk) -> None:
    ids = desk.image_ids
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        await _detect(
            channel,
            {
                ids[0]: _found((0.95, 10)),  # sure: 0.05
                ids[1]: _found((0.55, 10)),  # one unsure object: 0.45
                ids[2]: _found((0.6, 10), (0.7, 200)),  # two: 0.4 + 0.3
            },
        )  # ids[3]: nothing found
        # An image the watcher ranked high, waiting in the inbox: the budget's picks go before it.
        images = image_service_pb2_grpc.ImageServiceStub(channel)
        await images.UpdateImage(image_service_pb2.UpdateImageRequest(ref=REF, image_id=ids[3], priority=0.9))
        request = pb.SelectImagesRequest(budget=2, acquisition=pb.ACQUISITION_UNCERTAINTY, reducer=pb.REDUCER_SUM)
        answer = await desk.stub.SelectImages(request)
        assert answer.candidates == 4
        assert [s.image_id for s in answer.selected] == [ids[2], ids[1]]
        assert [s.uncertainty for s in answer.selected] == pytest.approx([0.7, 0.45])

        # The annotation queue (what Label Studio's tasks are ordered by) in the order of the picks.
        queue = await _state(channel, image_pb2.IMAGE_STATE_ANNOTATE, image_service_pb2.IMAGE_ORDER_PRIORITY)
        assert [image.id for image in queue] == [ids[2], ids[1]]
        assert [image.priority for image in queue] == pytest.approx([1.9, 1.4])  # above all that waits
        assert all(SELECTED_TAG in image.tags for image in queue)
        left = await _state(channel, image_pb2.IMAGE_STATE_INBOX, image_service_pb2.IMAGE_ORDER_OLDEST)
        assert {image.id for image in left} == {ids[0], ids[3]}  # not picked: still candidates
        # Label Studio's tasks: inbox and queue by priority (``labelstudio.project.queue``).
        with desk.client() as client:
            tasks = await asyncio.to_thread(queue_order, client)
        assert [image.id for image in tasks][:3] == [ids[2], ids[1], ids[3]]


async def test_the_combined_acquisition_labels_one_of_two_near_copies(desk: Desk) -> None:
    # The last scene is scene 0 with a small distractor: a near copy. Both are the most uncertain.
    ids = desk.image_ids
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        unsure = _found((0.5, 10), (0.5, 200))
        await _detect(channel, {ids[0]: unsure, ids[-1]: unsure, ids[1]: _found((0.7, 10)), ids[2]: _found((0.8, 10))})
        uncertainty = await desk.stub.SelectImages(
            pb.SelectImagesRequest(budget=2, acquisition=pb.ACQUISITION_UNCERTAINTY, reducer=pb.REDUCER_SUM, seed=1)
        )
        assert {s.image_id for s in uncertainty.selected} == {ids[0], ids[-1]}  # both copies

        # Put them back and spend the same budget with diversity.
        images = image_service_pb2_grpc.ImageServiceStub(channel)
        for image_id in (ids[0], ids[-1]):
            await images.UpdateImage(
                image_service_pb2.UpdateImageRequest(ref=REF, image_id=image_id, state=image_pb2.IMAGE_STATE_INBOX)
            )
        combined = await desk.stub.SelectImages(pb.SelectImagesRequest(budget=2))
        picked = [s.image_id for s in combined.selected]
        assert picked[0] in {ids[0], ids[-1]}
        assert picked[1] == ids[1]  # the next most uncertain scene, not the near copy


async def test_the_combined_acquisition_ranks_an_image_by_its_most_uncertain_object(desk: Desk) -> None:
    # A cluttered image of fairly sure weeds (4 x 0.2, summed 0.8) and one with a single unsure weed (0.45).
    ids = desk.image_ids
    async with grpc.aio.insecure_channel(desk.hub_target) as channel:
        await _detect(channel, {ids[0]: _found(*((0.8, 60.0 * k) for k in range(4))), ids[1]: _found((0.55, 10))})
        answer = await desk.stub.SelectImages(pb.SelectImagesRequest(budget=1))
        assert [s.image_id for s in answer.selected] == [ids[1]]
        assert answer.selected[0].uncertainty == pytest.approx(0.45)


async def test_random_picks_follow_the_seed(desk: Desk) -> None:
    first = await desk.stub.SelectImages(pb.SelectImagesRequest(budget=2, acquisition=pb.ACQUISITION_RANDOM, seed=5))
    assert len(first.selected) == 2
    assert first.candidates == len(desk.image_ids)
    rest = await desk.stub.SelectImages(pb.SelectImagesRequest(budget=10, acquisition=pb.ACQUISITION_ARRIVAL))
    assert rest.candidates == len(rest.selected) == len(desk.image_ids) - 2  # the budget is a ceiling


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (pb.SelectImagesRequest(budget=0), "budget"),
        (pb.SelectImagesRequest(budget=10_001), "budget"),
        (pb.SelectImagesRequest(budget=1, ranker=pb.RANKER_DIVERSITY), "ranker"),
        (pb.SelectImagesRequest(budget=1, score_threshold=1.5), "score_threshold"),
        (pb.SelectImagesRequest(budget=1, acquisition=42), "acquisition"),  # type: ignore[arg-type]
    ],
)
async def test_bad_requests_are_invalid(desk: Desk, request_: pb.SelectImagesRequest, says: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await desk.stub.SelectImages(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in caught.value.details()
