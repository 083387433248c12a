"""The training queue: numbering, claims under leases, hand-over after expiry, stop and abort."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc import StatusCode as Code
from sqlalchemy import select

from tests.hub.conftest import CHANNEL_OPTIONS, HubClient
from visionloop.common.v1 import category_pb2
from visionloop.common.v1 import training_pb2 as t
from visionloop.loop.v1 import event_service_pb2, project_service_pb2, training_service_pb2_grpc
from visionloop.loop.v1 import training_service_pb2 as pb
from visionloop.server.hub.db import schema
from visionloop.server.hub.state import get_project, utcnow

LEASE = 30  # seconds; tests move the hub clock past it instead of sleeping


def expire_leases(hub: HubClient) -> None:
    """Move the hub's clock past every lease taken with ``LEASE``."""
    hub.hub.clock_offset += timedelta(seconds=LEASE + 1)


def seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


async def add_model(hub: HubClient, ref: project_service_pb2.ProjectRef, version: str) -> None:
    major, minor = (int(part) for part in version.split("."))

    def add(session) -> None:
        project = get_project(session, ref)
        session.add(
            schema.Model(id=str(uuid.uuid4()), project_pk=project.pk, major=major, minor=minor, create_time=utcnow())
        )

    await hub.hub.db.write(add)


async def create(hub: HubClient, ref: project_service_pb2.ProjectRef, **spec) -> t.Training:
    request = pb.CreateTrainingRequest(ref=ref, spec=t.TrainingSpec(**spec))
    return (await hub.trainings.CreateTraining(request)).training


async def claim(hub: HubClient, node: str = "trainer-a", lease: float | None = 60, **kw) -> t.Training:
    request = pb.ClaimTrainingRequest(node_id=node, lease=seconds(lease) if lease else None, **kw)
    return (await hub.trainings.ClaimTraining(request)).training


async def update(hub: HubClient, training_id: str, node: str = "trainer-a", lease: float = 60, **status) -> t.Training:
    request = pb.UpdateTrainingStatusRequest(
        training_id=training_id, node_id=node, status=t.TrainingStatus(**status), lease=seconds(lease)
    )
    return (await hub.trainings.UpdateTrainingStatus(request)).training


async def finish(
    hub: HubClient, training_id: str, phase: int, node: str = "trainer-a", version: str = ""
) -> t.Training:
    request = pb.FinishTrainingRequest(training_id=training_id, node_id=node, phase=phase, result_model_version=version)
    return (await hub.trainings.FinishTraining(request)).training


async def fails(call, code: Code) -> str:
    """The details of the error ``call`` fails with, which must have ``code``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


async def events(hub: HubClient, type_: int) -> list[str]:
    def read(session) -> list[str]:
        return list(session.scalars(select(schema.Event.subject).where(schema.Event.type == type_)))

    return await hub.hub.db.read(read)


async def test_numbers_defaults_and_event(hub: HubClient, project) -> None:
    first = await create(hub, project, model_variant="centernet_small")
    assert (first.number, first.phase, first.project) == (1, t.TRAINING_PHASE_QUEUED, "acme/weeds")
    assert list(first.spec.formats) == ["pytorch", "onnx"]
    assert first.spec.model_variant == "centernet_small"
    assert (first.trainer_node_id, first.HasField("lease_expire_time")) == ("", False)
    assert [(await create(hub, project)).number for _ in range(2)] == [2, 3]
    assert first.id in await events(hub, event_service_pb2.EVENT_TYPE_TRAINING_REQUESTED)


async def test_concurrent_creates_get_distinct_numbers(hub: HubClient, project) -> None:
    created = await asyncio.gather(*(create(hub, project) for _ in range(6)))
    assert sorted(c.number for c in created) == [1, 2, 3, 4, 5, 6]


async def test_create_validates_spec(hub: HubClient, project) -> None:
    category = (
        await hub.projects.CreateCategory(
            project_service_pb2.CreateCategoryRequest(
                ref=project, category=category_pb2.Category(name="weed", type=category_pb2.CATEGORY_TYPE_BOX)
            )
        )
    ).category
    assert "nope" in await fails(create(hub, project, category_ids=[category.id, "nope"]), Code.NOT_FOUND)
    await fails(create(hub, project, category_ids=[category.id, category.id]), Code.INVALID_ARGUMENT)
    assert "major.minor" in await fails(create(hub, project, base_model_version="v1"), Code.INVALID_ARGUMENT)
    assert "1.0" in await fails(create(hub, project, base_model_version="1.0"), Code.NOT_FOUND)
    await fails(create(hub, project, formats=["onnx", ""]), Code.INVALID_ARGUMENT)
    await fails(create(hub, project_service_pb2.ProjectRef(organization="acme")), Code.INVALID_ARGUMENT)
    await fails(create(hub, project_service_pb2.ProjectRef(organization="acme", project="nope")), Code.NOT_FOUND)

    await add_model(hub, project, "1.0")
    made = await create(hub, project, category_ids=[category.id], base_model_version="1.0", formats=["onnx"])
    assert (made.number, list(made.spec.formats), made.spec.base_model_version) == (1, ["onnx"], "1.0")


async def test_claim_takes_oldest_matching_variant(hub: HubClient, project) -> None:
    small = await create(hub, project, model_variant="small")
    large = await create(hub, project, model_variant="large")
    anything = await create(hub, project)

    assert (await claim(hub, model_variants=["large"])).id == large.id
    got = await claim(hub, model_variants=["tiny"])  # a training without a variant suits any trainer
    assert got.id == anything.id
    assert (got.phase, got.trainer_node_id, got.HasField("lease_expire_time")) == (
        t.TRAINING_PHASE_RUNNING,
        "trainer-a",
        True,
    )
    other = project_service_pb2.ProjectRef(organization="acme", project="other")
    await hub.projects.CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=other))
    )
    assert "no training is queued" in await fails(claim(hub, ref=other), Code.NOT_FOUND)
    assert (await claim(hub, ref=project)).id == small.id
    assert "no training is queued" in await fails(claim(hub), Code.NOT_FOUND)


async def test_claim_validates_request(hub: HubClient, project) -> None:
    await fails(claim(hub, node=""), Code.INVALID_ARGUMENT)
    below_minimum = claim(hub, lease=1)  # the minimum is 5 s
    assert "lease" in await fails(below_minimum, Code.INVALID_ARGUMENT)
    await fails(claim(hub, lease=7200), Code.INVALID_ARGUMENT)
    await fails(claim(hub, ref=project_service_pb2.ProjectRef(organization="acme", project="nope")), Code.NOT_FOUND)

    await create(hub, project)
    got = await claim(hub, lease=None)  # default lease: a minute
    remaining = got.lease_expire_time.ToDatetime(tzinfo=UTC) - utcnow()
    assert timedelta(seconds=50) < remaining <= timedelta(seconds=61)


async def test_two_trainers_on_one_channel_one_wins(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    results = await asyncio.gather(claim(hub, "trainer-a"), claim(hub, "trainer-b"), return_exceptions=True)
    won = [r for r in results if isinstance(r, t.Training)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert [w.id for w in won] == [queued.id]
    assert [x.code() for x in lost] == [Code.NOT_FOUND]


async def test_trainers_on_separate_channels_never_share_a_training(hub: HubClient, project) -> None:
    queued = {(await create(hub, project)).id for _ in range(3)}
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{hub.port}", options=CHANNEL_OPTIONS) for _ in range(6)]
    try:
        stubs = [training_service_pb2_grpc.TrainingServiceStub(c) for c in channels]
        calls = [
            stub.ClaimTraining(pb.ClaimTrainingRequest(node_id=f"trainer-{i}", lease=seconds(60)))
            for i, stub in enumerate(stubs)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    won = [r.training.id for r in results if isinstance(r, pb.ClaimTrainingResponse)]
    lost = [r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert sorted(won) == sorted(queued)
    assert lost == [Code.NOT_FOUND] * 3


async def test_expired_lease_goes_to_another_trainer_with_status(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    await claim(hub, "trainer-a", lease=LEASE)
    await update(
        hub, queued.id, "trainer-a", lease=LEASE, state=t.TRAINING_STATE_TRAINING_RUNNING, epoch=3, total_epochs=30
    )
    expire_leases(hub)

    taken = await claim(hub, "trainer-b")
    assert (taken.id, taken.trainer_node_id) == (queued.id, "trainer-b")
    assert (taken.status.state, taken.status.epoch) == (t.TRAINING_STATE_TRAINING_RUNNING, 3)

    assert "lost the lease" in await fails(update(hub, queued.id, "trainer-a", epoch=4), Code.FAILED_PRECONDITION)
    await fails(finish(hub, queued.id, t.TRAINING_PHASE_SUCCEEDED, "trainer-a"), Code.FAILED_PRECONDITION)
    assert (await update(hub, queued.id, "trainer-b", epoch=4)).status.epoch == 4


async def test_holder_that_missed_its_renewal_loses_the_lease(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    await claim(hub, lease=LEASE)
    renewed = await update(hub, queued.id, lease=LEASE, epoch=1)
    assert renewed.status.HasField("update_time")  # filled in by the hub when the trainer leaves it out
    expire_leases(hub)
    assert "expired" in await fails(update(hub, queued.id, epoch=2), Code.FAILED_PRECONDITION)


async def test_status_updates_need_the_lease(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    assert "ClaimTraining" in await fails(update(hub, queued.id), Code.FAILED_PRECONDITION)
    await claim(hub, "trainer-a")
    assert "trainer-a" in await fails(update(hub, queued.id, "trainer-b"), Code.FAILED_PRECONDITION)
    await fails(update(hub, str(uuid.uuid4())), Code.NOT_FOUND)
    await fails(update(hub, ""), Code.INVALID_ARGUMENT)


async def test_stop_reaches_the_trainer_and_it_publishes(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    await claim(hub)
    stopped = (await hub.trainings.StopTraining(pb.StopTrainingRequest(training_id=queued.id))).training
    assert (stopped.phase, stopped.stop_requested) == (t.TRAINING_PHASE_RUNNING, True)
    assert (await update(hub, queued.id, state=t.TRAINING_STATE_TRAINING_FINISHED)).stop_requested
    assert queued.id in await events(hub, event_service_pb2.EVENT_TYPE_TRAINING_STOP_REQUESTED)

    assert "UploadModel" in await fails(finish(hub, queued.id, t.TRAINING_PHASE_STOPPED, version="1.0"), Code.NOT_FOUND)
    await add_model(hub, project, "1.0")
    done = await finish(hub, queued.id, t.TRAINING_PHASE_STOPPED, version="1.0")
    assert (done.phase, done.result_model_version) == (t.TRAINING_PHASE_STOPPED, "1.0")
    assert (done.HasField("end_time"), done.HasField("lease_expire_time")) == (True, False)
    assert done.status.state == t.TRAINING_STATE_TRAINING_FINISHED  # no final status sent: the last one stays
    # A retry whose answer was lost gets the same answer; anything else is refused.
    assert (await finish(hub, queued.id, t.TRAINING_PHASE_STOPPED, version="1.0")).end_time == done.end_time
    await fails(finish(hub, queued.id, t.TRAINING_PHASE_FAILED), Code.FAILED_PRECONDITION)
    await fails(hub.trainings.StopTraining(pb.StopTrainingRequest(training_id=queued.id)), Code.FAILED_PRECONDITION)


async def test_abort_reaches_the_trainer(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    await claim(hub)
    aborted = (await hub.trainings.AbortTraining(pb.AbortTrainingRequest(training_id=queued.id))).training
    assert (aborted.phase, aborted.abort_requested) == (t.TRAINING_PHASE_RUNNING, True)
    assert (await update(hub, queued.id)).abort_requested
    assert queued.id in await events(hub, event_service_pb2.EVENT_TYPE_TRAINING_ABORT_REQUESTED)
    failure = t.TrainingStatus(errors=[t.StepError(message="aborted", critical=True)])
    request = pb.FinishTrainingRequest(
        training_id=queued.id, node_id="trainer-a", phase=t.TRAINING_PHASE_ABORTED, status=failure
    )
    done = (await hub.trainings.FinishTraining(request)).training
    assert (done.phase, done.status.errors[0].message) == (t.TRAINING_PHASE_ABORTED, "aborted")


async def test_queued_trainings_end_at_once(hub: HubClient, project) -> None:
    first, second = await create(hub, project), await create(hub, project)
    aborted = (await hub.trainings.AbortTraining(pb.AbortTrainingRequest(training_id=first.id))).training
    assert (aborted.phase, aborted.abort_requested) == (t.TRAINING_PHASE_ABORTED, True)
    assert aborted.HasField("end_time")
    stopped = (await hub.trainings.StopTraining(pb.StopTrainingRequest(training_id=second.id))).training
    assert (stopped.phase, stopped.stop_requested) == (t.TRAINING_PHASE_STOPPED, True)
    await fails(claim(hub), Code.NOT_FOUND)
    abort_again = hub.trainings.AbortTraining(pb.AbortTrainingRequest(training_id=first.id))
    assert "already ended" in await fails(abort_again, Code.FAILED_PRECONDITION)
    await fails(hub.trainings.StopTraining(pb.StopTrainingRequest(training_id=str(uuid.uuid4()))), Code.NOT_FOUND)


async def test_abandoned_abort_is_ended_by_the_next_claim(hub: HubClient, project) -> None:
    doomed = await create(hub, project)
    await claim(hub, "trainer-a", lease=LEASE)
    await hub.trainings.AbortTraining(pb.AbortTrainingRequest(training_id=doomed.id))
    waiting = await create(hub, project)
    expire_leases(hub)  # trainer-a died without reading the abort
    assert (await claim(hub, "trainer-b")).id == waiting.id
    ended = (await hub.trainings.GetTraining(pb.GetTrainingRequest(training_id=doomed.id))).training
    assert (ended.phase, ended.HasField("end_time")) == (t.TRAINING_PHASE_ABORTED, True)


async def test_finish_needs_a_final_phase(hub: HubClient, project) -> None:
    queued = await create(hub, project)
    await claim(hub)
    assert "final" in await fails(finish(hub, queued.id, t.TRAINING_PHASE_RUNNING), Code.INVALID_ARGUMENT)
    await fails(finish(hub, queued.id, t.TRAINING_PHASE_SUCCEEDED, version="latest"), Code.INVALID_ARGUMENT)
    failed = await finish(hub, queued.id, t.TRAINING_PHASE_FAILED)
    assert (failed.phase, failed.result_model_version) == (t.TRAINING_PHASE_FAILED, "")


async def test_get_and_list(hub: HubClient, project) -> None:
    first, second, third = [await create(hub, project) for _ in range(3)]
    await claim(hub)
    listed = (await hub.trainings.ListTrainings(pb.ListTrainingsRequest(ref=project))).trainings
    assert [x.number for x in listed] == [3, 2, 1]
    running = await hub.trainings.ListTrainings(pb.ListTrainingsRequest(ref=project, phases=[t.TRAINING_PHASE_RUNNING]))
    assert [x.id for x in running.trainings] == [first.id]
    got = (await hub.trainings.GetTraining(pb.GetTrainingRequest(training_id=third.id))).training
    assert (got.number, got.phase) == (3, t.TRAINING_PHASE_QUEUED)
    await fails(hub.trainings.GetTraining(pb.GetTrainingRequest(training_id="missing")), Code.NOT_FOUND)
    await fails(hub.trainings.GetTraining(pb.GetTrainingRequest()), Code.INVALID_ARGUMENT)
    assert second.number == 2


async def test_a_restarted_trainer_claims_its_own_training_back(hub: HubClient, project) -> None:
    older = await create(hub, project)
    mine = await create(hub, project)
    await claim(hub, "trainer-a", lease=LEASE, training_id=mine.id)  # not the oldest: this one
    again = await claim(hub, "trainer-a", lease=LEASE, training_id=mine.id)  # holder renews
    assert (again.id, again.trainer_node_id) == (mine.id, "trainer-a")
    message = await fails(claim(hub, "trainer-b", training_id=mine.id), Code.FAILED_PRECONDITION)
    assert "trainer-a holds" in message.replace("'", "")

    expire_leases(hub)  # trainer-a was down longer than its lease, and nobody took it
    resumed = await claim(hub, "trainer-a", lease=LEASE, training_id=mine.id)
    assert resumed.phase == t.TRAINING_PHASE_RUNNING
    assert (await claim(hub, "trainer-b")).id == older.id

    await finish(hub, mine.id, t.TRAINING_PHASE_FAILED, "trainer-a")
    assert "ended" in await fails(claim(hub, "trainer-a", training_id=mine.id), Code.FAILED_PRECONDITION)


async def test_a_restarted_trainer_learns_its_training_was_aborted(hub: HubClient, project) -> None:
    mine = await create(hub, project)
    await claim(hub, "trainer-a", lease=LEASE)
    await hub.trainings.AbortTraining(pb.AbortTrainingRequest(training_id=mine.id))
    assert "aborted" in await fails(claim(hub, "trainer-a", training_id=mine.id), Code.FAILED_PRECONDITION)
    assert (await hub.trainings.GetTraining(pb.GetTrainingRequest(training_id=mine.id))).training.phase == (
        t.TRAINING_PHASE_ABORTED
    )
