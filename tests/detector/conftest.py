"""An in-process detector serving the synthetic YOLOv8-layout model, over real gRPC on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from visionloop.detector import app
from visionloop.detector.config import DetectorSettings
from visionloop.detector.service import DetectorServicer
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.runtime.server import GrpcServer
from visionloop.synthetic.models import model_zip


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
    settings = DetectorSettings(port=0, data_dir=tmp_path / "detector", model_paths=f"stub={stub_zip}")
    server, port = await start_detector(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield DetectorClient(
            channel, server.spec.context, detector_service_pb2_grpc.DetectorServiceStub(channel), settings
        )
    await server.stop(0)
