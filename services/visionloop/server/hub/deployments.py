"""Deployment targets per project: follow latest, pin, roll back, watch.

Following latest means the newest version the promotion gate promoted (``promotion.py``); a pin
deploys any version, held ones too. A project without a deployment row follows latest at revision
0. Every change bumps the revision and is kept in the history; rollback restores the newest
earlier target that differs from the current one, as a new revision (so two rollbacks toggle,
like ``cd -``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import structlog
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from visionloop.loop.v1 import deployment_service_pb2 as pb
from visionloop.loop.v1 import deployment_service_pb2_grpc, event_service_pb2, project_service_pb2
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from visionloop.server.hub.db import schema
from visionloop.server.hub.promotion import promotion_of
from visionloop.server.hub.state import Hub, check_ref, get_project, utcnow
from visionloop.server.hub.versions import find_model, latest_model, latest_version, parse_version, version_formats

FOLLOW_LATEST = pb.DEPLOYMENT_POLICY_FOLLOW_LATEST
PINNED = pb.DEPLOYMENT_POLICY_PINNED

ChangeFn = Callable[[Session], schema.Project]  # a change of target; returns the project it changed


def lock_project(session: Session, ref: project_service_pb2.ProjectRef) -> schema.Project:
    """The project, with its per-project counters (training numbers, revisions) locked for this transaction.

    SQLite writers already hold the database lock. On PostgreSQL, FOR NO KEY UPDATE serializes
    these writers without blocking inserts that merely reference the project (their FK checks
    take KEY SHARE locks).
    """
    project = get_project(session, ref)
    session.execute(select(schema.Project.pk).where(schema.Project.pk == project.pk).with_for_update(key_share=True))
    return project


def _caller() -> str:
    """The caller's role as authenticated by the auth interceptor; empty when auth is off."""
    return str(structlog.contextvars.get_contextvars().get("role", ""))


def follows_latest(session: Session, project: schema.Project) -> bool:
    """True when the project's target moves with every new version."""
    row = session.get(schema.Deployment, project.pk)
    return row is None or row.policy == FOLLOW_LATEST


def deployment_message(session: Session, project: schema.Project) -> pb.Deployment:
    row = session.get(schema.Deployment, project.pk)
    message = pb.Deployment(
        ref=project_service_pb2.ProjectRef(organization=project.organization, project=project.name),
        policy=FOLLOW_LATEST,
    )
    if row is not None:
        message.policy = row.policy  # type: ignore[assignment]
        message.pinned_version = row.pinned_version
        message.revision = row.revision
        message.update_time.FromDatetime(row.update_time)
        message.updated_by = row.updated_by
    pinned = message.policy == PINNED
    message.resolved_version = message.pinned_version if pinned else latest_version(session, project, promoted=True)
    if message.resolved_version:
        message.resolved_formats.extend(version_formats(session, project, message.resolved_version))
    newest = latest_model(session, project)
    if newest is not None:
        message.latest_version = newest.version
        message.latest_promotion.CopyFrom(promotion_of(newest))
    return message


def _record(session: Session, project: schema.Project, policy: int, pinned_version: str, by: str) -> None:
    """Make (policy, pinned_version) the project's target as a new revision, with its history entry."""
    now = utcnow()
    row = session.get(schema.Deployment, project.pk)
    if row is None:
        row = schema.Deployment(project_pk=project.pk, policy=FOLLOW_LATEST, pinned_version="", revision=0)
        session.add(row)
        # The implicit first target is history too, so the first change can be rolled back.
        session.add(
            schema.DeploymentHistory(
                project_pk=project.pk, revision=0, policy=FOLLOW_LATEST, pinned_version="", time=project.create_time
            )
        )
    row.revision += 1
    row.policy = policy
    row.pinned_version = pinned_version
    row.update_time = now
    row.updated_by = by
    session.add(
        schema.DeploymentHistory(
            project_pk=project.pk, revision=row.revision, policy=policy, pinned_version=pinned_version, time=now
        )
    )


def _check_target(request: pb.SetDeploymentRequest) -> tuple[int, str]:
    """(policy, pinned version) as stored; unspecified means follow latest."""
    if request.policy == PINNED:
        if not request.pinned_version:
            raise InvalidArgument("pinned_version is required with DEPLOYMENT_POLICY_PINNED, e.g. 1.3")
        parse_version(request.pinned_version, "pinned_version")
        return PINNED, request.pinned_version
    if request.policy not in (FOLLOW_LATEST, pb.DEPLOYMENT_POLICY_UNSPECIFIED):
        raise InvalidArgument(f"unknown policy {request.policy}; use FOLLOW_LATEST or PINNED")
    if request.pinned_version:
        raise InvalidArgument("pinned_version is only used with DEPLOYMENT_POLICY_PINNED; leave it empty")
    return FOLLOW_LATEST, ""


class DeploymentServicer(deployment_service_pb2_grpc.DeploymentServiceServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def _change(self, change: ChangeFn) -> pb.Deployment:
        """Run ``change`` under the project lock, record the DEPLOYMENT_CHANGED event and wake watchers."""

        def write(session: Session) -> pb.Deployment:
            project = change(session)
            deployment = deployment_message(session, project)
            self.hub.events.append(
                session, event_service_pb2.EVENT_TYPE_DEPLOYMENT_CHANGED, project, deployment.resolved_version
            )
            return deployment

        deployment = await self.hub.db.write(write)
        self.hub.events.notify()
        return deployment

    async def GetDeployment(
        self, request: pb.GetDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeploymentResponse:
        check_ref(request.ref)
        deployment = await self.hub.db.read(lambda s: deployment_message(s, get_project(s, request.ref)))
        return pb.GetDeploymentResponse(deployment=deployment)

    async def SetDeployment(
        self, request: pb.SetDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetDeploymentResponse:
        check_ref(request.ref)
        policy, pinned_version = _check_target(request)
        by = _caller()

        def set_(session: Session) -> schema.Project:
            project = lock_project(session, request.ref)
            if (
                pinned_version
                and find_model(session, project, *parse_version(pinned_version, "pinned_version")) is None
            ):
                raise NotFound(
                    f"model version {pinned_version} does not exist in {project.organization}/{project.name}; "
                    "list versions with ModelService.ListModels"
                )
            _record(session, project, policy, pinned_version, by)
            return project

        return pb.SetDeploymentResponse(deployment=await self._change(set_))

    async def RollbackDeployment(
        self, request: pb.RollbackDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RollbackDeploymentResponse:
        check_ref(request.ref)
        by = _caller()

        def rollback(session: Session) -> schema.Project:
            project = lock_project(session, request.ref)
            name = f"{project.organization}/{project.name}"
            current = session.get(schema.Deployment, project.pk)
            if current is None:
                raise FailedPrecondition(f"{name} never changed its deployment target; there is nothing to roll back")
            history = schema.DeploymentHistory
            previous = session.scalars(
                select(history)
                .where(
                    history.project_pk == project.pk,
                    history.revision < current.revision,
                    or_(history.policy != current.policy, history.pinned_version != current.pinned_version),
                )
                .order_by(history.revision.desc())
                .limit(1)
            ).first()
            if previous is None:
                raise FailedPrecondition(
                    f"{name} had no other deployment target before this one; set one with SetDeployment"
                )
            _record(session, project, previous.policy, previous.pinned_version, by)
            return project

        return pb.RollbackDeploymentResponse(deployment=await self._change(rollback))

    async def WatchDeployment(
        self, request: pb.WatchDeploymentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchDeploymentResponse]:
        check_ref(request.ref)
        sent: tuple[int, str, tuple[str, ...]] | None = None
        while True:
            generation = self.hub.events.generation
            deployment = await self.hub.db.read(lambda s: deployment_message(s, get_project(s, request.ref)))
            # The resolved version counts too: a new model moves a follow-latest target without a revision.
            current = (deployment.revision, deployment.resolved_version, tuple(deployment.resolved_formats))
            if current != sent:
                sent = current
                yield pb.WatchDeploymentResponse(deployment=deployment)
            await self.hub.events.wait(generation)  # returns on the next event or after the poll interval
