"""Models a user brings from Ultralytics: exports made by Ultralytics' own exporter (detect with a
static and a dynamic shape, segment, classify) are imported with one command, served by a real
detector, and answer what ``YOLO(export).predict`` answers on the same frames."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.detector.conftest import OPEN_ADMISSION, REF, Hub, settings_for, start_detector, version_served
from tests.harness import VISIONLOOP, base_env
from tests.ultralytics.conftest import Exports
from visionloop.client.loop import CHUNK_BYTES
from visionloop.common.v1 import category_pb2, image_pb2, node_pb2, transfer_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib.shapes import decode_mask
from visionloop.loop.v1 import model_service_pb2, model_service_pb2_grpc
from visionloop.loop.v1 import project_service_pb2 as project_pb
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.service import DetectorServicer

pytestmark = pytest.mark.timeout(1800)  # the first test waits for the exports (trained once per session)
TASKS = {
    "detect_static": "detect",
    "detect_dynamic": "detect",
    "segment_static": "segment",
    "classify_static": "classify",
}


def run_cli(args: list[str], tmp_path: Path, port: int = 0) -> subprocess.CompletedProcess[str]:
    hub = {"LOOP_HOST": f"127.0.0.1:{port}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"} if port else {}
    env = base_env(tmp_path, hub)  # no hub at all for --output
    return subprocess.run([VISIONLOOP, *args], capture_output=True, text=True, timeout=120, env=env)


def imported(exports: Exports, name: str, tmp_path: Path) -> Path:
    """``visionloop models import <export> --output <zip>``: the zip DETECTOR_MODEL_PATHS takes."""
    archive = tmp_path / f"{name}.zip"
    done = run_cli(["models", "import", str(exports.onnx(name)), "--output", str(archive)], tmp_path)
    assert done.returncode == 0, done.stderr
    return archive


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, model_paths: str
) -> AsyncIterator[tuple[detector_service_pb2_grpc.DetectorServiceStub, DetectorServicer]]:
    """A detector serving ``model_paths`` (DETECTOR_MODEL_PATHS): its stub and its servicer."""
    settings = DetectorSettings(port=0, data_dir=tmp_path / "detector", model_paths=model_paths, **OPEN_ADMISSION)
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield detector_service_pb2_grpc.DetectorServiceStub(channel), server.spec.context
    finally:
        await server.stop(0)


def image(frame: Path) -> image_pb2.Image:
    return image_pb2.Image(encoded=frame.read_bytes())


def assert_same_boxes(ours: list[Any], theirs: dict[str, Any], where: str) -> None:
    """Same count, each box within 1 px and its score within 1e-3, highest score first (as both sort)."""
    assert len(ours) == len(theirs["boxes"]), f"{where}: {len(ours)} detections, Ultralytics {len(theirs['boxes'])}"
    for index, (detection, box, score) in enumerate(zip(ours, theirs["boxes"], theirs["scores"], strict=True)):
        b = detection.box if "box" in detection.DESCRIPTOR.fields_by_name else detection.bounding_box
        assert np.allclose([b.x, b.y, b.x + b.width, b.y + b.height], box, atol=1.0), f"{where} #{index}: {b} vs {box}"
        assert abs(detection.confidence - score) <= 1e-3, f"{where} #{index}: {detection.confidence} vs {score}"


def assert_same_answer(task: str, response: pb.DetectResponse, theirs: dict[str, Any], where: str) -> None:
    detections = response.detections
    if task == "classify":
        assert detections.classifications, where
        top = detections.classifications[0]
        assert top.category_name == ["blue", "red"][theirs["top1"]], where  # Ultralytics sorts folder names
        assert abs(top.confidence - theirs["top1conf"]) <= 1e-3, where
        return
    ours = list(detections.boxes if task == "detect" else detections.segmentations)
    assert_same_boxes(ours, theirs, where)
    if task == "segment":
        for index, (detection, counts) in enumerate(zip(ours, theirs["masks"], strict=True)):
            mine = decode_mask(detection.mask).astype(bool)
            reference = np.repeat(np.arange(len(counts)) % 2, counts).reshape(mine.shape).astype(bool)
            iou = (mine & reference).sum() / max(1, (mine | reference).sum())
            assert iou >= 0.95, f"{where} mask #{index}: IoU {iou:.3f}"
            assert len(detection.polygon.points) >= 3, where


@pytest.mark.parametrize("name", list(TASKS))
async def test_an_imported_export_answers_as_ultralytics_predict(exports: Exports, tmp_path: Path, name: str) -> None:
    archive = imported(exports, name, tmp_path)
    manifest = json.loads(zipfile.ZipFile(archive).read("model.json"))
    assert [c["name"] for c in manifest["categories"]] == (
        ["blue", "red"] if name.startswith("classify") else ["red", "blue"]
    )
    async with serving(tmp_path, f"{name}={archive}") as (stub, _):
        answered = 0
        for frame in exports.frames():
            response = await stub.Detect(pb.DetectRequest(image=image(frame)))
            theirs = exports.predictions[name][frame.name]
            assert_same_answer(TASKS[name], response, theirs, f"{name} {frame.name}")
            answered += len(theirs.get("boxes", [0]))
        assert answered > 0, "the trained model found nothing: the comparison would prove nothing"


async def test_a_static_export_answers_every_frame_of_a_batch_and_of_eight_streams(
    exports: Exports, tmp_path: Path
) -> None:
    archive = imported(exports, "detect_static", tmp_path)
    frames = exports.frames()
    expected = exports.predictions["detect_static"]
    async with serving(tmp_path, f"static={archive}") as (stub, _):
        batch = await stub.DetectBatch(pb.DetectBatchRequest(images=[image(f) for f in frames * 4]))
        for frame, response in zip(frames * 4, batch.results, strict=True):
            assert_same_answer("detect", response, expected[frame.name], f"batch {frame.name}")

        async def requests(camera: int) -> AsyncIterator[pb.DetectStreamRequest]:
            for index in range(12):
                yield pb.DetectStreamRequest(frame_id=index, image=image(frames[(camera + index) % len(frames)]))

        async def stream(stub: detector_service_pb2_grpc.DetectorServiceStub, camera: int) -> int:
            answered = 0
            async for answer in stub.DetectStream(requests(camera)):
                assert not answer.error_code, answer.error_message
                frame = frames[(camera + answer.frame_id) % len(frames)]
                assert_same_answer("detect", answer.result, expected[frame.name], f"stream {camera}")
                answered += 1
            return answered

        assert await asyncio.gather(*(stream(stub, camera) for camera in range(8))) == [12] * 8


def with_categories(archive: Path, target: Path, categories: list[dict[str, str]]) -> bytes:
    """``archive`` with its model.json's categories replaced."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as out:
        manifest = json.loads(source.read("model.json"))
        out.writestr("model.json", json.dumps({**manifest, "categories": categories}))
        out.writestr("model.onnx", source.read("model.onnx"))
    return target.read_bytes()


async def upload(port: int, data: bytes) -> model_service_pb2.UploadModelResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        header = model_service_pb2.UploadModelHeader(ref=REF, format="onnx", blob=blob)

        async def parts() -> AsyncIterator[model_service_pb2.UploadModelRequest]:
            yield model_service_pb2.UploadModelRequest(header=header)
            for offset in range(0, len(data), CHUNK_BYTES):  # in the contract's chunks, as every client sends
                chunk = transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + CHUNK_BYTES])
                yield model_service_pb2.UploadModelRequest(chunk=chunk)

        return await model_service_pb2_grpc.ModelServiceStub(channel).UploadModel(parts())


async def test_a_model_json_with_the_wrong_class_count_is_refused_on_upload_and_at_load(
    exports: Exports, hub: Hub, tmp_path: Path
) -> None:
    archive = imported(exports, "detect_static", tmp_path)
    three = [{"id": n, "name": n, "type": "box"} for n in ("red", "blue", "green")]
    wrong = tmp_path / "wrong.zip"
    data = with_categories(archive, wrong, three)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(hub.settings.port, data)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    reason = "model.json has 3 categories; output 'output0' (float32 1x6x525) holds 2 classes"
    assert reason in (refused.value.details() or "")
    assert (await upload(hub.settings.port, archive.read_bytes())).model.version == "1.0"  # the right one passes

    # A detector given it directly refuses it at load with the same reason, and serves its other model.
    async with serving(tmp_path, f"good={archive},wrong={wrong}") as (stub, servicer):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Detect(
                pb.DetectRequest(image=image(exports.frames()[0]), options=pb.DetectOptions(model="wrong"))
            )
        assert failed.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "model 'wrong' did not load" in (failed.value.details() or "")
        assert reason in (failed.value.details() or "")
        good = await stub.Detect(
            pb.DetectRequest(image=image(exports.frames()[0]), options=pb.DetectOptions(model="good"))
        )
        assert good.model == "good"
        assert REGISTRY.get_sample_value("visionloop_detector_model_load_failed", {"model": "wrong"}) == 1
        assert REGISTRY.get_sample_value("visionloop_detector_model_load_failed", {"model": "good"}) == 0
        loaded = await stub.ListLoadedModels(pb.ListLoadedModelsRequest())
        assert [m.name for m in loaded.models] == ["good"]
        status = servicer.node_status()  # what the hub's node registry lists
        assert status.state == node_pb2.NODE_STATE_DEGRADED
        assert [(e.key, reason in e.message) for e in status.errors] == [("model_load", True)]


async def test_import_uploads_and_deploys_in_one_command(exports: Exports, hub: Hub, tmp_path: Path) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
        projects = project_grpc.ProjectServiceStub(channel)
        red = await projects.CreateCategory(
            project_pb.CreateCategoryRequest(
                ref=REF, category=category_pb2.Category(name="red", type=category_pb2.CATEGORY_TYPE_BOX)
            )
        )
    command = ["models", "import", str(exports.onnx("detect_dynamic")), "--deploy"]
    done = await asyncio.to_thread(run_cli, command, tmp_path, hub.settings.port)  # the hub runs on this loop
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "uploaded 1.0 (onnx): detect, 2 classes (red, blue), input any size (stride 32, up to 160x160), any batch",
        "deployed 1.0 (pinned)",
    ]
    server, port = await start_detector(settings_for(hub, tmp_path / "detector"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await version_served(stub, "1.0", within=60)
            expected = exports.predictions["detect_dynamic"]
            for frame in exports.frames():
                response = await stub.Detect(pb.DetectRequest(image=image(frame)))
                assert_same_answer("detect", response, expected[frame.name], frame.name)
                # Class names the project knows answer with its category ids, the others with their names.
                for box in response.detections.boxes:
                    assert box.category_id == (red.category.id if box.category_name == "red" else box.category_name)
    finally:
        await server.stop(0)


def test_an_onnx_file_without_ultralytics_metadata_is_refused_with_the_reason(tmp_path: Path) -> None:
    from visionloop.testing.synthetic.models import yolov8_stub

    done = run_cli(
        ["models", "import", str(yolov8_stub(tmp_path / "stub.onnx")), "--output", str(tmp_path / "x.zip")], tmp_path
    )
    assert done.returncode == 1
    assert "has no Ultralytics metadata (names, imgsz, task): write its model.json yourself" in done.stderr
    assert not (tmp_path / "x.zip").exists()
