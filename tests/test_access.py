"""Least privilege against real servers: each node kind's token allows what that kind calls and no
more, operators change shared state and robots cannot, and a token limited to a project stays in it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from visionloop.annotator.v1 import annotator_service_pb2 as annotator_pb
from visionloop.annotator.v1 import annotator_service_pb2_grpc
from visionloop.client.channel import ChannelConfig, create_aio_channel
from visionloop.client.images import to_image
from visionloop.common.v1 import (
    annotation_pb2,
    category_pb2,
    detection_pb2,
    geometry_pb2,
    image_pb2,
    node_pb2,
    training_pb2,
    transfer_pb2,
)
from visionloop.converter.v1 import converter_service_pb2 as converter_pb
from visionloop.converter.v1 import converter_service_pb2_grpc
from visionloop.detector.v1 import detector_service_pb2 as det
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import (
    annotation_service_pb2,
    annotation_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    node_service_pb2,
    node_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    training_service_pb2,
    training_service_pb2_grpc,
)
from visionloop.runtime.access import Scope, token_entry
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.presence import Presence
from visionloop.runtime.server import GrpcServer
from visionloop.server.annotator import app as annotator_app
from visionloop.server.annotator.config import AnnotatorSettings
from visionloop.server.annotator.hub_client import AnnotatorHub
from visionloop.server.annotator.preannotate import DeployedModel
from visionloop.server.converter import app as converter_app
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.hub_client import ConverterHub
from visionloop.server.detector import app as detector_app
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.hub import app as hub_app
from visionloop.server.hub.config import LoopSettings
from visionloop.server.trainer.hub_client import TrainerHub
from visionloop.testing.frames import frame, jpeg
from visionloop.testing.synthetic.models import model_zip

WEEDS = project_service_pb2.ProjectRef(organization="acme", project="weeds")
OTHER = project_service_pb2.ProjectRef(organization="acme", project="other")
FOREIGN = project_service_pb2.ProjectRef(organization="beta", project="field")

ADMIN, OPERATOR, ROBOT, ANNOTATOR = "adm-7f3a0c", "ope-21b9d4", "rob-91cc0e", "ann-5d2f77"
DETECTOR, TRAINER, CONVERTER, ANNOTATOR_NODE = "det-0b77e1", "tra-c4a902", "con-8e13f5", "ano-66d0a8"
WEEDS_ANNOTATOR, ACME_OPERATOR, OTHER_ROBOT, ACME_ADMIN = "wan-3a9c11", "aop-f0e2b7", "oro-12de43", "aad-77b1c0"
WEEDS_OPERATOR = "wop-40c9e5"
ACCEPTED = ",".join(
    [
        token_entry("admin", ADMIN),  # digests and plain tokens mix
        f"operator={OPERATOR}",
        f"robot={ROBOT}",
        f"annotator={ANNOTATOR}",
        token_entry("detector_node", DETECTOR, Scope("acme", "weeds")),
        f"trainer_node@acme/weeds={TRAINER}",
        token_entry("converter_node", CONVERTER),
        f"annotator_node={ANNOTATOR_NODE}",
        f"annotator@acme/weeds={WEEDS_ANNOTATOR}",
        f"operator@acme={ACME_OPERATOR}",
        f"robot@acme/other={OTHER_ROBOT}",
        f"admin@acme={ACME_ADMIN}",
        f"operator@acme/weeds={WEEDS_OPERATOR}",
    ]
)
DENIED = grpc.StatusCode.PERMISSION_DENIED


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def peer(port: int, token: str, ref: project_service_pb2.ProjectRef = WEEDS) -> PeerSettings:
    return PeerSettings(
        loop_host=f"127.0.0.1:{port}", loop_token=token, loop_organization=ref.organization, loop_project=ref.project
    )


def model_upload(data: bytes, ref: project_service_pb2.ProjectRef, fmt: str = "onnx") -> list[Any]:
    blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    header = model_service_pb2.UploadModelHeader(ref=ref, format=fmt, blob=blob)
    return [
        model_service_pb2.UploadModelRequest(header=header),
        model_service_pb2.UploadModelRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data)),
    ]


def annotated_image(seed: int) -> image_service_pb2.ImageUpload:
    pixels = frame(squares=((100 + seed, 120, 96, "red"),))
    box = annotation_pb2.Annotation(
        category_name="red",
        shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=100 + seed, y=120, width=96, height=96)),
        creator=annotation_pb2.Creator(person="anna"),
    )
    metadata = image_pb2.ImageMetadata(state=image_pb2.IMAGE_STATE_COMPLETE)
    return image_service_pb2.ImageUpload(data=jpeg(pixels), metadata=metadata, annotations=[box])


@dataclass
class SecuredHub:
    port: int
    channel: grpc.aio.Channel  # calls name their token
    images: dict[str, str]  # project -> an image id
    trainings: dict[str, str]  # project -> a queued training id
    model_zip: Path

    @property
    def projects(self) -> project_service_pb2_grpc.ProjectServiceStub:
        return project_service_pb2_grpc.ProjectServiceStub(self.channel)

    @property
    def image_stub(self) -> image_service_pb2_grpc.ImageServiceStub:
        return image_service_pb2_grpc.ImageServiceStub(self.channel)

    @property
    def models(self) -> model_service_pb2_grpc.ModelServiceStub:
        return model_service_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def training_stub(self) -> training_service_pb2_grpc.TrainingServiceStub:
        return training_service_pb2_grpc.TrainingServiceStub(self.channel)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[SecuredHub]:
    """A hub with auth on, projects acme/weeds, acme/other and beta/field, each with an annotated
    image, a model (1.0, ONNX) and a queued training."""
    settings = LoopSettings(port=0, host="127.0.0.1", data_dir=tmp_path / "hub", auth_tokens=ACCEPTED)
    server = GrpcServer(hub_app.create(settings), settings)
    port = await server.start()
    data = model_zip(tmp_path / "model.zip").read_bytes()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        secured = SecuredHub(port, channel, {}, {}, tmp_path / "model.zip")
        admin = bearer(ADMIN)
        for ref in (WEEDS, OTHER, FOREIGN):
            project = project_service_pb2.Project(ref=ref)
            await secured.projects.CreateProject(
                project_service_pb2.CreateProjectRequest(project=project), metadata=admin
            )
            category = category_pb2.Category(name="red", type=category_pb2.CATEGORY_TYPE_BOX)
            await secured.projects.CreateCategory(
                project_service_pb2.CreateCategoryRequest(ref=ref, category=category), metadata=admin
            )
            stored = await secured.image_stub.UploadImage(
                image_service_pb2.UploadImageRequest(ref=ref, image=annotated_image(0)), metadata=admin
            )
            secured.images[ref.project] = stored.metadata.id
            await secured.models.UploadModel(iter(model_upload(data, ref)), metadata=admin)
            training = await secured.training_stub.CreateTraining(
                training_service_pb2.CreateTrainingRequest(ref=ref, spec=training_pb2.TrainingSpec()), metadata=admin
            )
            secured.trainings[ref.project] = training.training.id
        yield secured
    await server.stop(0)


# --- node kinds -------------------------------------------------------------------------------


async def test_a_detector_token_cannot_upload_models_or_export_images(hub: SecuredHub) -> None:
    data = hub.model_zip.read_bytes()
    assert await code_of(hub.models.UploadModel(iter(model_upload(data, WEEDS)), metadata=bearer(DETECTOR))) is DENIED
    annotations = annotation_service_pb2_grpc.AnnotationServiceStub(hub.channel)
    export = annotation_service_pb2.ExportDatasetRequest(ref=WEEDS, format=annotation_service_pb2.DATASET_FORMAT_COCO)
    for token in (DETECTOR, TRAINER, CONVERTER, ANNOTATOR_NODE):
        call = annotations.ExportDataset(export, metadata=bearer(token))
        assert await code_of(call.read()) is DENIED, token
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await hub.models.UploadModel(iter(model_upload(data, WEEDS)), metadata=bearer(DETECTOR))
    assert "role 'detector_node' may not call visionloop.loop.v1.ModelService/UploadModel" in denied.value.details()
    # What a detector does need: its project (the outbox checks it).
    get = project_service_pb2.GetProjectRequest(ref=WEEDS)
    assert await code_of(hub.projects.GetProject(get, metadata=bearer(DETECTOR))) is grpc.StatusCode.OK


async def test_the_trainer_token_runs_a_training_and_nothing_else(hub: SecuredHub, tmp_path: Path) -> None:
    trainer = TrainerHub(peer(hub.port, TRAINER), "trainer-1", timedelta(minutes=5))
    try:

        def work() -> str:
            training = trainer.claim([])
            assert training is not None
            assert training.id == hub.trainings["weeds"]
            trainer.update(training.id, training_pb2.TrainingStatus(progress=0.5))
            assert [c.name for c in trainer.categories()] == ["red"]
            (image,) = trainer.images([image_pb2.IMAGE_STATE_COMPLETE])
            assert trainer.annotations(image.id)
            assert dict(trainer.download_images([image.id]))[image.id]
            trainer.download_model("1.0", "onnx", tmp_path / "base.zip")
            version = trainer.upload_model(hub.model_zip, "onnx", "").version
            trainer.put_detections(image.id, detection_pb2.Detections())
            finished = trainer.finish(training.id, training_pb2.TRAINING_PHASE_SUCCEEDED, training.status, version)
            return finished.result_model_version

        assert await asyncio.to_thread(work) == "1.1"
    finally:
        trainer.close()
    # Not a trainer's business: conversions, deployments, another project's training.
    claim = model_service_pb2.ClaimConversionRequest(node_id="t", target_formats=["onnx_fp16"], ref=WEEDS)
    assert await code_of(hub.models.ClaimConversion(claim, metadata=bearer(TRAINER))) is DENIED
    get = training_service_pb2.GetTrainingRequest(training_id=hub.trainings["other"])
    assert await code_of(hub.training_stub.GetTraining(get, metadata=bearer(ANNOTATOR))) is grpc.StatusCode.OK
    claim_other = training_service_pb2.ClaimTrainingRequest(node_id="t", ref=OTHER)
    assert await code_of(hub.training_stub.ClaimTraining(claim_other, metadata=bearer(TRAINER))) is DENIED
    claim_any = training_service_pb2.ClaimTrainingRequest(node_id="t")  # a limited token must name its project
    assert await code_of(hub.training_stub.ClaimTraining(claim_any, metadata=bearer(TRAINER))) is DENIED


async def test_the_converter_token_converts_and_nothing_else(hub: SecuredHub, tmp_path: Path) -> None:
    converter = ConverterHub(peer(hub.port, CONVERTER), "converter-1")
    try:
        claim = await converter.claim(["onnx_fp16"], timedelta(minutes=5))
        assert claim is not None
        assert await converter.model(claim.key) is not None
        await converter.download(claim.key, "onnx", tmp_path / "source.zip")
        samples = await converter.samples(claim.key.ref, 1, 1)
        assert len(samples.validation) == 1
        assert samples.validation[0].annotations
        assert (await converter.upload(claim.key, "onnx_fp16", hub.model_zip)).format == "onnx_fp16"
        again = await converter.claim(["onnx_int8"], timedelta(minutes=5), WEEDS)
        assert again is not None
        assert await converter.report_failure(again.conversion_id, "parity check failed", permanent=False)
        events = converter.watch("0", [event_service_pb2.EVENT_TYPE_MODEL_PUBLISHED])
        first = await anext(aiter(events))
        assert first.event.type == event_service_pb2.EVENT_TYPE_MODEL_PUBLISHED
        events.cancel()  # type: ignore[attr-defined]
    finally:
        await converter.close()
    trainings = hub.training_stub
    claim_training = training_service_pb2.ClaimTrainingRequest(node_id="c", ref=WEEDS)
    assert await code_of(trainings.ClaimTraining(claim_training, metadata=bearer(CONVERTER))) is DENIED


async def test_the_annotator_node_token_serves_annotators_and_nothing_else(hub: SecuredHub, tmp_path: Path) -> None:
    annotator = AnnotatorHub(peer(hub.port, ANNOTATOR_NODE))
    try:
        image_id = hub.images["weeds"]
        metadata, data = await annotator.image(WEEDS, image_id)
        assert metadata.id == image_id
        assert data
        assert [c.name for c in await annotator.categories(WEEDS)] == ["red"]
        await annotator.put_detections(WEEDS, image_id, detection_pb2.Detections())
        await annotator.detections(WEEDS, image_id)
        await annotator.queue(WEEDS)
        assert [i.id for i in await annotator.annotated(WEEDS)] == [image_id]
        await annotator.set_priority(WEEDS, image_id, 0.5)
        assert image_id in await annotator.download(WEEDS, [image_id])
        annotation = annotated_image(1).annotations[0]
        annotation.image_id = image_id
        stored = await annotator.create_annotation(WEEDS, annotation)
        # The Label Studio bridge changes and deletes what it wrote, completes images, queues trainings.
        assert [a.id for a in await annotator.list_annotations(WEEDS, image_id)][-1] == stored.id
        assert (await annotator.update_annotation(WEEDS, stored)).id == stored.id
        await annotator.delete_annotation(WEEDS, stored.id)
        await annotator.set_state(WEEDS, image_id, image_pb2.IMAGE_STATE_COMPLETE)
        assert (await annotator.create_training(WEEDS, training_pb2.TrainingSpec())).id
        model = await DeployedModel(annotator, tmp_path / "models").get(WEEDS)  # GetDeployment + DownloadModel
        assert model.version  # an in-process model: nothing to close
        events = event_service_pb2_grpc.EventServiceStub(annotator.channel)
        watch = events.WatchEvents(event_service_pb2.WatchEventsRequest(cursor="0", ref=WEEDS))
        assert (await anext(aiter(watch))).event.cursor
        watch.cancel()
    finally:
        await annotator.close()
    data = hub.model_zip.read_bytes()
    call = hub.models.UploadModel(iter(model_upload(data, WEEDS)), metadata=bearer(ANNOTATOR_NODE))
    assert await code_of(call) is DENIED


async def test_presence_registers_with_each_node_kinds_token(hub: SecuredHub) -> None:
    for token, kind in ((DETECTOR, node_pb2.NODE_TYPE_DETECTOR), (TRAINER, node_pb2.NODE_TYPE_TRAINER)):
        status = node_pb2.NodeStatus(node_id=f"n-{token}", name=token, type=kind, organization="acme", project="weeds")
        presence = Presence(peer(hub.port, token), lambda status=status: status)
        async with create_aio_channel(peer(hub.port, token).channel_config()) as channel:
            stub = node_service_pb2_grpc.NodeServiceStub(channel)
            await presence.beat(stub, 5.0)  # RegisterNode
            assert presence.registered
            await presence.beat(stub, 5.0)  # Heartbeat
            assert presence.registered
    nodes = node_service_pb2_grpc.NodeServiceStub(hub.channel)
    converter = node_pb2.NodeStatus(node_id="n-conv", name="c", type=node_pb2.NODE_TYPE_CONVERTER)  # every project
    register = node_service_pb2.RegisterNodeRequest(status=converter)
    assert await code_of(nodes.RegisterNode(register, metadata=bearer(CONVERTER))) is grpc.StatusCode.OK
    # A token limited to acme/weeds speaks for no other project's node, and sees only its own.
    assert await code_of(nodes.RegisterNode(register, metadata=bearer(DETECTOR))) is DENIED
    listed = await nodes.ListNodes(node_service_pb2.ListNodesRequest(), metadata=bearer(ACME_OPERATOR))
    assert {n.node_id for n in listed.nodes} == {f"n-{DETECTOR}", f"n-{TRAINER}"}
    listed = await nodes.ListNodes(node_service_pb2.ListNodesRequest(), metadata=bearer(OPERATOR))
    assert "n-conv" in {n.node_id for n in listed.nodes}
    get = node_service_pb2.GetNodeRequest(node_id="n-conv")
    assert await code_of(nodes.GetNode(get, metadata=bearer(ACME_OPERATOR))) is DENIED


# --- operators and robots at a detector --------------------------------------------------------


async def served(robot: detector_service_pb2_grpc.DetectorServiceStub, image: image_pb2.Image) -> str:
    """The model version answering once the detector has one (waits up to 30 s)."""
    for _ in range(600):
        try:
            return (await robot.Detect(det.DetectRequest(image=image))).model_version
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
        await asyncio.sleep(0.05)
    raise AssertionError("the detector loaded no model within 30 s")


async def test_detector_node_works_end_to_end_with_its_own_token(hub: SecuredHub, tmp_path: Path) -> None:
    settings = DetectorSettings(
        port=0,
        data_dir=tmp_path / "detector",
        loop_host=f"127.0.0.1:{hub.port}",
        loop_organization="acme",
        loop_project="weeds",
        loop_token=DETECTOR,
        auth_tokens=ACCEPTED,
    )
    server = GrpcServer(detector_app.create(settings), settings)
    port = await server.start()
    try:
        async with create_aio_channel(ChannelConfig(target=f"127.0.0.1:{port}", token=ROBOT)) as robot_channel:
            robot = detector_service_pb2_grpc.DetectorServiceStub(robot_channel)
            # It follows the deployment and downloads the model with its own token.
            image = image_pb2.Image(encoded=jpeg(frame(squares=((200, 120, 96, "red"),))))
            assert await served(robot, image) == "1.0"
            # A robot's frame goes through the outbox to the hub with the detector's token.
            pixels = frame(squares=((300, 200, 64, "red"),))
            await robot.Upload(det.UploadRequest(image=to_image(pixels, "bgr"), camera_id="rear"))
            listing = image_service_pb2.ListImagesRequest(ref=WEEDS)
            for _ in range(300):
                images = (await hub.image_stub.ListImages(listing, metadata=bearer(OPERATOR))).images
                if any(i.camera_id == "rear" for i in images):
                    break
                await asyncio.sleep(0.05)
            assert any(i.camera_id == "rear" for i in images)
            # ...and it is in the node registry.
            nodes = node_service_pb2_grpc.NodeServiceStub(hub.channel)
            request = node_service_pb2.ListNodesRequest(type=node_pb2.NODE_TYPE_DETECTOR)
            for _ in range(300):
                if (await nodes.ListNodes(request, metadata=bearer(OPERATOR))).nodes:
                    break
                await asyncio.sleep(0.05)
            assert (await nodes.ListNodes(request, metadata=bearer(OPERATOR))).nodes

            # Robots share the detector: they cannot change its modes; an operator can.
            idle = det.SetOperationModeRequest(mode=det.OPERATION_MODE_IDLE)
            stopped = det.SetOutboxModeRequest(mode=det.OUTBOX_MODE_STOPPED)
            pinned = det.SetVersionControlRequest(version_control=det.VERSION_CONTROL_PIN, pinned_version="1.0")
            assert await code_of(robot.SetOperationMode(idle)) is DENIED
            assert await code_of(robot.SetOutboxMode(stopped)) is DENIED
            assert await code_of(robot.SetVersionControl(pinned)) is DENIED
            operator = bearer(OPERATOR)
            assert await code_of(robot.SetOperationMode(idle, metadata=operator)) is grpc.StatusCode.OK
            assert await code_of(robot.SetOutboxMode(stopped, metadata=operator)) is grpc.StatusCode.OK
            assert await code_of(robot.SetVersionControl(pinned, metadata=operator)) is grpc.StatusCode.OK
            about = await robot.GetAbout(det.GetAboutRequest())
            assert (about.operation_mode, about.version_control) == (det.OPERATION_MODE_IDLE, det.VERSION_CONTROL_PIN)

            # This detector serves acme/weeds: a robot token limited to acme/other may not use it.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await robot.GetAbout(det.GetAboutRequest(), metadata=bearer(OTHER_ROBOT))
            assert refused.value.code() is DENIED
            assert "acme/other" in refused.value.details()
            assert "acme/weeds" in refused.value.details()
    finally:
        await server.stop(0)


# --- tokens limited to a project or an organization ---------------------------------------------


async def test_a_token_limited_to_a_project_is_refused_elsewhere(hub: SecuredHub) -> None:
    token = bearer(WEEDS_ANNOTATOR)
    projects, images = hub.projects, hub.image_stub
    assert await code_of(projects.GetProject(project_service_pb2.GetProjectRequest(ref=WEEDS), metadata=token)) is (
        grpc.StatusCode.OK
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await projects.GetProject(project_service_pb2.GetProjectRequest(ref=OTHER), metadata=token)
    assert refused.value.code() is DENIED
    assert refused.value.details() == "this token is limited to acme/weeds; it may not use acme/other"

    listed = await projects.ListProjects(project_service_pb2.ListProjectsRequest(), metadata=token)
    assert [(p.ref.organization, p.ref.project) for p in listed.projects] == [("acme", "weeds")]

    for ref, expected in ((WEEDS, grpc.StatusCode.OK), (OTHER, DENIED)):
        request = image_service_pb2.ListImagesRequest(ref=ref)
        assert await code_of(images.ListImages(request, metadata=token)) is expected
        upload = image_service_pb2.UploadImageRequest(ref=ref, image=annotated_image(7))
        assert await code_of(images.UploadImage(upload, metadata=token)) is expected
    stream = images.UploadImages(iter([image_service_pb2.UploadImagesRequest(ref=OTHER)]), metadata=token)
    assert await code_of(stream.read()) is DENIED

    get_other = training_service_pb2.GetTrainingRequest(training_id=hub.trainings["other"])
    assert await code_of(hub.training_stub.GetTraining(get_other, metadata=token)) is DENIED
    stop_other = training_service_pb2.StopTrainingRequest(training_id=hub.trainings["other"])
    assert await code_of(hub.training_stub.StopTraining(stop_other, metadata=token)) is DENIED
    get_own = training_service_pb2.GetTrainingRequest(training_id=hub.trainings["weeds"])
    assert await code_of(hub.training_stub.GetTraining(get_own, metadata=token)) is grpc.StatusCode.OK


async def test_a_token_limited_to_an_organization_covers_its_projects_only(hub: SecuredHub) -> None:
    token = bearer(ACME_OPERATOR)
    for ref, expected in ((WEEDS, grpc.StatusCode.OK), (OTHER, grpc.StatusCode.OK), (FOREIGN, DENIED)):
        request = project_service_pb2.GetProjectRequest(ref=ref)
        assert await code_of(hub.projects.GetProject(request, metadata=token)) is expected, ref
    # Questions about every project need a project named.
    events = event_service_pb2_grpc.EventServiceStub(hub.channel)
    watch_all = events.WatchEvents(event_service_pb2.WatchEventsRequest(cursor="0"), metadata=token)
    assert await code_of(watch_all.read()) is DENIED
    # An administrator of acme creates projects in acme only.
    for ref, expected in (
        (project_service_pb2.ProjectRef(organization="acme", project="new"), grpc.StatusCode.OK),
        (project_service_pb2.ProjectRef(organization="beta", project="new"), DENIED),
    ):
        create = project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=ref))
        assert await code_of(hub.projects.CreateProject(create, metadata=bearer(ACME_ADMIN))) is expected


async def test_nodes_acting_for_callers_check_the_callers_limits(hub: SecuredHub, tmp_path: Path) -> None:
    """The annotator and the converter call the hub with their own tokens, for callers of any project:
    they check a caller's limits themselves."""
    common = {"port": 0, "loop_host": f"127.0.0.1:{hub.port}", "auth_tokens": ACCEPTED}
    annotator_settings = AnnotatorSettings(data_dir=tmp_path / "annotator", loop_token=ANNOTATOR_NODE, **common)
    # A converter without a valid token of its own: it converts nothing here, and still answers Convert.
    converter_settings = ConverterSettings(data_dir=tmp_path / "converter", **common)
    servers = [
        GrpcServer(annotator_app.create(annotator_settings), annotator_settings),
        GrpcServer(converter_app.create(converter_settings), converter_settings),
    ]
    annotator_port, converter_port = [await server.start() for server in servers]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{annotator_port}") as channel:
            annotator = annotator_service_pb2_grpc.AnnotatorServiceStub(channel)
            for project, expected in (("weeds", grpc.StatusCode.OK), ("other", DENIED)):
                rank = annotator_pb.RankQueueRequest(organization="acme", project=project)
                assert await code_of(annotator.RankQueue(rank, metadata=bearer(WEEDS_ANNOTATOR))) is expected
        async with grpc.aio.insecure_channel(f"127.0.0.1:{converter_port}") as channel:
            converter = converter_service_pb2_grpc.ConverterServiceStub(channel)
            convert = converter_pb.ConvertRequest(
                organization="acme", project="other", version="1.0", target_format="onnx_fp16"
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await converter.Convert(convert, metadata=bearer(WEEDS_OPERATOR))
            assert refused.value.code() is DENIED
            assert refused.value.details() == "this token is limited to acme/weeds; it may not use acme/other"
    finally:
        for server in servers:
            await server.stop(0)
