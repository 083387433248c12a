"""The Ultralytics trainer plug-in in the real trainer service: ``visionloop serve trainer`` run from
.venv-ultralytics with ``TRAINER_PLUGIN`` set, against a real hub, killed with SIGKILL mid-training
and started again; the training resumes from Ultralytics' own checkpoint, ends, publishes a dynamic
ONNX export with its model.json, and a real detector following the hub serves it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from tests.detector.conftest import REF, settings_for, start_detector, version_served
from tests.trainer.conftest import Project, TrainerProcess
from tests.ultralytics.conftest import OUTLINED, PYTHON
from visionloop.common.v1 import image_pb2
from visionloop.common.v1 import training_pb2 as t
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import model_service_pb2, model_service_pb2_grpc, training_service_pb2
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import jpeg

pytestmark = [
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not PYTHON.exists(), reason=f"{PYTHON} is missing (scripts/bootstrap builds it)"),
]
DETECT, SEGMENT = "ultralytics-detect", "ultralytics-segment"
PLUGIN = "visionloop.server.trainer.ultralytics_plugin:UltralyticsTrainer"
# yolov8n from its yaml on the fixture's 160x120 frames, a step per batch: about a second an epoch
# on two cores, and objects found after twenty.
SMALL = {"model": "yolov8n.yaml", "resolution": 160, "epochs": 20, "batch_size": 4, "nominal_batch_size": 4, "seed": 1}
SMALL_SEGMENT = {**SMALL, "model": "yolov8n-seg.yaml"}


def events(process: TrainerProcess) -> list[dict[str, object]]:
    text = process.log.read_text() if process.log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def logged(process: TrainerProcess, event: str, within: float = 600) -> dict[str, object]:
    """The first ``event`` in the trainer's log (waiting at most ``within`` seconds for it)."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        found = [e for e in await asyncio.to_thread(events, process) if e.get("event") == event]
        if found:
            return found[0]
        assert process.process is not None
        assert process.process.poll() is None, process.log.read_text()[-4000:]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the trainer never logged {event!r}; log:\n{process.log.read_text()[-4000:]}")


async def create_training(
    project: Project, variant: str = DETECT, hyperparameters: dict[str, object] = SMALL, base: str = ""
) -> t.Training:
    values = struct_pb2.Struct()
    values.update(hyperparameters)
    spec = t.TrainingSpec(model_variant=variant, hyperparameters=values, base_model_version=base)
    request = training_service_pb2.CreateTrainingRequest(ref=REF, spec=spec)
    return (await project.trainings.CreateTraining(request)).training


def plugin_env(tmp_path: Path) -> dict[str, str]:
    return {"TRAINER_PLUGIN": PLUGIN, "YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"), "TRAINER_LEASE_SECONDS": "30"}


async def detect_once(project: Project, folder: Path, version: str) -> pb.DetectResponse:
    """A detector following the hub, once it serves ``version``: its answer on a synthetic frame."""
    server, port = await start_detector(settings_for(project.hub, folder))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await version_served(stub, version, within=120)
            frame = world.generate_samples(1, seed=5, config=world.WorldConfig(width=160, height=120))[0]
            image = image_pb2.Image(encoded=jpeg(frame))
            return await stub.Detect(pb.DetectRequest(image=image, options=pb.DetectOptions(score_threshold=0.01)))
    finally:
        await server.stop(0)


async def test_trains_survives_kill_9_and_the_detector_serves_the_model(project: Project, tmp_path: Path) -> None:
    process = TrainerProcess(project, tmp_path / "trainer", plugin_env(tmp_path), python=str(PYTHON))
    process.start()
    try:
        created = await create_training(project)
        first = await logged(process, "epoch finished")
        process.kill()  # SIGKILL after the first epoch, before the last
        assert first["epoch"] < SMALL["epochs"], first
        process.start()
        resumed = await logged(process, "resuming Ultralytics training")
        done = await project.ended(created.id, within=900)
    finally:
        process.stop()
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED, done
    assert resumed["epoch"] > first["epoch"], (first, resumed)  # went on from the checkpoint, not epoch 1
    assert (done.status.epoch, done.status.total_epochs) == (20, 20)
    # Each epoch reports Ultralytics' own validation mAP@0.5; the trainer then measures the best model.
    epochs = [e for e in events(process) if e.get("event") == "epoch finished"]
    assert [e["epoch"] for e in epochs][-1] == 20
    assert all(isinstance(e["map50"], float) for e in epochs), epochs
    assert done.status.confusion_matrix.metrics.image_count == done.status.image_counts.test > 0
    assert not [e for e in done.status.errors if e.critical], done.status.errors

    models = model_service_pb2_grpc.ModelServiceStub(project.channel)
    listed = (await models.ListModels(model_service_pb2.ListModelsRequest(ref=REF))).models
    assert [(m.version, sorted(m.formats)) for m in listed] == [("1.0", ["onnx", "pytorch"])]

    # A detector following the hub downloads the ONNX export and answers with it.
    answer = await detect_once(project, tmp_path / "detector", "1.0")
    assert answer.model_version == "1.0"
    found = answer.detections
    assert len(found.boxes) + len(found.points) > 0, ([e["map50"] for e in epochs], answer)


def epoch_scores(process: TrainerProcess, training_id: str) -> list[float]:
    """Ultralytics' validation mAP@0.5 after each epoch of one training, from the trainer's log."""
    found = [e for e in events(process) if e.get("event") == "epoch finished" and e["training_id"] == training_id]
    return [float(e["map50"]) for e in found]  # type: ignore[arg-type]


async def test_segmentation_model_is_served_and_the_next_training_continues_from_it(
    segment_project: Project, tmp_path: Path
) -> None:
    """yolov8n-seg from its yaml on weeds outlined by polygons: trained and exported by the trainer
    service, published, and answered by a detector as segmentations (outline, mask and box). A
    second training given it as its base model starts from its weights."""
    process = TrainerProcess(segment_project, tmp_path / "trainer", plugin_env(tmp_path), python=str(PYTHON))
    process.start()
    try:
        created = await create_training(segment_project, SEGMENT, SMALL_SEGMENT)
        done = await segment_project.ended(created.id, within=900)
        assert done.phase == t.TRAINING_PHASE_SUCCEEDED, (done, process.log.read_text()[-4000:])
        answer = await detect_once(segment_project, tmp_path / "detector", "1.0")
        continued = await create_training(segment_project, SEGMENT, {**SMALL_SEGMENT, "epochs": 2}, base="1.0")
        second = await segment_project.ended(continued.id, within=900)
    finally:
        process.stop()
    assert (done.status.epoch, done.status.total_epochs) == (20, 20)
    assert done.status.confusion_matrix.metrics.map50 > 0, done.status.confusion_matrix.metrics
    assert not [e for e in done.status.errors if e.critical], done.status.errors

    found = answer.detections
    assert not found.boxes, answer
    assert not found.points, answer
    assert found.segmentations, answer
    weed = segment_project.categories[OUTLINED].id
    for segmentation in found.segmentations:
        assert segmentation.category_id == weed
        assert len(segmentation.polygon.points) >= 3 or segmentation.mask.ByteSize(), segmentation
        assert segmentation.bounding_box.width > 0, segmentation
        assert segmentation.bounding_box.height > 0, segmentation

    # From scratch the first epoch finds nothing; from the base model it scores near the base.
    scratch, continuation = epoch_scores(process, created.id), epoch_scores(process, continued.id)
    assert second.phase == t.TRAINING_PHASE_SUCCEEDED, (second, process.log.read_text()[-4000:])
    assert len(continuation) == 2, continuation
    assert continuation[0] > scratch[0] + 0.3, (scratch, continuation)
    assert continuation[0] > scratch[-1] / 2, (scratch, continuation)
    # The trainer measured the base model on the same held-out images (the plug-in ran it too).
    baselines = second.status.confusion_matrix.metrics.baselines
    assert [b.version for b in baselines] == ["1.0"], second.status.confusion_matrix.metrics
    assert baselines[0].map50 > 0, second.status.confusion_matrix.metrics

    models = model_service_pb2_grpc.ModelServiceStub(segment_project.channel)
    listed = (await models.ListModels(model_service_pb2.ListModelsRequest(ref=REF))).models
    assert sorted((m.base_model_version, sorted(m.formats)) for m in listed) == [
        ("", ["onnx", "pytorch"]),
        ("1.0", ["onnx", "pytorch"]),
    ], listed
