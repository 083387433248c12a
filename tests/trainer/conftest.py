"""A real hub with a synthetic, annotated project, and trainers in-process or as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from tests.detector.conftest import REF, Hub
from visionloop.client.loop import LoopClient
from visionloop.common.v1 import category_pb2, training_pb2
from visionloop.loop.v1 import project_service_pb2, training_service_pb2, training_service_pb2_grpc
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.runtime.server import GrpcServer
from visionloop.server.trainer import app as trainer_app
from visionloop.server.trainer.config import TrainerSettings
from visionloop.testing.ports import free_port
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import ensure_categories, upload_annotated

WORLD = world.WorldConfig(width=160, height=120)
IMAGES = 40
# Small and quick: a few seconds per training on two cores.
FAST = {"resolution": 160, "epochs": 4, "batch_size": 8, "width": 8, "learning_rate": 0.01}


@dataclass
class Project:
    hub: Hub
    categories: dict[str, category_pb2.Category]
    image_ids: list[str]
    channel: grpc.aio.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.hub.settings.port}"

    @property
    def trainings(self) -> training_service_pb2_grpc.TrainingServiceStub:
        return training_service_pb2_grpc.TrainingServiceStub(self.channel)

    def client(self) -> LoopClient:
        return LoopClient(self.target, REF.organization, REF.project)

    async def create_training(self, **hyperparameters: object) -> training_pb2.Training:
        values = struct_pb2.Struct()
        values.update({**FAST, **hyperparameters})
        request = training_service_pb2.CreateTrainingRequest(
            ref=REF, spec=training_pb2.TrainingSpec(hyperparameters=values)
        )
        return (await self.trainings.CreateTraining(request)).training

    async def training(self, training_id: str) -> training_pb2.Training:
        request = training_service_pb2.GetTrainingRequest(training_id=training_id)
        return (await self.trainings.GetTraining(request)).training

    async def wait_for(
        self, training_id: str, done: Callable[[training_pb2.Training], bool], within: float = 120
    ) -> training_pb2.Training:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            training = await self.training(training_id)
            if done(training):
                return training
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"training never got there; last seen: {training}")
            await asyncio.sleep(0.1)

    async def ended(self, training_id: str, within: float = 120) -> training_pb2.Training:
        final = {
            training_pb2.TRAINING_PHASE_SUCCEEDED,
            training_pb2.TRAINING_PHASE_FAILED,
            training_pb2.TRAINING_PHASE_STOPPED,
            training_pb2.TRAINING_PHASE_ABORTED,
        }
        return await self.wait_for(training_id, lambda t: t.phase in final, within)


def _seed(target: str) -> tuple[dict[str, category_pb2.Category], list[str]]:
    with LoopClient(target, REF.organization, REF.project) as client:
        categories = ensure_categories(client, world.categories())
        samples = world.generate_samples(IMAGES, seed=5, config=WORLD)
        return categories, upload_annotated(client, samples, categories)


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[Project]:
    hub = Hub(tmp_path / "hub", free_port())
    await hub.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
        await project_grpc.ProjectServiceStub(channel).CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
        categories, ids = await asyncio.to_thread(_seed, f"127.0.0.1:{hub.settings.port}")
        yield Project(hub, categories, ids, channel)
    await hub.stop()


def trainer_settings(project: Project, folder: Path, **overrides: object) -> TrainerSettings:
    values: dict[str, object] = {
        "port": 0,
        "data_dir": folder,
        "loop_host": project.target,
        "loop_organization": REF.organization,
        "loop_project": REF.project,
        "claim_interval_seconds": 0.2,
        "lease_seconds": 10,
        "step_backoff_seconds": 0.05,
    }
    return TrainerSettings(**{**values, **overrides})


@pytest.fixture
async def trainer(project: Project, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    settings = trainer_settings(project, tmp_path / "trainer")
    server = GrpcServer(trainer_app.create(settings), settings)
    await server.start()
    yield server
    await server.stop(0)


class TrainerProcess:
    """``visionloop serve trainer`` as a real process, for kill -9."""

    def __init__(
        self, project: Project, folder: Path, env: dict[str, str] | None = None, python: str = sys.executable
    ) -> None:
        self.folder = folder
        self.python = python
        self.log = folder.with_suffix(".log")
        self.env = {
            **os.environ,
            "LOOP_HOST": project.target,
            "LOOP_ORGANIZATION": REF.organization,
            "LOOP_PROJECT": REF.project,
            "VISIONLOOP_DATA_DIR": str(folder),
            "VISIONLOOP_PORT": "0",
            "VISIONLOOP_METRICS_PORT": "0",
            "VISIONLOOP_LOG_FORMAT": "json",
            "TRAINER_CLAIM_INTERVAL_SECONDS": "0.2",
            "TRAINER_LEASE_SECONDS": "5",
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [self.python, "-m", "visionloop.cli", "serve", "trainer"], env=self.env, stdout=out, stderr=out
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
