"""The training queue with leases.

A trainer claims a training under a lease and renews it with every status update. When the
trainer dies the lease runs out; another trainer then claims the training and resumes from the
stored status. Claims lock the candidate row (SQLite: the write lock every write transaction
takes; PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so two trainers never hold one training.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import grpc
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from visionloop.common.v1 import node_pb2, training_pb2
from visionloop.lib import hyperparameters
from visionloop.loop.v1 import event_service_pb2, training_service_pb2_grpc
from visionloop.loop.v1 import training_service_pb2 as pb
from visionloop.runtime import access
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from visionloop.server.hub.db import schema
from visionloop.server.hub.deployments import lock_project
from visionloop.server.hub.protos import to_timestamp
from visionloop.server.hub.state import Hub, check_in_scope, check_ref, get_project
from visionloop.server.hub.versions import find_model, parse_version

DEFAULT_FORMATS = ("pytorch", "onnx")
QUEUED = training_pb2.TRAINING_PHASE_QUEUED
RUNNING = training_pb2.TRAINING_PHASE_RUNNING
FINAL_PHASES = frozenset(
    {
        training_pb2.TRAINING_PHASE_SUCCEEDED,
        training_pb2.TRAINING_PHASE_FAILED,
        training_pb2.TRAINING_PHASE_STOPPED,
        training_pb2.TRAINING_PHASE_ABORTED,
    }
)
_MAX_NODE_ID = 128
_MAX_VARIANT = 64


def phase_name(phase: int) -> str:
    return training_pb2.TrainingPhase.Name(phase).removeprefix("TRAINING_PHASE_").lower()


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


def training_message(row: schema.Training, project: schema.Project) -> training_pb2.Training:
    return training_pb2.Training(
        id=row.id,
        # Organization too: a trainer claiming from any project needs both to fetch the data.
        project=f"{project.organization}/{project.name}",
        number=row.number,
        spec=training_pb2.TrainingSpec.FromString(row.spec),
        phase=row.phase,  # type: ignore[arg-type]
        status=training_pb2.TrainingStatus.FromString(row.status) if row.status else None,
        trainer_node_id=row.trainer_node_id,
        lease_expire_time=to_timestamp(row.lease_expire_time),
        stop_requested=row.stop_requested,
        abort_requested=row.abort_requested,
        result_model_version=row.result_model_version,
        create_time=to_timestamp(row.create_time),
        end_time=to_timestamp(row.end_time),
    )


def _project(session: Session, row: schema.Training) -> schema.Project:
    project = session.get(schema.Project, row.project_pk)
    assert project is not None  # trainings are deleted with their project
    return project


def _message(session: Session, row: schema.Training) -> training_pb2.Training:
    return training_message(row, _project(session, row))


def _require(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")


def _check_node_id(node_id: str) -> None:
    _require(node_id, "node_id")
    if len(node_id) > _MAX_NODE_ID:
        raise InvalidArgument(f"node_id is longer than {_MAX_NODE_ID} characters")


def _locked_training(session: Session, training_id: str) -> schema.Training:
    """The training, row-locked on PostgreSQL so a concurrent claim or update waits for us."""
    row = session.scalars(
        select(schema.Training).where(schema.Training.id == training_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"training {training_id!r} does not exist; list trainings with ListTrainings")
    check_in_scope(_project(session, row))
    return row


def _check_lease(row: schema.Training, node_id: str, now: datetime) -> None:
    """FAILED_PRECONDITION unless ``node_id`` holds the lease on ``row`` right now."""
    if row.phase in FINAL_PHASES:
        reason = f"the training already ended ({phase_name(row.phase)})"
    elif row.phase != RUNNING:
        reason = "nobody has claimed it; claim it with ClaimTraining first"
    elif row.trainer_node_id != node_id:
        reason = f"node {row.trainer_node_id!r} holds it now"
    elif row.lease_expire_time is None or row.lease_expire_time <= now:
        reason = "the lease expired; renew it more often, and claim the training again to resume"
    else:
        return
    raise FailedPrecondition(
        f"node {node_id!r} lost the lease on training {row.id}: {reason}; stop working on this training"
    )


def _claim_own(
    session: Session, training_id: str, node_id: str, now: datetime, lease: timedelta
) -> training_pb2.Training:
    """Claim one training by id: a trainer resuming after a restart, whose lease may have run out."""
    row = _locked_training(session, training_id)
    if row.phase in FINAL_PHASES:
        raise FailedPrecondition(f"training {row.id} already ended ({phase_name(row.phase)}); drop it")
    held = row.lease_expire_time is not None and row.lease_expire_time > now
    if row.phase == RUNNING and held and row.trainer_node_id != node_id:
        raise FailedPrecondition(f"node {row.trainer_node_id!r} holds training {row.id} now; drop it")
    if row.phase == RUNNING and row.abort_requested:
        _end(row, training_pb2.TRAINING_PHASE_ABORTED, now)  # the caller raises, after the commit
        return _message(session, row)
    row.phase = RUNNING
    row.trainer_node_id = node_id
    row.lease_expire_time = now + lease
    return _message(session, row)


def _end(row: schema.Training, phase: int, now: datetime) -> None:
    row.phase = phase
    row.end_time = now
    row.lease_expire_time = None


def _declared_variants(
    session: Session, project: schema.Project
) -> tuple[dict[str, training_pb2.ModelVariantSchema], set[str]]:
    """The model variants the project's trainers declare (the freshest heartbeat's declaration of
    each), and the variants they build when a training names none (their first)."""
    declared: dict[str, training_pb2.ModelVariantSchema] = {}
    defaults: set[str] = set()
    rows = session.scalars(
        select(schema.Node)
        .where(schema.Node.type == node_pb2.NODE_TYPE_TRAINER)
        .order_by(schema.Node.last_heartbeat_time.desc())
    )
    for row in rows:
        status = node_pb2.NodeStatus.FromString(row.status)
        if status.organization not in ("", project.organization) or status.project not in ("", project.name):
            continue
        for variant in status.model_variants:
            declared.setdefault(variant.name, variant)
        if status.capabilities:
            defaults.add(status.capabilities[0])
    return declared, defaults


def _check_hyperparameters(session: Session, project: schema.Project, spec: training_pb2.TrainingSpec) -> None:
    """INVALID_ARGUMENT naming the hyperparameter a trainer could not take: NaN, infinities and nulls
    always; wrong types and values out of range where the project's trainers declare the variant."""
    values = hyperparameters.from_struct(spec.hyperparameters)
    if problems := hyperparameters.generic_problems(values):
        raise InvalidArgument("spec.hyperparameters: " + "; ".join(problems))
    declared, defaults = _declared_variants(session, project)
    name = spec.model_variant or (next(iter(defaults)) if len(defaults) == 1 else "")
    variant = declared.get(name)
    if variant is None:
        return  # no trainer has declared it yet: the trainer verifies at the start of the training
    specs = [hyperparameters.Spec.from_proto(item) for item in variant.hyperparameters]
    checked = hyperparameters.check(values, specs, variant.name)
    if checked.errors:
        raise InvalidArgument(
            f"spec.hyperparameters do not fit model variant {variant.name} as its trainers declare it: "
            + "; ".join(checked.errors)
            + " (TrainerService.ListModelVariants lists its hyperparameters)"
        )


def _checked_spec(session: Session, project: schema.Project, spec: training_pb2.TrainingSpec) -> bytes:
    """The spec as stored (default formats filled in), or the error naming what is wrong with it."""
    stored = training_pb2.TrainingSpec()
    stored.CopyFrom(spec)
    if len(spec.model_variant) > _MAX_VARIANT:
        raise InvalidArgument(f"spec.model_variant is longer than {_MAX_VARIANT} characters")
    if any(not name for name in spec.formats):
        raise InvalidArgument('spec.formats must not contain empty names, e.g. ["pytorch", "onnx"]')
    if not spec.formats:
        stored.formats.extend(DEFAULT_FORMATS)
    _check_hyperparameters(session, project, spec)
    ids = list(spec.category_ids)
    if len(set(ids)) != len(ids):
        raise InvalidArgument("spec.category_ids lists a category twice; each id gives one model output")
    if ids:
        found = set(
            session.scalars(
                select(schema.Category.id).where(schema.Category.project_pk == project.pk, schema.Category.id.in_(ids))
            )
        )
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(
                f"categories {', '.join(missing)} do not exist in {project.organization}/{project.name}; "
                "list them with ProjectService.ListCategories"
            )
    if spec.base_model_version:
        major, minor = parse_version(spec.base_model_version, "spec.base_model_version")
        if find_model(session, project, major, minor) is None:
            raise NotFound(
                f"base model version {spec.base_model_version} does not exist in "
                f"{project.organization}/{project.name}; list versions with ModelService.ListModels"
            )
    return stored.SerializeToString()


class TrainingServicer(training_service_pb2_grpc.TrainingServiceServicer):
    # Class attributes so tests can shorten them.
    default_lease = timedelta(seconds=60)
    min_lease = timedelta(seconds=5)
    max_lease = timedelta(hours=1)

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def _lease(self, request: pb.ClaimTrainingRequest | pb.UpdateTrainingStatusRequest) -> timedelta:
        if not request.HasField("lease"):
            return self.default_lease
        lease = request.lease.ToTimedelta()
        if not self.min_lease <= lease <= self.max_lease:
            raise InvalidArgument(
                f"lease must be between {_seconds(self.min_lease)} and {_seconds(self.max_lease)}, "
                f"got {_seconds(lease)}; renew it with UpdateTrainingStatus instead of asking for a long one"
            )
        return lease

    async def CreateTraining(
        self, request: pb.CreateTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTrainingResponse:
        check_ref(request.ref)

        def create(session: Session) -> training_pb2.Training:
            project = lock_project(session, request.ref)  # numbers are per project: one creator at a time
            spec = _checked_spec(session, project, request.spec)
            last = session.scalar(
                select(func.max(schema.Training.number)).where(schema.Training.project_pk == project.pk)
            )
            row = schema.Training(
                id=str(uuid.uuid4()),
                project_pk=project.pk,
                number=(last or 0) + 1,
                spec=spec,
                model_variant=request.spec.model_variant,
                phase=QUEUED,
                status=b"",
                trainer_node_id="",
                stop_requested=False,
                abort_requested=False,
                result_model_version="",
                create_time=self.hub.now(),
            )
            session.add(row)
            self.hub.events.append(session, event_service_pb2.EVENT_TYPE_TRAINING_REQUESTED, project, row.id)
            return training_message(row, project)

        training = await self.hub.db.write(create)
        self.hub.events.notify()
        return pb.CreateTrainingResponse(training=training)

    async def GetTraining(
        self, request: pb.GetTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrainingResponse:
        _require(request.training_id, "training_id")

        def get(session: Session) -> training_pb2.Training:
            row = session.get(schema.Training, request.training_id)
            if row is None:
                raise NotFound(f"training {request.training_id!r} does not exist; list trainings with ListTrainings")
            check_in_scope(_project(session, row))
            return _message(session, row)

        return pb.GetTrainingResponse(training=await self.hub.db.read(get))

    async def ListTrainings(
        self, request: pb.ListTrainingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTrainingsResponse:
        check_ref(request.ref)

        def list_(session: Session) -> list[training_pb2.Training]:
            project = get_project(session, request.ref)
            query = (
                select(schema.Training)
                .where(schema.Training.project_pk == project.pk)
                .order_by(schema.Training.number.desc())
            )
            if request.phases:
                query = query.where(schema.Training.phase.in_(list(request.phases)))
            return [training_message(row, project) for row in session.scalars(query)]

        return pb.ListTrainingsResponse(trainings=await self.hub.db.read(list_))

    async def ClaimTraining(
        self, request: pb.ClaimTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClaimTrainingResponse:
        _check_node_id(request.node_id)
        lease = self._lease(request)
        by_project = bool(request.ref.organization or request.ref.project)
        if by_project:
            check_ref(request.ref)
        elif not request.training_id:
            access.check_every_project("ref")
        variants = list(request.model_variants)

        def claim(session: Session) -> training_pb2.Training | None:
            project = get_project(session, request.ref) if by_project else None
            now = self.hub.now()
            if request.training_id:
                return _claim_own(session, request.training_id, request.node_id, now, lease)
            claimable = or_(
                schema.Training.phase == QUEUED,
                and_(schema.Training.phase == RUNNING, schema.Training.lease_expire_time < now),
            )
            query = select(schema.Training).where(claimable)
            if project is not None:
                query = query.where(schema.Training.project_pk == project.pk)
            if variants:
                # A training without a variant leaves the choice to the trainer.
                query = query.where(schema.Training.model_variant.in_([*variants, ""]))
            query = (
                query.order_by(schema.Training.create_time, schema.Training.number)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            while (row := session.scalars(query).first()) is not None:
                if row.phase == RUNNING and row.abort_requested:
                    # Its trainer died after an abort request: nothing to publish, so end it here.
                    _end(row, training_pb2.TRAINING_PHASE_ABORTED, now)
                    session.flush()
                    continue
                row.phase = RUNNING
                row.trainer_node_id = request.node_id
                row.lease_expire_time = now + lease
                return _message(session, row)
            return None  # not raised here: that would roll back trainings ended above

        training = await self.hub.db.write(claim)
        if training is not None and training.phase == training_pb2.TRAINING_PHASE_ABORTED:
            raise FailedPrecondition(f"training {training.id} was aborted; drop it")
        if training is None:
            where = f" in {request.ref.organization}/{request.ref.project}" if by_project else ""
            which = f" for model variants {', '.join(variants)}" if variants else ""
            raise NotFound(f"no training is queued{where}{which}; claim again later")
        return pb.ClaimTrainingResponse(training=training)

    async def UpdateTrainingStatus(
        self, request: pb.UpdateTrainingStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateTrainingStatusResponse:
        _require(request.training_id, "training_id")
        _check_node_id(request.node_id)
        lease = self._lease(request)

        def update(session: Session) -> training_pb2.Training:
            row = _locked_training(session, request.training_id)
            now = self.hub.now()
            _check_lease(row, request.node_id, now)
            status = training_pb2.TrainingStatus()
            status.CopyFrom(request.status)
            if not status.HasField("update_time"):
                status.update_time.FromDatetime(now)
            row.status = status.SerializeToString()
            row.lease_expire_time = now + lease
            return _message(session, row)

        return pb.UpdateTrainingStatusResponse(training=await self.hub.db.write(update))

    async def FinishTraining(
        self, request: pb.FinishTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.FinishTrainingResponse:
        _require(request.training_id, "training_id")
        _check_node_id(request.node_id)
        if request.phase not in FINAL_PHASES:
            raise InvalidArgument(
                f"phase must be final (succeeded, failed, stopped or aborted), got {phase_name(request.phase)}; "
                "report progress with UpdateTrainingStatus"
            )
        version = request.result_model_version
        parsed = parse_version(version, "result_model_version") if version else None

        def finish(session: Session) -> training_pb2.Training:
            row = _locked_training(session, request.training_id)
            if row.phase == request.phase and row.trainer_node_id == request.node_id:
                return _message(session, row)  # a retry whose first answer was lost
            now = self.hub.now()
            _check_lease(row, request.node_id, now)
            if parsed is not None:
                project = session.get(schema.Project, row.project_pk)
                assert project is not None
                if find_model(session, project, *parsed) is None:
                    raise NotFound(
                        f"model version {version} does not exist in {project.organization}/{project.name}; "
                        "upload it with ModelService.UploadModel before finishing the training"
                    )
            _end(row, request.phase, now)
            if request.HasField("status"):
                row.status = request.status.SerializeToString()
            row.result_model_version = version
            return _message(session, row)

        return pb.FinishTrainingResponse(training=await self.hub.db.write(finish))

    async def _request_end(self, training_id: str, abort: bool) -> training_pb2.Training:
        """Flag a stop or abort; a queued training nobody runs yet ends right away."""
        _require(training_id, "training_id")
        verb = "abort" if abort else "stop"

        def request_end(session: Session) -> training_pb2.Training:
            row = _locked_training(session, training_id)
            if row.phase in FINAL_PHASES:
                raise FailedPrecondition(
                    f"training {training_id} already ended ({phase_name(row.phase)}); there is nothing to {verb}"
                )
            if abort:
                row.abort_requested = True
            else:
                row.stop_requested = True
            if row.phase == QUEUED:
                phase = training_pb2.TRAINING_PHASE_ABORTED if abort else training_pb2.TRAINING_PHASE_STOPPED
                _end(row, phase, self.hub.now())
            event = (
                event_service_pb2.EVENT_TYPE_TRAINING_ABORT_REQUESTED
                if abort
                else event_service_pb2.EVENT_TYPE_TRAINING_STOP_REQUESTED
            )
            project = session.get(schema.Project, row.project_pk)
            self.hub.events.append(session, event, project, row.id)
            return _message(session, row)

        training = await self.hub.db.write(request_end)
        self.hub.events.notify()
        return training

    async def StopTraining(
        self, request: pb.StopTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopTrainingResponse:
        return pb.StopTrainingResponse(training=await self._request_end(request.training_id, abort=False))

    async def AbortTraining(
        self, request: pb.AbortTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.AbortTrainingResponse:
        return pb.AbortTrainingResponse(training=await self._request_end(request.training_id, abort=True))
