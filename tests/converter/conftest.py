"""A real hub and real converter servers on loopback, and the models they convert."""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import psycopg
import pytest
import torch

from visionloop.common.v1 import annotation_pb2, category_pb2, geometry_pb2, image_pb2
from visionloop.converter.v1 import converter_service_pb2_grpc
from visionloop.lib.centernet import artifacts
from visionloop.lib.centernet.model import CenterNet, model_json
from visionloop.lib.model_format.model_json import pack
from visionloop.loop.v1 import (
    deployment_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    node_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
)
from visionloop.runtime.model_transfer import download_model, upload_model
from visionloop.runtime.server import GrpcServer
from visionloop.server.converter import app as converter_app
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.service import ConverterServicer
from visionloop.server.hub import app as hub_app
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.state import Hub
from visionloop.testing.synthetic.models import model_zip as stub_zip

REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")
WIDTH, HEIGHT = 64, 48  # the reference model's input: small, multiples of 16
STUB_SIZE = 64  # the YOLOv8 stub's input (square); validation frames are twice that


@dataclass
class HubClient:
    channel: grpc.aio.Channel
    hub: Hub  # in-process, for white-box checks of conversion rows
    port: int

    def __post_init__(self) -> None:
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.projects = project_service_pb2_grpc.ProjectServiceStub(self.channel)
        self.images = image_service_pb2_grpc.ImageServiceStub(self.channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self.channel)
        self.nodes = node_service_pb2_grpc.NodeServiceStub(self.channel)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def upload(self, path: Path, fmt: str, version: str = "") -> str:
        header = model_service_pb2.UploadModelHeader(ref=REF, format=fmt, version=version)
        return (await upload_model(self.models, header, path)).version

    async def formats(self, version: str) -> list[str]:
        key = model_service_pb2.ModelKey(ref=REF, version=version)
        return list((await self.models.GetModel(model_service_pb2.GetModelRequest(key=key))).model.formats)

    async def wait_formats(self, version: str, wanted: set[str], seconds: float = 60.0) -> list[str]:
        deadline = asyncio.get_running_loop().time() + seconds
        while not wanted <= set(have := await self.formats(version)):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"version {version} has {have}, not {sorted(wanted)}, after {seconds:g} s")
            await asyncio.sleep(0.1)
        return have

    async def download(self, version: str, fmt: str, folder: Path) -> Path:
        """Download and extract the zip of ``version`` in ``fmt`` into a folder under ``folder``."""
        key = model_service_pb2.ModelKey(ref=REF, version=version)
        archive = folder / f"{version}-{fmt}.zip"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await download_model(self.models, key, fmt, archive)
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(folder / f"{version}-{fmt}")
        return folder / f"{version}-{fmt}"


@pytest.fixture
def hub_stack() -> str:
    """The hub's storage: "sqlite" (SQLite + folder); tests parametrize "postgres" (PostgreSQL + S3) indirectly."""
    return "sqlite"


@pytest.fixture
async def hub(hub_stack: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[HubClient]:
    overrides: dict[str, Any] = {}
    if hub_stack == "postgres":
        overrides = dict(request.getfixturevalue("s3_settings"))
        database = f"converter_{uuid.uuid4().hex[:12]}"  # one database and bucket per test
        base = request.getfixturevalue("postgres_url").rsplit("/", 1)[0]
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        overrides.update(database_url=f"{base}/{database}", s3_bucket=database.replace("_", "-"))
    settings = LoopSettings(port=0, data_dir=tmp_path / "hub", host="127.0.0.1", **overrides)
    spec = hub_app.create(settings)
    server = GrpcServer(spec, settings)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = HubClient(channel, spec.context, port)
        await client.projects.CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
        yield client
    await server.stop(0)


@dataclass
class ConverterClient:
    server: GrpcServer
    channel: grpc.aio.Channel
    settings: ConverterSettings

    def __post_init__(self) -> None:
        self.stub = converter_service_pb2_grpc.ConverterServiceStub(self.channel)

    @property
    def servicer(self) -> ConverterServicer:
        return self.server.spec.context


StartConverter = Callable[..., Awaitable[ConverterClient]]


@pytest.fixture
async def start_converter(hub: HubClient, tmp_path: Path) -> AsyncIterator[StartConverter]:
    """Starts converters on the hub (settings as keyword overrides); all are stopped at the end."""
    started: list[ConverterClient] = []

    async def start(name: str = "converter", **overrides: Any) -> ConverterClient:
        values: dict[str, Any] = {
            "port": 0,
            "data_dir": tmp_path / name,
            "loop_host": hub.address,
            "loop_organization": REF.organization,
            "loop_project": REF.project,
            "retry_backoff_seconds": 0.05,
            "triton_model_repository": tmp_path / "triton",
            **overrides,
        }
        settings = ConverterSettings(**values)
        server = GrpcServer(converter_app.create(settings), settings)
        port = await server.start()
        client = ConverterClient(server, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), settings)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.channel.close()
        await client.server.stop(0)


# --- models -----------------------------------------------------------------------------------


def pytorch_zip(path: Path, seed: int = 0, **doc: Any) -> Path:
    """The trainer's ``pytorch`` format of a small reference CenterNet (weed boxes, stem points)."""
    torch.manual_seed(seed)
    model = CenterNet(2, 8).eval()
    folder = artifacts.write_pytorch(
        model, path.with_suffix(""), {**model_json([("weed", "box"), ("stem", "point")], WIDTH, HEIGHT), **doc}, 8
    )
    return pack(folder, path)


def broken_pytorch_zip(path: Path) -> Path:
    """A ``pytorch`` zip whose model.json is fine but whose weights are garbage."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "model.json", json.dumps({**model_json([("weed", "box")], WIDTH, HEIGHT), "format": "pytorch"})
        )
        archive.writestr("model.pt", b"these are not weights")
    return path


def onnx_stub_zip(path: Path) -> Path:
    """The YOLOv8-layout stub that finds red and green squares (``synthetic.models``)."""
    return stub_zip(path, STUB_SIZE, STUB_SIZE)


def corrupt_initializer(path: Path, name: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite one weight of an ONNX file in place (for deliberately corrupted conversions)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for index, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init)), name))
            onnx.save(model, str(path))
            return
    raise AssertionError(f"{path} has no initializer {name!r}")


# --- validation images ------------------------------------------------------------------------


def square_frame(cells: list[tuple[int, int, str]]) -> tuple[bytes, list[annotation_pb2.Annotation]]:
    """A PNG the stub sees exactly: each (column, row, colour) square fills one stub cell and half
    its neighbours, so the stub's box for that cell is the square; plus its box annotations."""
    size = 2 * STUB_SIZE  # letterboxed at scale 0.5
    pixels = np.full((size, size, 3), 0, dtype=np.uint8)
    annotations = []
    for column, row, colour in cells:
        x, y = 16 * column - 8, 16 * row - 8  # frame pixels: input 8c-4 .. 8c+12
        pixels[y : y + 32, x : x + 32] = (0, 0, 255) if colour == "red" else (0, 255, 0)
        box = geometry_pb2.Box(x=x, y=y, width=32, height=32)
        annotations.append(
            annotation_pb2.Annotation(
                category_name=colour,
                shape=geometry_pb2.Shape(box=box),
                creator=annotation_pb2.Creator(person="anna"),
            )
        )
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes(), annotations


async def add_validation_images(hub: HubClient) -> int:
    """Complete, annotated frames of red and green squares; returns how many."""
    for name in ("red", "green"):
        category = category_pb2.Category(name=name, type=category_pb2.CATEGORY_TYPE_BOX)
        await hub.projects.CreateCategory(project_service_pb2.CreateCategoryRequest(ref=REF, category=category))
    scenes = [
        [(1, 1, "red"), (4, 5, "green")],
        [(2, 3, "green")],
        [(5, 2, "red"), (2, 5, "red"), (4, 4, "green")],
        [(3, 1, "red")],
    ]
    for cells in scenes:
        data, annotations = square_frame(cells)
        metadata = image_pb2.ImageMetadata(state=image_pb2.IMAGE_STATE_COMPLETE)
        image = image_service_pb2.ImageUpload(data=data, metadata=metadata, annotations=annotations)
        await hub.images.UploadImage(image_service_pb2.UploadImageRequest(ref=REF, image=image))
    return len(scenes)
