"""The detector on the Triton backend, next to the same detector on ONNX Runtime.

A real CPU ``tritonserver`` (``tests/detector/triton_server.py``) serves a model repository in a
temporary folder; the detectors write their python-backend entries into it themselves
(``TRITON_MODEL_REPOSITORY``), as a detector and its Triton sharing a volume would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc.aio as aioclient
from pydantic import ValidationError

from tests.detector.conftest import OPEN_ADMISSION, DetectorClient, start_detector
from tests.detector.triton_server import TritonServer, TritonStartError
from visionloop.client.images import to_image
from visionloop.common.v1 import detection_pb2, image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib.archives import safe_extract
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.triton_models import open_triton_model, triton_model_name, triton_version
from visionloop.testing.frames import frame, jpeg

CONFIDENCE_TOLERANCE = 1e-5
PIXEL_TOLERANCE = 1e-3


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    workdir = tmp_path_factory.mktemp("triton-detector")
    server = TritonServer(workdir / "models", workdir)  # empty: the detectors write their entries
    try:
        server.start()
    except TritonStartError as error:
        pytest.fail(str(error), pytrace=False)  # no Triton is a failure, never a skip
    yield server
    server.stop()


@asynccontextmanager
async def running(settings: DetectorSettings) -> AsyncIterator[DetectorClient]:
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            yield DetectorClient(channel, server.spec.context, stub, settings)
    finally:
        await server.stop(0)


def triton_settings(data_dir: Path, model_paths: str, triton: TritonServer) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        data_dir=data_dir,
        model_paths=model_paths,
        backend="triton",
        triton_url=triton.grpc_url,
        triton_model_repository=triton.repository,
        **OPEN_ADMISSION,
    )


@pytest.fixture
async def triton_detector(tmp_path: Path, stub_zip: Path, triton_server: TritonServer) -> AsyncIterator[DetectorClient]:
    async with running(triton_settings(tmp_path / "triton-detector", f"stub={stub_zip}", triton_server)) as client:
        yield client


def images() -> list[image_pb2.Image]:
    scenes = [
        ((200, 120, 96, "red"),),
        ((40, 40, 64, "green"), (400, 300, 120, "red")),
        ((0, 0, 80, "red"), (560, 400, 80, "green"), (300, 200, 33, "red")),
        ((123, 77, 150, "green"),),
        (),  # nothing to find
    ]
    encoded = [image_pb2.Image(encoded=jpeg(frame(squares=squares))) for squares in scenes]
    odd_size = jpeg(frame(width=333, height=517, squares=((50, 260, 70, "red"),)))  # letterboxed the other way
    raw = to_image(frame(squares=((310, 90, 100, "green"), (90, 330, 48, "red"))), "bgr")
    return [*encoded, image_pb2.Image(encoded=odd_size), raw]


def ordered(detections: detection_pb2.Detections) -> list[detection_pb2.BoxDetection]:
    # Equal confidences (a uniform square) may leave NMS in either order: pair boxes by place.
    return sorted(detections.boxes, key=lambda d: (d.category_id, d.box.x, d.box.y, d.box.width, d.box.height))


async def test_onnxruntime_and_triton_give_the_same_detections(
    detector: DetectorClient, triton_detector: DetectorClient
) -> None:
    compared = 0
    for index, image in enumerate(images()):
        request = pb.DetectRequest(image=image)
        expected, served = await asyncio.gather(detector.stub.Detect(request), triton_detector.stub.Detect(request))
        assert (served.image_width, served.image_height) == (expected.image_width, expected.image_height)
        assert served.model_version == expected.model_version == "local"
        assert len(served.detections.boxes) == len(expected.detections.boxes), index
        for got, want in zip(ordered(served.detections), ordered(expected.detections), strict=True):
            assert (got.category_id, got.category_name) == (want.category_id, want.category_name), index
            assert got.confidence == pytest.approx(want.confidence, abs=CONFIDENCE_TOLERANCE), index
            for coordinate in ("x", "y", "width", "height"):
                assert getattr(got.box, coordinate) == pytest.approx(
                    getattr(want.box, coordinate), abs=PIXEL_TOLERANCE
                ), (index, coordinate)
            compared += 1
    assert compared > 20  # the comparison is not vacuous

    loaded = (await triton_detector.stub.ListLoadedModels(pb.ListLoadedModelsRequest())).models
    assert [(m.name, m.backend) for m in loaded] == [("stub", "triton")]
    # Both backends run the same ONNX model files: the Triton one wraps them into its repository.
    about = await triton_detector.stub.GetAbout(pb.GetAboutRequest())
    assert list(about.formats) == ["onnx"]


async def test_stream_on_triton_answers_every_frame_in_order(triton_detector: DetectorClient) -> None:
    frames = [jpeg(frame(squares=((40 * i, 150, 90, "red"),))) for i in range(12)]
    count = 60

    async def stream(camera: str) -> list[pb.DetectStreamResponse]:
        async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
            for i in range(count):  # as fast as the stream takes them: frames overlap and get batched
                options = pb.DetectOptions(camera_id=camera) if i == 0 else None
                yield pb.DetectStreamRequest(
                    frame_id=i, image=image_pb2.Image(encoded=frames[i % len(frames)]), options=options
                )

        return [answer async for answer in triton_detector.stub.DetectStream(requests())]

    answers = await asyncio.gather(*(stream(f"cam{c}") for c in range(3)))
    for answered in answers:
        assert [a.frame_id for a in answered] == list(range(count))
        assert all(a.error_code == 0 for a in answered), [a.error_message for a in answered if a.error_code]
        assert all(a.result.detections.boxes for a in answered)
        assert {b.category_name for a in answered for b in a.result.detections.boxes} == {"red"}


async def test_a_new_version_is_a_new_entry_and_the_old_one_goes_when_retired(
    triton_detector: DetectorClient, triton_server: TritonServer, stub_zip: Path, tmp_path: Path
) -> None:
    # The detector's own entries are named after their files: a new version loads beside the old
    # one, which is unloaded (and its files deleted) once the swap retired it.
    old = triton_detector.servicer.models.get("stub").backend.model_name  # type: ignore[attr-defined]
    folder = tmp_path / "v7"
    safe_extract(stub_zip, folder)
    manifest = folder / "model.json"
    manifest.write_text(manifest.read_text().replace('"format": "onnx"', '"format": "onnx", "version": "7"'))
    replacement = await open_triton_model(
        "stub", folder, triton_server.grpc_url, triton_server.repository, max_batch=16
    )
    new = replacement.backend.model_name  # type: ignore[attr-defined]
    assert replacement.version == "7"
    assert old.startswith("stub.")
    assert new.startswith("stub.")
    assert new != old
    entry = triton_server.repository / new
    assert sorted(p.name for p in entry.iterdir() if p.is_dir()) == ["7"]  # the version names its folder
    await triton_detector.servicer.models.put(replacement)
    async with aioclient.InferenceServerClient(triton_server.grpc_url) as client:
        deadline = asyncio.get_running_loop().time() + 30
        while await client.is_model_ready(old):  # the old model retires in the background
            assert asyncio.get_running_loop().time() < deadline, "the retired entry stayed loaded"
            await asyncio.sleep(0.05)
        assert await client.is_model_ready(new)
    assert not (triton_server.repository / old).exists()
    image = image_pb2.Image(encoded=jpeg(frame(squares=((200, 120, 96, "red"),))))
    answer = await triton_detector.stub.Detect(pb.DetectRequest(image=image))
    assert answer.model_version == "7"
    assert answer.detections.boxes
    await triton_detector.servicer.models.close()
    async with aioclient.InferenceServerClient(triton_server.grpc_url) as client:
        assert not await client.is_model_ready(new)  # the last holder unloaded it


def test_triton_names_and_versions() -> None:
    assert triton_model_name("weeds") == "weeds"
    assert triton_model_name("weeds-v2.onnx_x") == "weeds-v2.onnx_x"
    for unsafe in ("weeds/v2", "../up", "", "ünïcode", "a b"):
        name = triton_model_name(unsafe)
        assert name.isascii()
        assert name.replace("-", "").replace("_", "").replace(".", "").isalnum()
        assert not name.startswith(".")
    assert triton_model_name("a/b") != triton_model_name("a_b")
    assert [triton_version(v) for v in ("3", "12", "1.3", "local", "", "0", "²", "-1")] == [3, 12, 1, 1, 1, 1, 1, 1]


def test_triton_backend_needs_a_model_repository(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TRITON_MODEL_REPOSITORY must be set"):
        DetectorSettings(data_dir=tmp_path, backend="triton", triton_url="127.0.0.1:8001")
