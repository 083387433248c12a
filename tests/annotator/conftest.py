"""A real hub with generated scenes, and an annotator in-process, over gRPC on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.annotator import sam_pair, shapes
from tests.annotator import studio as label_studio
from tests.detector.conftest import REF, Hub
from visionloop.annotator.v1 import annotator_service_pb2_grpc
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import category_pb2
from visionloop.loop.v1 import project_service_pb2
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.runtime.server import GrpcServer
from visionloop.server.annotator import app
from visionloop.server.annotator.config import AnnotatorSettings
from visionloop.server.annotator.service import AnnotatorServicer
from visionloop.testing.ports import free_port
from visionloop.testing.synthetic.models import model_zip

SCENES = 4


@dataclass
class Desk:
    hub: Hub
    channel: grpc.aio.Channel
    stub: annotator_service_pb2_grpc.AnnotatorServiceStub
    servicer: AnnotatorServicer
    categories: dict[str, category_pb2.Category]
    image_ids: list[str]  # scene i is image_ids[i]; the last one has a distractor (scene 0's seed)
    scenes: list[shapes.Scene]
    annotator_port: int

    @property
    def hub_target(self) -> str:
        return f"127.0.0.1:{self.hub.settings.port}"

    def client(self) -> LoopClient:
        return LoopClient(self.hub_target, REF.organization, REF.project)


def _seed(target: str, scenes: list[shapes.Scene]) -> tuple[dict[str, category_pb2.Category], list[str]]:
    with LoopClient(target, REF.organization, REF.project) as client:
        categories = {
            name: client.create_category(name, kind)
            for name, kind in (("leaf", "segmentation"), ("weed", "box"), ("stem", "point"))
        }
        ids = [client.upload_image(scene.png()).metadata.id for scene in scenes]
        return categories, ids


async def start_annotator(hub: Hub, folder: Path, **overrides: object) -> GrpcServer:
    settings = AnnotatorSettings(
        port=0,
        data_dir=folder,
        loop_host=f"127.0.0.1:{hub.settings.port}",
        loop_organization=REF.organization,
        loop_project=REF.project,
        **overrides,  # type: ignore[arg-type]
    )
    server = GrpcServer(app.create(settings), settings)
    await server.start()
    return server


@pytest.fixture(scope="session")
def stub_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The detector tests' synthetic colour detector as a model zip."""
    return model_zip(tmp_path_factory.mktemp("models") / "stub.zip")


@pytest.fixture(scope="session")
def sam_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sam_pair.export(tmp_path_factory.mktemp("sam"))


@asynccontextmanager
async def open_desk(tmp_path: Path, **overrides: object) -> AsyncIterator[Desk]:
    hub = Hub(tmp_path / "hub", free_port())
    await hub.start()
    scenes = [shapes.scene(seed) for seed in range(SCENES - 1)] + [shapes.scene(0, distractor=True)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
        await project_grpc.ProjectServiceStub(channel).CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
    categories, ids = await asyncio.to_thread(_seed, f"127.0.0.1:{hub.settings.port}", scenes)
    server = await start_annotator(hub, tmp_path / "annotator", **overrides)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = annotator_service_pb2_grpc.AnnotatorServiceStub(channel)
        yield Desk(hub, channel, stub, server.spec.context, categories, ids, scenes, server.port or 0)
    await server.stop(0)
    await hub.stop()


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with open_desk(tmp_path) as ready:
        yield ready


@pytest.fixture
async def sam_desk(tmp_path: Path, sam_files: tuple[Path, Path]) -> AsyncIterator[Desk]:
    encoder, decoder = sam_files
    async with open_desk(tmp_path, sam_encoder_path=encoder, sam_decoder_path=decoder) as ready:
        yield ready


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[label_studio.Studio]:
    """One real Label Studio for the session (each test makes its own project in it)."""
    started = label_studio.start(tmp_path_factory.mktemp("label-studio"), free_port())
    yield started
    label_studio.stop(started)
