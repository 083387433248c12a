"""Deployment targets: follow latest, pin, roll back, and watchers that see every change."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc import StatusCode as Code
from sqlalchemy import select

from tests.hub.conftest import HubClient
from visionloop.loop.v1 import deployment_service_pb2 as pb
from visionloop.loop.v1 import event_service_pb2, project_service_pb2
from visionloop.server.hub.db import schema
from visionloop.server.hub.state import get_project, utcnow

FOLLOW, PINNED = pb.DEPLOYMENT_POLICY_FOLLOW_LATEST, pb.DEPLOYMENT_POLICY_PINNED


async def add_model(hub: HubClient, ref: project_service_pb2.ProjectRef, version: str) -> None:
    """A model row as the model registry would write it (wakes watchers like a publish does)."""
    major, minor = (int(part) for part in version.split("."))

    def add(session) -> None:
        project = get_project(session, ref)
        session.add(
            schema.Model(id=str(uuid.uuid4()), project_pk=project.pk, major=major, minor=minor, create_time=utcnow())
        )

    await hub.hub.db.write(add)
    hub.hub.events.notify()


async def current(hub: HubClient, ref: project_service_pb2.ProjectRef) -> pb.Deployment:
    return (await hub.deployments.GetDeployment(pb.GetDeploymentRequest(ref=ref))).deployment


async def set_(hub: HubClient, ref: project_service_pb2.ProjectRef, policy: int, version: str = "") -> pb.Deployment:
    request = pb.SetDeploymentRequest(ref=ref, policy=policy, pinned_version=version)
    return (await hub.deployments.SetDeployment(request)).deployment


async def rollback(hub: HubClient, ref: project_service_pb2.ProjectRef) -> pb.Deployment:
    return (await hub.deployments.RollbackDeployment(pb.RollbackDeploymentRequest(ref=ref))).deployment


async def fails(call, code: Code) -> str:
    """The details of the error ``call`` fails with, which must have ``code``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


def target(deployment: pb.Deployment) -> tuple[int, str, str, int]:
    return deployment.policy, deployment.pinned_version, deployment.resolved_version, deployment.revision


async def test_default_follows_the_newest_version(hub: HubClient, project) -> None:
    fresh = await current(hub, project)
    assert target(fresh) == (FOLLOW, "", "", 0)
    assert (fresh.ref.organization, fresh.ref.project) == ("acme", "weeds")
    for version in ("1.9", "1.10", "0.20"):
        await add_model(hub, project, version)
    assert (await current(hub, project)).resolved_version == "1.10"  # numeric, not lexical
    await add_model(hub, project, "2.0")
    assert (await current(hub, project)).resolved_version == "2.0"


async def test_pin_and_follow(hub: HubClient, project) -> None:
    await add_model(hub, project, "1.0")
    await add_model(hub, project, "1.1")
    pinned = await set_(hub, project, PINNED, "1.0")
    assert target(pinned) == (PINNED, "1.0", "1.0", 1)
    assert pinned.HasField("update_time")
    await add_model(hub, project, "1.2")
    assert (await current(hub, project)).resolved_version == "1.0"  # a pin ignores new versions
    assert target(await set_(hub, project, pb.DEPLOYMENT_POLICY_UNSPECIFIED)) == (FOLLOW, "", "1.2", 2)

    def subjects(session) -> list[str]:
        query = select(schema.Event.subject).where(schema.Event.type == event_service_pb2.EVENT_TYPE_DEPLOYMENT_CHANGED)
        return list(session.scalars(query.order_by(schema.Event.seq)))

    assert await hub.hub.db.read(subjects) == ["1.0", "1.2"]


async def test_set_rejects_bad_targets(hub: HubClient, project) -> None:
    await add_model(hub, project, "1.0")
    assert "pinned_version" in await fails(set_(hub, project, PINNED), Code.INVALID_ARGUMENT)
    assert "major.minor" in await fails(set_(hub, project, PINNED, "latest"), Code.INVALID_ARGUMENT)
    assert "3.0" in await fails(set_(hub, project, PINNED, "3.0"), Code.NOT_FOUND)
    await fails(set_(hub, project, FOLLOW, "1.0"), Code.INVALID_ARGUMENT)
    await fails(set_(hub, project, 7), Code.INVALID_ARGUMENT)
    missing = project_service_pb2.ProjectRef(organization="acme", project="nope")
    await fails(set_(hub, missing, FOLLOW), Code.NOT_FOUND)
    await fails(current(hub, missing), Code.NOT_FOUND)
    assert (await current(hub, project)).revision == 0  # nothing was written


async def test_rollback(hub: HubClient, project) -> None:
    assert "nothing to roll back" in await fails(rollback(hub, project), Code.FAILED_PRECONDITION)
    for version in ("1.0", "1.1", "2.0"):
        await add_model(hub, project, version)

    await set_(hub, project, PINNED, "1.0")
    await set_(hub, project, PINNED, "1.1")
    assert target(await rollback(hub, project)) == (PINNED, "1.0", "1.0", 3)
    assert target(await rollback(hub, project)) == (PINNED, "1.1", "1.1", 4)  # a second rollback undoes the first
    await set_(hub, project, PINNED, "1.1")  # the same target again is no step to roll back to
    assert target(await rollback(hub, project)) == (PINNED, "1.0", "1.0", 6)


async def test_first_change_rolls_back_to_follow_latest(hub: HubClient, project) -> None:
    await add_model(hub, project, "1.0")
    await add_model(hub, project, "1.1")
    await set_(hub, project, PINNED, "1.0")
    assert target(await rollback(hub, project)) == (FOLLOW, "", "1.1", 2)

    other = project_service_pb2.ProjectRef(organization="acme", project="other")
    await hub.projects.CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=other))
    )
    await set_(hub, other, FOLLOW)  # the same as the implicit target: nothing different to return to
    await fails(rollback(hub, other), Code.FAILED_PRECONDITION)


async def test_watch_sends_current_then_changes(hub: HubClient, project) -> None:
    await add_model(hub, project, "1.0")
    watch = hub.deployments.WatchDeployment(pb.WatchDeploymentRequest(ref=project))

    async def next_target() -> tuple[int, str, str, int]:
        return target((await asyncio.wait_for(watch.read(), 5)).deployment)

    assert await next_target() == (FOLLOW, "", "1.0", 0)
    await add_model(hub, project, "1.1")  # a new model moves a follow-latest target without a revision
    assert await next_target() == (FOLLOW, "", "1.1", 0)
    await set_(hub, project, PINNED, "1.0")
    assert await next_target() == (PINNED, "1.0", "1.0", 1)
    await add_model(hub, project, "1.2")  # no change for a pinned target: nothing is sent
    await rollback(hub, project)
    assert await next_target() == (FOLLOW, "", "1.2", 2)

    watch.cancel()
    assert await watch.code() is Code.CANCELLED
    assert (await current(hub, project)).revision == 2  # the hub serves on after the cancel


async def test_watch_unknown_project(hub: HubClient) -> None:
    missing = project_service_pb2.ProjectRef(organization="acme", project="nope")
    watch = hub.deployments.WatchDeployment(pb.WatchDeploymentRequest(ref=missing))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch.read()
    assert caught.value.code() is Code.NOT_FOUND
