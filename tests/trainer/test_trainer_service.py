"""The trainer service against a real hub: claims, the state machine, uploads, control, crashes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from prometheus_client import REGISTRY

from tests.detector.conftest import REF
from tests.trainer.conftest import IMAGES, Project, TrainerProcess, trainer_settings
from visionloop.common.v1 import training_pb2 as t
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    training_service_pb2,
)
from visionloop.runtime.server import GrpcServer
from visionloop.server.trainer import app as trainer_app
from visionloop.server.trainer import data
from visionloop.server.trainer.hub_client import TrainerHub
from visionloop.server.trainer.plugin import CategoryInfo
from visionloop.trainer.v1 import trainer_service_pb2 as pb
from visionloop.trainer.v1 import trainer_service_pb2_grpc


async def models(project: Project) -> list[tuple[str, list[str]]]:
    stub = model_service_pb2_grpc.ModelServiceStub(project.channel)
    listed = await stub.ListModels(model_service_pb2.ListModelsRequest(ref=REF))
    return sorted((m.version, sorted(m.formats)) for m in listed.models)


async def detections(project: Project, image_id: str, version: str) -> int:
    stub = annotation_service_pb2_grpc.AnnotationServiceStub(project.channel)
    found = await stub.GetDetections(
        annotation_service_pb2.GetDetectionsRequest(ref=REF, image_id=image_id, model_version=version)
    )
    return len(found.detections.boxes) + len(found.detections.points)


async def empty(folder: Path, within: float = 10) -> bool:
    """Whether ``folder`` is (or becomes, shortly after the hub heard the end) empty."""

    def is_empty() -> bool:
        return not folder.exists() or not any(folder.iterdir())

    for _ in range(int(within * 10)):
        if await asyncio.to_thread(is_empty):
            return True
        await asyncio.sleep(0.1)
    return False


async def running_epoch(project: Project, training_id: str, epoch: int, within: float = 120) -> t.Training:
    return await project.wait_for(
        training_id,
        lambda x: x.status.state == t.TRAINING_STATE_TRAINING_RUNNING and x.status.epoch >= epoch,
        within,
    )


async def epoch_logged(process: TrainerProcess, epoch: int, within: float = 120) -> int:
    """The first epoch >= ``epoch`` the trainer process logged as finished."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        text = await asyncio.to_thread(process.log.read_text) if process.log.exists() else ""
        for line in text.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "epoch finished" and event.get("epoch", 0) >= epoch:
                    return int(event["epoch"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"the trainer never logged epoch {epoch}; log:\n{process.log.read_text()[-2000:]}")


async def start_trainer(project: Project, folder: Path, **overrides: object) -> GrpcServer:
    settings = trainer_settings(project, folder, **overrides)
    server = GrpcServer(trainer_app.create(settings), settings)
    await server.start()
    return server


async def test_a_training_runs_every_state_and_publishes(project: Project, tmp_path: Path) -> None:
    succeeded = REGISTRY.get_sample_value("visionloop_trainer_trainings_total", {"phase": "SUCCEEDED"}) or 0
    trainer = await start_trainer(project, tmp_path / "trainer", keep_old_trainings=True)
    try:
        created = await project.create_training(epochs=12)
        done = await project.ended(created.id)
    finally:
        await trainer.stop(0)
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED, done
    assert done.result_model_version == "1.0"
    status = done.status
    assert status.state == t.TRAINING_STATE_READY_FOR_CLEANUP
    assert (status.epoch, status.total_epochs) == (12, 12)
    counts = status.image_counts
    assert counts.train + counts.test == IMAGES
    assert counts.test > 0
    assert counts.skipped == 0
    assert not status.errors

    metrics = status.confusion_matrix.metrics
    assert [c.category_name for c in metrics.classes] == ["weed", "stem"]
    assert all(c.category_id == project.categories[c.category_name].id for c in metrics.classes)
    weed = metrics.classes[0]
    assert weed.tp + weed.fn > 0
    assert metrics.image_count == counts.test

    assert await models(project) == [("1.0", ["onnx", "pytorch"])]
    stub = model_service_pb2_grpc.ModelServiceStub(project.channel)
    info = (
        await stub.GetModel(
            model_service_pb2.GetModelRequest(key=model_service_pb2.ModelKey(ref=REF, version="1.0"), format="onnx")
        )
    ).model
    assert info.training_id == created.id
    assert info.variant == "centernet_small"
    assert info.metrics.map50 == pytest.approx(metrics.map50)

    # Detections of the new model went to every image, for review and ranking.
    counts_found = [await detections(project, image_id, "1.0") for image_id in project.image_ids]
    assert sum(counts_found) > 0

    # The trainer dashboard's metrics moved with it.
    assert REGISTRY.get_sample_value("visionloop_trainer_trainings_total", {"phase": "SUCCEEDED"}) == succeeded + 1
    assert REGISTRY.get_sample_value("visionloop_trainer_epoch") == 12
    assert REGISTRY.get_sample_value("visionloop_trainer_map50") == pytest.approx(metrics.map50)

    # KEEP_OLD_TRAININGS: the folder moved aside instead of being deleted.
    assert await empty(tmp_path / "trainer" / "trainings")
    assert (tmp_path / "trainer" / "old_trainings" / created.id / "training.json").is_file()


async def test_stop_keeps_and_uploads_the_best_model(project: Project, trainer: GrpcServer) -> None:
    created = await project.create_training(epochs=1000)
    await running_epoch(project, created.id, 2)
    stopped = await project.trainings.StopTraining(training_service_pb2.StopTrainingRequest(training_id=created.id))
    assert stopped.training.stop_requested
    done = await project.ended(created.id)
    assert done.phase == t.TRAINING_PHASE_STOPPED, done
    assert 2 <= done.status.epoch < 1000
    assert done.result_model_version == "1.0"
    assert await models(project) == [("1.0", ["onnx", "pytorch"])]
    assert await detections(project, project.image_ids[0], "1.0") == 0  # a stop skips detections


async def test_abort_uploads_nothing_and_leaves_no_files(project: Project, tmp_path: Path) -> None:
    trainer = await start_trainer(project, tmp_path / "trainer")
    try:
        created = await project.create_training(epochs=1000)
        await running_epoch(project, created.id, 1)
        assert any((tmp_path / "trainer" / "trainings" / created.id).rglob("*.pt"))  # checkpoints exist
        async with grpc.aio.insecure_channel(f"127.0.0.1:{trainer.port}") as channel:
            local = trainer_service_pb2_grpc.TrainerServiceStub(channel)
            answer = await local.AbortTraining(pb.AbortTrainingRequest())
            assert answer.training.id == created.id
            done = await project.ended(created.id)
            assert done.phase == t.TRAINING_PHASE_ABORTED
            assert await models(project) == []
            assert await empty(tmp_path / "trainer" / "trainings")
            idle = await local.GetTrainerStatus(pb.GetTrainerStatusRequest())
            assert not idle.HasField("training")
    finally:
        await trainer.stop(0)


async def test_a_step_that_keeps_failing_is_retried_then_fails_the_training(project: Project, tmp_path: Path) -> None:
    trainer = await start_trainer(
        project, tmp_path / "trainer", trainer_plugin="tests.trainer.plugins:BrokenTrainer", max_step_attempts=3
    )
    try:
        created = await project.create_training()
        done = await project.ended(created.id)
    finally:
        await trainer.stop(0)
    assert done.phase == t.TRAINING_PHASE_FAILED
    errors = done.status.errors
    assert [(e.state, e.attempts, e.critical) for e in errors] == [
        (t.TRAINING_STATE_TRAINING_RUNNING, 1, False),
        (t.TRAINING_STATE_TRAINING_RUNNING, 2, False),
        (t.TRAINING_STATE_TRAINING_RUNNING, 3, True),
    ]
    assert "illegal memory access" in errors[-1].message
    assert await models(project) == []
    assert await empty(tmp_path / "trainer" / "trainings")


async def test_a_plugin_that_cannot_train_fails_the_training_at_once(project: Project, tmp_path: Path) -> None:
    trainer = await start_trainer(
        project, tmp_path / "trainer", trainer_plugin="tests.trainer.plugins:MisconfiguredTrainer", max_step_attempts=3
    )
    try:
        created = await project.create_training()
        done = await project.ended(created.id)
    finally:
        await trainer.stop(0)
    assert done.phase == t.TRAINING_PHASE_FAILED
    # One critical error with the plug-in's own words: no retries, no exception class name.
    errors = [(e.state, e.attempts, e.critical, e.message) for e in done.status.errors]
    reason = "the base model is a reference-detector; this trainer continues only its own models"
    assert errors == [(t.TRAINING_STATE_TRAINING_RUNNING, 1, True, reason)]
    assert await models(project) == []


async def test_rejected_hyperparameters_end_the_training_at_once(project: Project, tmp_path: Path) -> None:
    # Queued before any trainer declared the variant to the hub: only the trainer can check it.
    created = await project.create_training(epochs=0, learning_rate="fast")
    trainer = await start_trainer(project, tmp_path / "trainer")
    try:
        done = await project.ended(created.id)
    finally:
        await trainer.stop(0)
    assert done.phase == t.TRAINING_PHASE_FAILED
    (error,) = done.status.errors
    assert error.critical
    assert error.state == t.TRAINING_STATE_DATA_DOWNLOADING
    assert "learning_rate must be a number, got 'fast'" in error.message
    assert "epochs must be between 1 and 10000, got 0" in error.message


async def test_trainer_rpcs(trainer: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{trainer.port}") as channel:
        stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
        (variant,) = (await stub.ListModelVariants(pb.ListModelVariantsRequest())).variants
        assert variant.name == "centernet_small"
        assert list(variant.formats) == ["pytorch", "onnx"]
        assert set(variant.category_types) == {"box", "point"}
        assert variant.default_hyperparameters["epochs"] > 0

        values = struct_pb2.Struct()
        values.update({"resolution": 300, "epochs": 5, "colour": "blue"})
        answer = await stub.VerifyHyperparameters(pb.VerifyHyperparametersRequest(hyperparameters=values))
        assert answer.valid
        assert not answer.errors
        assert answer.corrected["resolution"] == 304
        assert answer.corrected["epochs"] == 5
        assert any("colour" in w for w in answer.warnings)
        assert any("multiple of 16" in w for w in answer.warnings)

        values.update({"epochs": 2.5, "learning_rate": 7})
        answer = await stub.VerifyHyperparameters(pb.VerifyHyperparametersRequest(hyperparameters=values))
        assert not answer.valid
        assert any("epochs must be an integer, got 2.5" in e for e in answer.errors)
        assert any("learning_rate must be between" in e for e in answer.errors)

        unknown = await stub.VerifyHyperparameters(pb.VerifyHyperparametersRequest(model_variant="yolo-xxl"))
        assert not unknown.valid
        assert "centernet_small" in unknown.errors[0]

        status = await stub.GetTrainerStatus(pb.GetTrainerStatusRequest())
        assert status.node.node_id.startswith("trainer-")
        assert "centernet_small" in status.node.capabilities
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.StopTraining(pb.StopTrainingRequest())
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "idle" in (caught.value.details() or "")


async def test_undecodable_images_are_skipped_and_counted(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "training"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / project.image_ids[0]).write_bytes(b"\xff\xd8 not really a jpeg")  # a damaged download
    settings = trainer_settings(project, tmp_path / "trainer")
    hub = TrainerHub(settings, "trainer-test", timedelta(seconds=30))
    categories = [
        CategoryInfo(c.id, c.name, "box" if c.name == "weed" else "point") for c in project.categories.values()
    ]
    try:
        result = await asyncio.to_thread(data.download, hub, folder, categories, lambda _: None)
    finally:
        hub.close()
    assert result.skipped == 1
    assert len(result.train) + len(result.test) == IMAGES - 1
    assert project.image_ids[0] not in {i.id for i in result.train + result.test}
    assert sum(len(i.annotations) for i in result.train) > 0
    reloaded = data.load(folder)
    assert reloaded == result


@pytest.mark.slow
async def test_kill_9_while_running_resumes_from_the_last_checkpoint(project: Project, tmp_path: Path) -> None:
    """kill -9 mid-training → restart → continues after the last epoch and ends as good as a clean run."""
    process = TrainerProcess(project, tmp_path / "trainer")
    process.start()
    try:
        created = await project.create_training(epochs=16)
        # From the trainer's own log, not the hub: epochs reach the hub every 2 s at most, and on an
        # idle machine 16 small epochs can all pass between two reports.
        killed_at = await epoch_logged(process, 5)
        process.kill()
        process.start()
        done = await project.ended(created.id, within=240)
    finally:
        process.stop()
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED, done
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line.startswith("{")]
    resumed = [x for x in lines if x.get("event") == "resuming training"]
    assert len(resumed) == 1
    after = [x["epoch"] for x in lines[lines.index(resumed[0]) :] if x.get("event") == "epoch finished"]
    assert after, "the resumed run trained no epoch"
    assert after[0] >= max(killed_at - 1, 2), after  # the first epoch after the crash is not epoch 1
    assert after[-1] == 16

    # The same training, uninterrupted, reaches the same quality.
    clean = TrainerProcess(project, tmp_path / "clean")
    clean.start()
    try:
        again = await project.create_training(epochs=16)
        reference = await project.ended(again.id, within=240)
    finally:
        clean.stop()
    got, want = done.status.confusion_matrix.metrics, reference.status.confusion_matrix.metrics
    assert got.map50 == pytest.approx(want.map50, abs=0.02), (got, want)
    assert await models(project) == [("1.0", ["onnx", "pytorch"]), ("1.1", ["onnx", "pytorch"])]


@pytest.mark.slow
def _hanging_in_the_onnx_export(project: Project, tmp_path: Path) -> tuple[TrainerProcess, Path]:
    """A trainer that uploads pytorch, then hangs in the onnx export, touching the returned marker."""
    marker = tmp_path / "hanging"
    env = {"TRAINER_PLUGIN": "tests.trainer.plugins:HangingExportTrainer", "VISIONLOOP_TEST_HANG_MARKER": str(marker)}
    return TrainerProcess(project, tmp_path / "trainer", env), marker


async def _reached(marker: Path) -> None:
    for _ in range(1200):
        if await asyncio.to_thread(marker.exists):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the trainer never reached the onnx export")


async def test_kill_9_during_model_upload_publishes_one_version(project: Project, tmp_path: Path) -> None:
    hanging, marker = _hanging_in_the_onnx_export(project, tmp_path)
    hanging.start()
    try:
        created = await project.create_training(epochs=3)
        await _reached(marker)
        assert await models(project) == [("1.0", ["pytorch"])]  # pytorch went out, onnx did not
        hanging.kill()
    finally:
        hanging.stop()
    healthy = TrainerProcess(project, tmp_path / "trainer")
    healthy.start()
    try:
        done = await project.ended(created.id, within=240)
    finally:
        healthy.stop()
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED
    assert done.result_model_version == "1.0"
    assert await models(project) == [("1.0", ["onnx", "pytorch"])]  # one version, both formats


def _publish_onnx_as_the_converter_would(project: Project, version: str, work: Path) -> None:
    """The converter's part: the onnx format of ``version``, made from its pytorch upload."""
    from visionloop.lib.archives import safe_extract
    from visionloop.lib.centernet.artifacts import pytorch_to_onnx
    from visionloop.lib.model_format.model_json import pack

    client = project.client()
    try:
        safe_extract(client.download_model(version, "pytorch", work / "pytorch.zip"), work / "pytorch")
        pytorch_to_onnx(work / "pytorch", work / "onnx")
        client.upload_model(pack(work / "onnx", work / "onnx.zip"), "onnx", version=version)
    finally:
        client.close()


async def test_a_format_published_before_the_trainer_uploads_it_counts_as_uploaded(
    project: Project, tmp_path: Path
) -> None:
    # The converter turns the pytorch upload into onnx while the trainer still exports its own onnx (in
    # one process they take turns at torch.onnx.export): the trainer's upload then meets ALREADY_EXISTS,
    # as it does after a kill -9 between an upload and recording it. Either way the format is there.
    hanging, marker = _hanging_in_the_onnx_export(project, tmp_path)
    hanging.start()
    try:
        created = await project.create_training(epochs=3)
        await _reached(marker)
        (tmp_path / "converter").mkdir()
        await asyncio.to_thread(_publish_onnx_as_the_converter_would, project, "1.0", tmp_path / "converter")
        assert await models(project) == [("1.0", ["onnx", "pytorch"])]
        hanging.kill()
    finally:
        hanging.stop()
    healthy = TrainerProcess(project, tmp_path / "trainer")
    healthy.start()
    try:
        done = await project.ended(created.id, within=240)
    finally:
        healthy.stop()
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED, [e.message for e in done.status.errors]
    assert not done.status.errors
    assert done.result_model_version == "1.0"
    assert await models(project) == [("1.0", ["onnx", "pytorch"])]


async def test_a_training_continues_from_a_base_model(project: Project, trainer: GrpcServer) -> None:
    first = await project.ended((await project.create_training(epochs=3)).id)
    assert first.result_model_version == "1.0"
    values = struct_pb2.Struct()
    values.update({"resolution": 160, "epochs": 2, "batch_size": 8, "width": 8})
    spec = t.TrainingSpec(hyperparameters=values, base_model_version="1.0")
    created = (
        await project.trainings.CreateTraining(training_service_pb2.CreateTrainingRequest(ref=REF, spec=spec))
    ).training
    done = await project.ended(created.id)
    assert done.phase == t.TRAINING_PHASE_SUCCEEDED, done
    stub = model_service_pb2_grpc.ModelServiceStub(project.channel)
    key = model_service_pb2.ModelKey(ref=REF, version=done.result_model_version)
    lineage = await stub.GetModelLineage(model_service_pb2.GetModelLineageRequest(key=key))
    assert [m.version for m in lineage.models] == ["1.1", "1.0"]
    # It measured the base model too, on its own held-out images (the same as the first training's here),
    # for the hub's promotion gate: the base model's figure comes back.
    trained, base = lineage.models
    [baseline] = trained.metrics.baselines
    assert baseline.version == "1.0"
    assert trained.metrics.held_out_digest == base.metrics.held_out_digest != ""
    assert (baseline.map50, baseline.map50_95) == pytest.approx((base.metrics.map50, base.metrics.map50_95))


@pytest.mark.slow
async def test_restart_after_training_exits_cleanly(project: Project, tmp_path: Path) -> None:
    """RESTART_AFTER_TRAINING: the process ends (exit 0) after a training, for a supervisor to restart."""
    process = TrainerProcess(project, tmp_path / "trainer", {"RESTART_AFTER_TRAINING": "true"})
    process.start()
    try:
        created = await project.create_training(epochs=2)
        done = await project.ended(created.id)
        assert done.phase == t.TRAINING_PHASE_SUCCEEDED
        assert process.process is not None
        code = await asyncio.to_thread(process.process.wait, 60)
    finally:
        process.stop()
    assert code == 0
