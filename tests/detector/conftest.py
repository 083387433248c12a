"""In-process detectors serving the synthetic YOLOv8-layout model, and a real hub, over gRPC on loopback."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from visionloop.common.v1 import image_pb2, transfer_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import model_service_pb2, model_service_pb2_grpc, project_service_pb2
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.runtime.server import GrpcServer
from visionloop.server.detector import app
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.service import DetectorServicer
from visionloop.server.hub import app as hub_app
from visionloop.server.hub.config import LoopSettings
from visionloop.testing.frames import frame, jpeg
from visionloop.testing.ports import free_port
from visionloop.testing.synthetic.models import model_zip

# Tests of what a detector answers send frames as fast as the streams take them; on a busy machine
# admission control would refuse some of them. They run with it opened up (a minute's budget, a
# thousand frames); tests/detector/test_admission.py tests admission itself.
OPEN_ADMISSION = {"queue_budget_ms": 60_000, "max_queued_batches": 64}
OPEN_ADMISSION_ENV = {f"DETECTOR_{name.upper()}": str(value) for name, value in OPEN_ADMISSION.items()}


@pytest.fixture(scope="session")
def stub_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_zip(tmp_path_factory.mktemp("models") / "stub.zip")


@dataclass
class DetectorClient:
    channel: grpc.aio.Channel
    servicer: DetectorServicer
    stub: detector_service_pb2_grpc.DetectorServiceStub
    settings: DetectorSettings


async def start_detector(settings: DetectorSettings) -> tuple[GrpcServer, int]:
    server = GrpcServer(app.create(settings), settings)
    return server, await server.start()


@pytest.fixture
async def detector(tmp_path: Path, stub_zip: Path) -> AsyncIterator[DetectorClient]:
    settings = DetectorSettings(
        port=0, data_dir=tmp_path / "detector", model_paths=f"stub={stub_zip}", **OPEN_ADMISSION
    )
    server, port = await start_detector(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield DetectorClient(
            channel, server.spec.context, detector_service_pb2_grpc.DetectorServiceStub(channel), settings
        )
    await server.stop(0)


REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")
IMAGE = image_pb2.Image(encoded=jpeg(frame(squares=((200, 120, 96, "red"),))))


class Hub:
    """A real hub on a fixed port, so it can be stopped and started again."""

    def __init__(self, folder: Path, port: int) -> None:
        self.settings = LoopSettings(port=port, data_dir=folder, host="127.0.0.1")
        self.server: GrpcServer | None = None

    async def start(self) -> None:
        self.server = GrpcServer(hub_app.create(self.settings), self.settings)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


async def upload(port: int, data: bytes, fmt: str = "onnx", version: str = "") -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        header = model_service_pb2.UploadModelHeader(ref=REF, format=fmt, version=version, blob=blob)

        async def parts() -> AsyncIterator[model_service_pb2.UploadModelRequest]:
            yield model_service_pb2.UploadModelRequest(header=header)
            yield model_service_pb2.UploadModelRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data))

        return (await model_service_pb2_grpc.ModelServiceStub(channel).UploadModel(parts())).model.version


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = Hub(tmp_path / "hub", free_port())
    await hub.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
        await project_grpc.ProjectServiceStub(channel).CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
    yield hub
    await hub.stop()


def settings_for(hub: Hub, folder: Path) -> DetectorSettings:
    return DetectorSettings(
        port=0,
        data_dir=folder,
        loop_host=f"127.0.0.1:{hub.settings.port}",
        loop_organization="acme",
        loop_project="weeds",
        **OPEN_ADMISSION,
    )


async def version_served(stub: detector_service_pb2_grpc.DetectorServiceStub, wanted: str, within: float = 15) -> None:
    """Wait (at most ``within`` seconds) until Detect answers with ``wanted``."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            response = await stub.Detect(pb.DetectRequest(image=IMAGE))
            if response.model_version == wanted:
                return
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"version {wanted} was not served within {within} s")
        await asyncio.sleep(0.1)
