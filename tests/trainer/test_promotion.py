"""The promotion gate end to end: a real trainer continues from the deployed model, measures both
models on the same held-out images, and the hub deploys the new version only when it is not worse.

The scripted plug-in (``tests/trainer/plugins.py``) makes models of a chosen quality at once, so
the metrics are chosen, and everything else (claims, the base model's download, evaluation,
upload, the hub's decision, deployment, events, the CLI) is the real thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import struct_pb2

from tests.detector.conftest import REF
from tests.trainer.conftest import WORLD, Project, trainer_settings
from visionloop.cli.main import cli
from visionloop.common.v1 import model_pb2, training_pb2
from visionloop.loop.v1 import deployment_service_pb2 as deploy_pb
from visionloop.loop.v1 import (
    deployment_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    model_service_pb2_grpc,
    training_service_pb2,
)
from visionloop.loop.v1 import model_service_pb2 as models_pb
from visionloop.runtime.server import GrpcServer
from visionloop.server.trainer import app as trainer_app
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.seeding import upload_annotated

HELD = model_pb2.PROMOTION_STATE_HELD
PROMOTED = model_pb2.PROMOTION_STATE_PROMOTED


@pytest.fixture
async def scripted(project: Project, tmp_path: Path) -> AsyncIterator[GrpcServer]:
    settings = trainer_settings(project, tmp_path / "trainer", trainer_plugin="tests.trainer.plugins:ScriptedTrainer")
    server = GrpcServer(trainer_app.create(settings), settings)
    await server.start()
    yield server
    await server.stop(0)


async def train(project: Project, quality: float, base: str = "") -> str:
    """Queue a training of a model of ``quality`` from ``base``; the version it published."""
    values = struct_pb2.Struct()
    values.update({"quality": quality})
    spec = training_pb2.TrainingSpec(hyperparameters=values, base_model_version=base)
    request = training_service_pb2.CreateTrainingRequest(ref=REF, spec=spec)
    training = (await project.trainings.CreateTraining(request)).training
    ended = await project.ended(training.id)
    assert ended.phase == training_pb2.TRAINING_PHASE_SUCCEEDED, ended.status.errors
    return ended.result_model_version


async def model(project: Project, version: str) -> model_pb2.ModelInfo:
    stub = model_service_pb2_grpc.ModelServiceStub(project.channel)
    key = models_pb.ModelKey(ref=REF, version=version)
    return (await stub.GetModel(models_pb.GetModelRequest(key=key))).model


async def deployment(project: Project) -> deploy_pb.Deployment:
    stub = deployment_service_pb2_grpc.DeploymentServiceStub(project.channel)
    return (await stub.GetDeployment(deploy_pb.GetDeploymentRequest(ref=REF))).deployment


def models_list(project: Project) -> list[str]:
    """``visionloop models list`` against the hub, one line per version."""
    result = CliRunner().invoke(
        cli,
        ["models", "list", "--loop-host", project.target, "--org", REF.organization, "--project", REF.project],
    )
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line[:2] in ("* ", "  ")]  # not the services' log


def add_test_images(project: Project, count: int) -> None:
    """More held-out images (tagged test): the next training measures on a larger set."""
    with project.client() as client:
        upload_annotated(client, world.generate_samples(count, seed=11, config=WORLD), project.categories, ["test"])


async def test_a_worse_continuation_is_published_but_not_deployed(project: Project, scripted: GrpcServer) -> None:
    watch = deployment_service_pb2_grpc.DeploymentServiceStub(project.channel).WatchDeployment(
        deploy_pb.WatchDeploymentRequest(ref=REF)
    )
    events = event_service_pb2_grpc.EventServiceStub(project.channel).WatchEvents(
        event_service_pb2.WatchEventsRequest(cursor="0", ref=REF, types=[event_service_pb2.EVENT_TYPE_MODEL_HELD])
    )
    try:
        first = await train(project, quality=0.9)
        assert (await deployment(project)).resolved_version == first  # nothing to compare the first with
        first_metrics = (await model(project, first)).metrics

        # The deployed model's own figure was measured on fewer images than the next training holds out.
        await asyncio.to_thread(add_test_images, project, 12)
        worse = await train(project, quality=0.2, base=first)

        held = await model(project, worse)
        assert held.promotion.state == HELD
        measured = held.metrics
        assert measured.image_count > first_metrics.image_count
        assert measured.held_out_digest
        assert measured.held_out_digest != first_metrics.held_out_digest
        # The trainer measured the deployed model again on the new training's held-out images.
        [baseline] = measured.baselines
        assert baseline.version == first
        assert baseline.map50 > 0.7 > 0.4 > measured.map50
        assert held.promotion.compared_version == first
        assert held.promotion.compared_map50 == pytest.approx(baseline.map50)
        assert held.promotion.map50 == pytest.approx(measured.map50)
        assert held.promotion.image_count == measured.image_count
        assert f"below {baseline.map50:.3f} of {first}" in held.promotion.reason

        target = await deployment(project)
        assert target.resolved_version == first
        assert (target.latest_version, target.latest_promotion.state) == (worse, HELD)
        assert target.latest_promotion.reason == held.promotion.reason
        event = (await anext(aiter(events))).event
        assert (event.subject, event.detail) == (worse, held.promotion.reason)

        lines = await asyncio.to_thread(models_list, project)
        assert lines[0].startswith(f"  {worse}\t")
        assert f"held: {held.promotion.reason}" in lines[0]
        assert lines[1].startswith(f"* {first}\t")
        assert "held" not in lines[1]

        better = await train(project, quality=1.0, base=first)
        promoted = await model(project, better)
        assert promoted.promotion.state == PROMOTED, promoted.promotion.reason
        assert (await deployment(project)).resolved_version == better

        # A follow-latest watcher (a detector) went from the first version straight to the better one.
        seen = []
        async for update in watch:
            seen.append(update.deployment.resolved_version)
            if update.deployment.resolved_version == better:
                break
        assert list(dict.fromkeys(seen)) == ["", first, better]  # updates as formats arrive, too

        # Pinning deploys any version, a held one too.
        client = project.client()
        try:
            pinned = await asyncio.to_thread(client.pin, worse)
        finally:
            client.close()
        assert pinned.resolved_version == worse
    finally:
        watch.cancel()
        events.cancel()
