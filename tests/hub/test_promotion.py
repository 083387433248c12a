"""The model registry's promotion gate: follow-latest targets deploy a new version only when its
held-out mAP is not worse than the promoted one's on the same images; pins deploy anything.

Versions are uploaded as a trainer uploads them, with the metrics in model.json, so the figures
are chosen here; ``tests/trainer/test_promotion.py`` runs the same through a real trainer.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from sqlalchemy import select, text

from tests.hub.conftest import HubClient, running_hub
from tests.hub.test_models import MODEL_JSON, expect_error, make_zip, upload
from visionloop.cli.main import cli
from visionloop.common.v1 import model_pb2
from visionloop.loop.v1 import deployment_service_pb2 as deploy_pb
from visionloop.loop.v1 import event_service_pb2 as events_pb
from visionloop.loop.v1 import model_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2 as project_pb
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.db.engine import MIGRATIONS, Database
from visionloop.server.hub.promotion import promotion_of
from visionloop.server.hub.state import utcnow
from visionloop.server.hub.versions import latest_version

HELD = model_pb2.PROMOTION_STATE_HELD
PROMOTED = model_pb2.PROMOTION_STATE_PROMOTED
OLD_SET = hashlib.sha256(b"old held-out images").hexdigest()
NEW_SET = hashlib.sha256(b"new held-out images").hexdigest()


def trained(
    map50: float,
    *,
    digest: str = NEW_SET,
    images: int = 40,
    baselines: dict[str, float] | None = None,
    **extra: Any,
) -> bytes:
    """A model zip as a trainer uploads it (each from a training of its own): metrics on ``images``
    held-out images (``digest``)."""
    metrics = {
        "map50": map50,
        "map50_95": map50 / 2,
        "image_count": images,
        "held_out_digest": digest,
        "baselines": [{"version": v, "map50": m, "map50_95": m / 2} for v, m in (baselines or {}).items()],
    }
    return make_zip({**MODEL_JSON, "training_id": str(uuid.uuid4()), "metrics": metrics, **extra})


async def get(hub: HubClient, ref: project_pb.ProjectRef, version: str) -> model_pb2.ModelInfo:
    return (await hub.models.GetModel(pb.GetModelRequest(key=pb.ModelKey(ref=ref, version=version)))).model


async def deployment(hub: HubClient, ref: project_pb.ProjectRef) -> deploy_pb.Deployment:
    return (await hub.deployments.GetDeployment(deploy_pb.GetDeploymentRequest(ref=ref))).deployment


async def events(hub: HubClient, count: int) -> list[events_pb.Event]:
    """The first ``count`` events of the hub (all projects)."""
    watch = hub.events.WatchEvents(events_pb.WatchEventsRequest(cursor="0"))
    try:
        return [(await anext(aiter(watch))).event for _ in range(count)]
    finally:
        watch.cancel()


async def test_the_first_version_is_promoted(hub: HubClient, project: project_pb.ProjectRef) -> None:
    first = await upload(hub, project, trained(0.3))
    assert first.promotion.state == PROMOTED
    assert "first" in first.promotion.reason
    assert not first.promotion.compared_version
    assert first.promotion.map50 == pytest.approx(0.3)
    assert not first.promotion.HasField("compared_map50")
    assert (await deployment(hub, project)).resolved_version == "1.0"


async def test_a_worse_version_is_published_and_held(hub: HubClient, project: project_pb.ProjectRef) -> None:
    await upload(hub, project, trained(0.62, digest=OLD_SET, images=20))  # 1.0
    # Measured again on the new, larger held-out set, 1.0 scores 0.60 there: that is the bar.
    worse = await upload(hub, project, trained(0.41, baselines={"1.0": 0.60}))  # 1.1

    held = await get(hub, project, "1.1")
    assert held.promotion == worse.promotion
    promotion = held.promotion
    assert promotion.state == HELD
    assert (promotion.compared_version, promotion.image_count) == ("1.0", 40)
    assert (promotion.map50, promotion.compared_map50, promotion.tolerance) == pytest.approx((0.41, 0.60, 0.0))
    assert promotion.reason.startswith("mAP@0.5 0.410 is below 0.600 of 1.0")
    assert "same 40 held-out images" in promotion.reason
    assert promotion.HasField("decide_time")

    target = await deployment(hub, project)
    assert (target.resolved_version, target.latest_version) == ("1.0", "1.1")
    assert target.latest_promotion == promotion
    listed = (await hub.models.ListModels(pb.ListModelsRequest(ref=project))).models
    assert [(m.version, m.promotion.state) for m in listed] == [("1.1", HELD), ("1.0", PROMOTED)]
    # Published (the converter and downloads see it), held back, and no deployment change.
    found = [(e.type, e.subject, e.detail) for e in await events(hub, 6)]
    assert (events_pb.EVENT_TYPE_MODEL_PUBLISHED, "1.1", "") in found
    assert (events_pb.EVENT_TYPE_MODEL_HELD, "1.1", promotion.reason) in found
    assert (events_pb.EVENT_TYPE_DEPLOYMENT_CHANGED, "1.1", "") not in found

    # The next better one is deployed: compared with 1.0, the newest promoted version, not with 1.1.
    better = await upload(hub, project, trained(0.7, baselines={"1.0": 0.60, "1.1": 0.41}))
    assert better.promotion.state == PROMOTED
    assert better.promotion.compared_version == "1.0"
    assert (await deployment(hub, project)).resolved_version == "1.2"


async def test_equal_passes_and_the_gate_compares_on_the_same_images(
    hub: HubClient, project: project_pb.ProjectRef
) -> None:
    await upload(hub, project, trained(0.8, digest=NEW_SET))  # 1.0
    # No baseline, but 1.0's own metrics are of the same images: they are the bar.
    same = await upload(hub, project, trained(0.8, digest=NEW_SET))
    assert same.promotion.state == PROMOTED
    assert same.promotion.compared_map50 == pytest.approx(0.8)
    # A higher figure on other images says nothing: held, with the way out in the reason.
    elsewhere = await upload(hub, project, trained(0.95, digest=OLD_SET, baselines={"1.0": 0.5}))
    assert elsewhere.promotion.state == HELD
    assert elsewhere.promotion.reason.startswith("not compared: 1.1 (the newest promoted version) was not measured")
    assert "its trainer measured 1.0" in elsewhere.promotion.reason
    assert "train from 1.1" in elsewhere.promotion.reason
    assert not elsewhere.promotion.HasField("compared_map50")
    assert (await deployment(hub, project)).resolved_version == "1.1"


async def test_versions_without_metrics(hub: HubClient, project: project_pb.ProjectRef) -> None:
    hand = await upload(hub, project, make_zip(MODEL_JSON))  # 1.0: uploaded by hand, never measured
    assert not hand.HasField("metrics")
    assert not hand.promotion.HasField("map50")
    empty = await upload(hub, project, make_zip({**MODEL_JSON, "metrics": {}}))  # 1.1: no figures either
    assert not (await get(hub, project, "1.1")).HasField("metrics")
    assert empty.promotion.state == PROMOTED
    assert "without held-out metrics" in empty.promotion.reason
    # A training's model always comes measured; without held-out images it cannot pass the gate.
    unmeasured = await upload(hub, project, make_zip({**MODEL_JSON, "training_id": "t-1"}))
    assert unmeasured.promotion.state == HELD
    assert "training t-1" in unmeasured.promotion.reason
    assert (await deployment(hub, project)).resolved_version == "1.1"
    # The CLI shows none either, not 0.000; and why the held one waits.
    listed = await asyncio.to_thread(models_list, hub, project)
    assert listed[1:] == ["* 1.1\tonnx\tmAP50=-", "  1.0\tonnx\tmAP50=-"]
    assert listed[0].startswith("  1.2\tonnx\tmAP50=-\theld: training t-1 published it without held-out metrics")


def models_list(hub: HubClient, ref: project_pb.ProjectRef) -> list[str]:
    """``visionloop models list`` against the hub: a header-less line per version."""
    arguments = ["models", "list", "--loop-host", f"127.0.0.1:{hub.port}", "--org", ref.organization]
    result = CliRunner().invoke(cli, [*arguments, "--project", ref.project])
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line[:2] in ("* ", "  ")]  # not the hub's log


async def test_pinning_deploys_a_held_version_and_following_returns(
    hub: HubClient, project: project_pb.ProjectRef
) -> None:
    await upload(hub, project, trained(0.9))
    await upload(hub, project, trained(0.1, baselines={"1.0": 0.9}))
    pin = deploy_pb.SetDeploymentRequest(ref=project, policy=deploy_pb.DEPLOYMENT_POLICY_PINNED, pinned_version="1.1")
    assert (await hub.deployments.SetDeployment(pin)).deployment.resolved_version == "1.1"
    rolled = (await hub.deployments.RollbackDeployment(deploy_pb.RollbackDeploymentRequest(ref=project))).deployment
    assert (rolled.policy, rolled.resolved_version) == (deploy_pb.DEPLOYMENT_POLICY_FOLLOW_LATEST, "1.0")


async def test_metrics_a_version_brings_are_checked(hub: HubClient, project: project_pb.ProjectRef) -> None:
    for bad, field in (
        (trained(1.2), "map50"),
        (trained(0.5, images=-1), "image_count"),
        (trained(0.5, baselines={"1.0": 7.0}), "baselines of 1.0"),
        (trained(0.5, baselines={"latest": 0.5}), "baselines.version"),
    ):
        assert field in await expect_error(grpc.StatusCode.INVALID_ARGUMENT, upload(hub, project, bad))
    # The decision is the registry's: an upload cannot bring its own.
    claimed = await upload(hub, project, trained(0.5, promotion={"state": "PROMOTION_STATE_HELD", "reason": "mine"}))
    assert claimed.promotion.state == PROMOTED
    assert claimed.promotion.reason != "mine"


async def test_the_tolerance_is_the_hubs_setting(tmp_path: Path) -> None:
    settings = LoopSettings(port=0, host="127.0.0.1", data_dir=tmp_path / "hub", promotion_tolerance=0.05)
    async with running_hub(settings) as hub:
        ref = project_pb.ProjectRef(organization="acme", project="weeds")
        await hub.projects.CreateProject(project_pb.CreateProjectRequest(project=project_pb.Project(ref=ref)))
        await upload(hub, ref, trained(0.8))
        within = await upload(hub, ref, trained(0.76, baselines={"1.0": 0.8}))
        assert within.promotion.state == PROMOTED
        assert within.promotion.tolerance == pytest.approx(0.05)
        beyond = await upload(hub, ref, trained(0.7, baselines={"1.1": 0.76}))
        assert beyond.promotion.state == HELD
        assert "tolerance 0.050" in beyond.promotion.reason


def test_versions_published_before_the_gate_count_as_promoted(tmp_path: Path) -> None:
    """Migration 0005 on a hub with models: they were deployed as they came, so they stay deployable."""
    database = Database(f"sqlite:///{tmp_path / 'loop.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        now = {"now": utcnow()}
        connection.execute(
            text(
                "INSERT INTO projects (organization, name, display_name, description, create_time) "
                "VALUES ('acme', 'weeds', '', '', :now)"
            ),
            now,
        )
        connection.execute(
            text(
                "INSERT INTO models (id, project_pk, major, minor, base_model_version, training_id, variant, "
                "comment, metrics, create_time) VALUES ('m-1', 1, 1, 0, '', '', '', '', NULL, :now)"
            ),
            now,
        )
    database.migrate()
    try:
        model = database.read_sync(lambda s: s.scalars(select(schema.Model)).one())
        assert model.promoted
        assert promotion_of(model).state == PROMOTED
        project = database.read_sync(lambda s: s.scalars(select(schema.Project)).one())
        assert database.read_sync(lambda s: latest_version(s, project, promoted=True)) == "1.0"
    finally:
        database.close()
