"""Detection over real gRPC with the synthetic colour model: inputs, rescaling, options, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import cv2
import grpc
import numpy as np
import pytest

from tests.detector.conftest import DetectorClient
from visionloop.client.images import to_image
from visionloop.common.v1 import image_pb2, model_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.testing.frames import frame, jpeg

SQUARE = (200, 120, 96, "red")  # x, y, size: the red square every test looks for


def inside(box, x: int, y: int, size: int, margin: float = 20) -> bool:
    return (
        box.x >= x - margin
        and box.y >= y - margin
        and box.x + box.width <= x + size + margin
        and box.y + box.height <= y + size + margin
    )


async def detect(detector: DetectorClient, image: image_pb2.Image, **options) -> pb.DetectResponse:
    return await detector.stub.Detect(pb.DetectRequest(image=image, options=pb.DetectOptions(**options)))


@pytest.mark.parametrize(
    "rescale", [model_pb2.RESCALE_TYPE_PAD, model_pb2.RESCALE_TYPE_WARP, model_pb2.RESCALE_TYPE_CROP]
)
async def test_boxes_land_on_the_square_in_original_pixels(detector: DetectorClient, rescale: int) -> None:
    x, y, size, _ = SQUARE
    response = await detect(detector, image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,)))), rescale_type=rescale)
    assert (response.image_width, response.image_height) == (640, 480)
    assert response.model == "stub"
    assert response.detections.boxes
    for box in response.detections.boxes:
        assert box.category_name == "red"
        assert box.model_version == response.model_version
        assert inside(box.box, x, y, size), (box, rescale)
    confidences = [b.confidence for b in response.detections.boxes]
    assert confidences == sorted(confidences, reverse=True)
    assert response.timing.inference.ToNanoseconds() > 0


async def test_raw_arrays_match_jpeg(detector: DetectorClient) -> None:
    pixels = frame(squares=(SQUARE, (400, 300, 64, "green")))
    png = cv2.imencode(".png", pixels)[1].tobytes()
    answers = [
        await detect(detector, image_pb2.Image(encoded=png)),
        await detect(detector, to_image(pixels, "bgr")),
        await detect(detector, to_image(np.ascontiguousarray(pixels[..., ::-1]), "rgb")),
    ]
    summaries = [
        sorted((b.category_name, round(b.box.x, 3), round(b.box.y, 3)) for b in a.detections.boxes) for a in answers
    ]
    assert summaries[0] == summaries[1] == summaries[2]
    assert {name for name, _, _ in summaries[0]} == {"red", "green"}


async def test_request_options(detector: DetectorClient) -> None:
    image = image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,))))
    everything = await detect(detector, image)
    assert len(everything.detections.boxes) > 3
    assert len((await detect(detector, image, max_objects=2)).detections.boxes) == 2
    assert not (await detect(detector, image, score_threshold=0.9999)).detections.boxes
    for value, field in ((1.5, "score_threshold"), (-0.1, "iou_threshold")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await detect(detector, image, **{field: value})
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in caught.value.details()


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (image_pb2.Image(encoded=b"this is not an image"), "neither JPEG nor PNG"),
        (image_pb2.Image(), "image is empty"),
        (image_pb2.Image(encoded=b""), "image.encoded is empty"),
        (
            image_pb2.Image(
                raw=image_pb2.RawImage(
                    pixels=b"\0" * 100, width=64, height=48, pixel_format=image_pb2.PIXEL_FORMAT_BGR8
                )
            ),
            "needs 9216",
        ),
        (image_pb2.Image(raw=image_pb2.RawImage(pixels=b"\0" * 12, width=2, height=2)), "pixel_format"),
    ],
)
async def test_bad_input(detector: DetectorClient, image: image_pb2.Image, fragment: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detect(detector, image)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in caught.value.details()
    ok = await detect(detector, image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,)))))  # still serving
    assert ok.detections.boxes


async def test_image_over_the_limit(detector: DetectorClient) -> None:
    detector.settings.__dict__["max_image_bytes"] = 5000  # frozen model: adjust the test instance in place
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detect(detector, image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,)))))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 5000 bytes" in caught.value.details()


async def test_model_selection_and_information(detector: DetectorClient) -> None:
    image = image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,))))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detect(detector, image, model="nope")
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "loaded models: stub" in caught.value.details()
    listed = await detector.stub.ListLoadedModels(pb.ListLoadedModelsRequest())
    assert listed.default_model == "stub"
    assert [(m.name, m.backend, m.is_default) for m in listed.models] == [("stub", "onnxruntime", True)]
    info = (await detector.stub.GetModelInfo(pb.GetModelInfoRequest())).info
    assert [c.name for c in info.categories] == ["red", "green"]
    about = await detector.stub.GetAbout(pb.GetAboutRequest())
    assert about.node_id.startswith("detector-")
    assert about.operation_mode == pb.OPERATION_MODE_DETECTING

    await detector.stub.SetOperationMode(pb.SetOperationModeRequest(mode=pb.OPERATION_MODE_IDLE))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await detect(detector, image)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    await detector.stub.SetOperationMode(pb.SetOperationModeRequest(mode=pb.OPERATION_MODE_DETECTING))
    assert (await detect(detector, image)).detections.boxes


async def test_no_model_yet_is_unavailable(tmp_path) -> None:
    from tests.detector.conftest import start_detector
    from visionloop.detector.v1 import detector_service_pb2_grpc
    from visionloop.server.detector.config import DetectorSettings

    server, port = await start_detector(DetectorSettings(port=0, data_dir=tmp_path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Detect(pb.DetectRequest(image=image_pb2.Image(encoded=jpeg(frame()))))
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "no model is loaded yet" in caught.value.details()
    finally:
        await server.stop(0)


async def test_batch(detector: DetectorClient) -> None:
    images = [image_pb2.Image(encoded=jpeg(frame(squares=((40 * i, 40, 64, "red"),)))) for i in range(6)]
    response = await detector.stub.DetectBatch(pb.DetectBatchRequest(images=images))
    assert len(response.results) == 6
    for i, result in enumerate(response.results):
        assert all(inside(b.box, 40 * i, 40, 64) for b in result.detections.boxes)


async def test_streams_answer_every_frame_in_order(detector: DetectorClient) -> None:
    frames = [jpeg(frame(squares=((10 * i, 100, 64, "red"),))) for i in range(20)]

    async def stream(camera: int) -> list[pb.DetectStreamResponse]:
        async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
            yield pb.DetectStreamRequest(
                frame_id=0, image=image_pb2.Image(encoded=frames[0]), options=pb.DetectOptions(camera_id=f"cam{camera}")
            )
            for i in range(1, len(frames)):
                image = image_pb2.Image(encoded=frames[i] if i != 7 else b"broken")
                yield pb.DetectStreamRequest(frame_id=i, image=image)

        return [r async for r in detector.stub.DetectStream(requests())]

    results = await asyncio.gather(*(stream(c) for c in range(4)))
    for answers in results:
        assert [a.frame_id for a in answers] == list(range(20))
        assert answers[7].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        for i, answer in enumerate(answers):
            if i != 7:
                assert answer.error_code == 0
                assert all(inside(b.box, 10 * i, 100, 64) for b in answer.result.detections.boxes)


def batch_calls(model: str) -> tuple[float, float]:
    """(backend calls, frames) so far for ``model``, from the detector's batch-size histogram."""
    from prometheus_client import REGISTRY

    labels = {"model": model}
    count = REGISTRY.get_sample_value("visionloop_detector_batch_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("visionloop_detector_batch_size_sum", labels) or 0.0
    return count, total


async def test_a_lone_frame_skips_the_queue_and_concurrent_frames_share_backend_calls(
    detector: DetectorClient,
) -> None:
    image = image_pb2.Image(encoded=jpeg(frame(squares=(SQUARE,))))
    calls, frames = batch_calls("stub")
    lone = await detect(detector, image)
    assert batch_calls("stub") == (calls + 1, frames + 1)
    assert lone.timing.queue.ToNanoseconds() == 0  # run start to end in one worker thread
    assert lone.detections.boxes

    calls, frames = batch_calls("stub")
    answers = await asyncio.gather(*(detect(detector, image) for _ in range(12)))
    after_calls, after_frames = batch_calls("stub")
    assert after_frames - frames == 12
    assert after_calls - calls < 12  # some frames shared a backend call
    assert all(a.detections == lone.detections for a in answers)  # same frame, same answer either way
