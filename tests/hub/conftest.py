"""An in-process hub on each storage stack: SQLite + folder, and PostgreSQL + S3."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from visionloop.lib.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from visionloop.loop.v1 import (
    annotation_service_pb2_grpc,
    deployment_service_pb2_grpc,
    event_service_pb2_grpc,
    image_service_pb2_grpc,
    model_service_pb2_grpc,
    node_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    training_service_pb2_grpc,
)
from visionloop.runtime.files import is_temporary
from visionloop.runtime.server import GrpcServer
from visionloop.server.hub import app
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.state import Hub

STACKS = ["sqlite", "postgres"]


_counter = iter(range(1_000_000))


def cluster_storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh database on the session's PostgreSQL server and a fresh bucket on its S3 server."""
    base = request.getfixturevalue("postgres_url")
    # One database per test keeps tests independent on one server.
    import psycopg

    name = f"hub_{next(_counter)}_{abs(hash(request.node.nodeid)) % 10**8}"
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s3 = dict(request.getfixturevalue("s3_settings"))
    s3["s3_bucket"] = name.replace("_", "-")
    return {"database_url": base.rsplit("/", 1)[0] + f"/{name}", **s3}


@pytest.fixture(params=STACKS)
def hub_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LoopSettings:
    """Settings for a fresh, empty hub on the requested stack."""
    overrides: dict[str, Any] = {"port": 0, "data_dir": tmp_path / "hub", "host": "127.0.0.1"}
    if request.param == "postgres":
        overrides.update(cluster_storage(request))
    return LoopSettings(**overrides)


@dataclass
class HubClient:
    """Stubs for every hub service on one channel, plus the in-process ``Hub`` for white-box checks."""

    channel: grpc.aio.Channel
    hub: Hub
    port: int

    def __post_init__(self) -> None:
        self.projects = project_service_pb2_grpc.ProjectServiceStub(self.channel)
        self.images = image_service_pb2_grpc.ImageServiceStub(self.channel)
        self.annotations = annotation_service_pb2_grpc.AnnotationServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.deployments = deployment_service_pb2_grpc.DeploymentServiceStub(self.channel)
        self.trainings = training_service_pb2_grpc.TrainingServiceStub(self.channel)
        self.nodes = node_service_pb2_grpc.NodeServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)


CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@contextlib.asynccontextmanager
async def running_hub(settings: LoopSettings) -> AsyncIterator[HubClient]:
    """A hub started from ``settings`` (real gRPC on loopback) and a client for it."""
    spec = app.create(settings)
    server = GrpcServer(spec, settings)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
            yield HubClient(channel, spec.context, port)
    finally:
        await server.stop(0)


@pytest.fixture
async def hub(hub_settings: LoopSettings) -> AsyncIterator[HubClient]:
    """A running hub and a client for it."""
    async with running_hub(hub_settings) as client:
        yield client


REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")


@pytest.fixture
async def project(hub: HubClient) -> project_service_pb2.ProjectRef:
    """The project acme/weeds, created."""
    await hub.projects.CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF, display_name="Weeds"))
    )
    return REF


def start_partial_write(store: ObjectStore, key: str) -> None:
    """A write as a crash leaves it: a partial file beside the key, or an S3 multipart upload with a part."""
    if isinstance(store, S3ObjectStore):
        client, bucket_key = store._client, store._key(key)
        upload = client.create_multipart_upload(Bucket=store.bucket, Key=bucket_key)["UploadId"]
        client.upload_part(Bucket=store.bucket, Key=bucket_key, UploadId=upload, PartNumber=1, Body=b"part")
    else:
        assert isinstance(store, LocalObjectStore)
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_name(f".{path.name}.0badf00d.tmp").write_bytes(b"half writ")


def partial_writes(store: ObjectStore) -> int:
    if isinstance(store, S3ObjectStore):
        return len(store._client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []))
    assert isinstance(store, LocalObjectStore)
    return sum(1 for path in store.root.rglob("*") if is_temporary(path.name))


def upload_takes_its_turn_after(hub: HubClient, event: asyncio.Event, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The first caller of ``blob_locks.hold`` (an upload, its put done) waits for ``event`` before
    taking its turn; later callers take theirs at once. Returns an event set once the first called."""
    hold = hub.hub.blob_locks.hold
    waiting = asyncio.Event()

    @contextlib.asynccontextmanager
    async def held_back(key: str) -> AsyncIterator[None]:
        if not waiting.is_set():
            waiting.set()
            await asyncio.wait_for(event.wait(), 10)
        async with hold(key):
            yield

    monkeypatch.setattr(hub.hub.blob_locks, "hold", held_back)
    return waiting
