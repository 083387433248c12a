"""A trainer that never wedges: the hub refuses hyperparameters no trainer could take, a training
that crashes anywhere ends failed with its reason while the next one trains, a training that
keeps killing the process is failed after a bounded number of runs, and a dead worker shows in
health, metrics, the node status and the log, and is restarted."""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from tests.detector.conftest import REF
from tests.trainer import tiny
from tests.trainer.conftest import Project, TrainerProcess, trainer_settings
from visionloop.common.v1 import node_pb2, training_pb2
from visionloop.lib.hyperparameters import to_struct
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc, training_service_pb2
from visionloop.runtime.server import GrpcServer
from visionloop.server.hub.db import schema
from visionloop.server.trainer import app as trainer_app
from visionloop.server.trainer.machine import TrainingMachine
from visionloop.testing.ports import free_port
from visionloop.trainer.v1 import trainer_service_pb2 as pb
from visionloop.trainer.v1 import trainer_service_pb2_grpc

T = training_pb2
TINY = "tests.trainer.tiny:TinyTrainer"


async def create(project: Project, variant: str = "", **hyperparameters: object) -> T.Training:
    spec = T.TrainingSpec(hyperparameters=to_struct(hyperparameters), model_variant=variant)
    request = training_service_pb2.CreateTrainingRequest(ref=REF, spec=spec)
    return (await project.trainings.CreateTraining(request)).training


async def refused(project: Project, **hyperparameters: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(project, **hyperparameters)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    return caught.value.details() or ""


async def start_trainer(project: Project, folder: Path, plugin: str = TINY, **overrides: object) -> GrpcServer:
    settings = trainer_settings(project, folder, trainer_plugin=plugin, **overrides)
    server = GrpcServer(trainer_app.create(settings), settings)
    await server.start()
    return server


async def trainer_nodes(project: Project) -> list[node_pb2.NodeStatus]:
    stub = node_service_pb2_grpc.NodeServiceStub(project.channel)
    request = node_service_pb2.ListNodesRequest(type=node_pb2.NODE_TYPE_TRAINER)
    return list((await stub.ListNodes(request)).nodes)


async def until(check: Callable[[], bool] | Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    """Wait for ``check`` (a coroutine function, or a blocking one run on a thread: the hub shares
    this event loop) to hold."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if asyncio.iscoroutinefunction(check):
            if await check():
                return
        elif await asyncio.to_thread(check):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


def succeeded(training: T.Training) -> bool:
    return training.phase == T.TRAINING_PHASE_SUCCEEDED


# --- the hub's checks -------------------------------------------------------------------------------


# Non-finite numbers are refused at the edge by the contract's checks (they name the field's path);
# a null, which the contract allows in a Struct, by the hub's hyperparameter rules.
@pytest.mark.parametrize(
    ("value", "said"),
    [
        (math.nan, ("CreateTrainingRequest.spec.hyperparameters.fields['learning_rate']", "nan is not a finite")),
        (math.inf, ("CreateTrainingRequest.spec.hyperparameters.fields['learning_rate']", "inf is not a finite")),
        (-math.inf, ("CreateTrainingRequest.spec.hyperparameters.fields['learning_rate']", "-inf is not a finite")),
        (None, ("spec.hyperparameters: ", "learning_rate is null")),
        ([0.1, {"warmup": math.nan}], ("fields['learning_rate']", "fields['warmup']", "nan is not a finite")),
    ],
)
async def test_the_hub_refuses_values_no_trainer_could_take(
    project: Project, value: object, said: tuple[str, ...]
) -> None:
    """Whatever the variant, with no trainer known yet: nothing reaches the queue."""
    message = await refused(project, epochs=3, learning_rate=value)
    assert all(part in message for part in said), message
    listed = await project.trainings.ListTrainings(training_service_pb2.ListTrainingsRequest(ref=REF))
    assert not listed.trainings


async def test_the_hub_checks_what_the_trainers_declare(project: Project, tmp_path: Path) -> None:
    trainer = await start_trainer(project, tmp_path / "trainer")
    try:
        # The trainer publishes its variants' hyperparameters with its node status...
        async def declared() -> bool:
            return any(n.model_variants for n in await trainer_nodes(project))

        await until(declared, "the trainer's variants reached the hub")
        (node,) = await trainer_nodes(project)
        (variant,) = node.model_variants
        specs = {h.name: h for h in variant.hyperparameters}
        assert specs["epochs"].type == T.HYPERPARAMETER_TYPE_INTEGER
        assert (specs["epochs"].minimum, specs["epochs"].maximum) == (1, 100)
        assert specs["augment"].type == T.HYPERPARAMETER_TYPE_BOOLEAN
        assert not specs["seed"].HasField("minimum")
        # ...and in ListModelVariants, for people.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{trainer.port}") as channel:
            listed = await trainer_service_pb2_grpc.TrainerServiceStub(channel).ListModelVariants(
                pb.ListModelVariantsRequest()
            )
        assert list(listed.variants[0].hyperparameters) == list(variant.hyperparameters)

        # The hub refuses what the variant cannot take, naming the hyperparameter, for the
        # trainer's default variant (none named) and for the variant by name.
        assert "epochs must be an integer, got 'ten'" in await refused(project, epochs="ten")
        assert "epochs must be an integer, got 2.5" in await refused(project, epochs=2.5)
        assert "augment must be true or false, got 1" in await refused(project, augment=1)
        message = await refused(project, epochs=1000, learning_rate=-1)
        assert "model variant tiny" in message
        assert "epochs must be between 1 and 100, got 1000" in message
        assert "learning_rate must be between 0 and 1, got -1" in message
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await create(project, variant=tiny.VARIANT, seed=False)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "seed must be an integer, got False" in (caught.value.details() or "")

        # Unknown names are the trainer's business (it warns and ignores them); good values train.
        created = await create(project, epochs=3, colour="blue")
        done = await project.ended(created.id)
        assert succeeded(done), done
        assert done.status.total_epochs == 3
    finally:
        await trainer.stop(0)


# --- trainings that crash ---------------------------------------------------------------------------


class Crash(BaseException):
    """Not an Exception: what a plug-in's sys.exit or a stray KeyboardInterrupt looks like."""


# Where a training can crash: each step of the state machine (reported in the state it ran in,
# "...ING"), and the machine's own work between steps (reported in the state it had reached).
CRASHES = [
    ("prepare", T.TRAINING_STATE_DATA_DOWNLOADING, Crash),
    ("download_base_model", T.TRAINING_STATE_TRAIN_MODEL_DOWNLOADING, Crash),
    ("train", T.TRAINING_STATE_TRAINING_RUNNING, Crash),
    ("evaluate", T.TRAINING_STATE_CONFUSION_MATRIX_SYNCING, Crash),
    ("upload_model", T.TRAINING_STATE_TRAIN_MODEL_UPLOADING, Crash),
    ("detect", T.TRAINING_STATE_DETECTING, Crash),
    ("upload_detections", T.TRAINING_STATE_DETECTION_UPLOADING, Crash),
    ("_has_model", T.TRAINING_STATE_CONFUSION_MATRIX_SYNCED, RuntimeError),
    # persisting the move into training, before the step's error handling begins
    ("_set_state", T.TRAINING_STATE_TRAIN_MODEL_DOWNLOADED, RuntimeError),
]


@pytest.mark.parametrize(("method", "state", "error"), CRASHES, ids=[c[0] for c in CRASHES])
async def test_a_training_that_crashes_anywhere_fails_and_the_next_trains(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, state: int, error: type
) -> None:
    bad = await create(project, epochs=2)
    good = await create(project, epochs=2)
    original = getattr(TrainingMachine, method)
    crashes = 0

    def crashing(self: TrainingMachine, *args: object, **kwargs: object) -> object:
        nonlocal crashes
        entering_training = args[:1] == (T.TRAINING_STATE_TRAINING_RUNNING,)
        if self.record.id == bad.id and (method != "_set_state" or entering_training):
            crashes += 1
            raise error(f"injected crash in {method}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TrainingMachine, method, crashing)
    restarts = REGISTRY.get_sample_value("visionloop_trainer_worker_crashes_total") or 0
    trainer = await start_trainer(project, tmp_path / "trainer", max_step_attempts=2)
    try:
        failed = await project.ended(bad.id)
        after = await project.ended(good.id)
    finally:
        await trainer.stop(0)
    assert failed.phase == T.TRAINING_PHASE_FAILED, failed
    assert not failed.result_model_version
    last = failed.status.errors[-1]
    assert (last.state, last.critical) == (state, True), failed.status.errors
    assert f"injected crash in {method}" in last.message
    assert crashes == 1  # nothing to retry: neither a crash that is no Exception nor one outside the steps
    assert succeeded(after), after
    assert (REGISTRY.get_sample_value("visionloop_trainer_worker_crashes_total") or 0) == restarts
    assert not any((tmp_path / "trainer" / "trainings").iterdir())


async def test_a_plugin_that_exits_fails_its_training_only(project: Project, tmp_path: Path) -> None:
    bad = await create(project, epochs=2, seed=tiny.POISON_SEED)
    good = await create(project, epochs=2)
    trainer = await start_trainer(project, tmp_path / "trainer", plugin="tests.trainer.tiny:ExitingTrainer")
    try:
        failed = await project.ended(bad.id)
        after = await project.ended(good.id)
    finally:
        await trainer.stop(0)
    assert failed.phase == T.TRAINING_PHASE_FAILED
    ((state, message, critical),) = [(e.state, e.message, e.critical) for e in failed.status.errors]
    assert (state, critical) == (T.TRAINING_STATE_TRAINING_RUNNING, True)
    assert message == "SystemExit: out of patience"
    assert succeeded(after), after


async def test_a_nan_that_reached_the_queue_fails_at_the_trainer(project: Project, tmp_path: Path) -> None:
    """A training queued by a hub without these checks (an older version) fails with its reason
    instead of killing the trainer; the one behind it trains."""
    bad = await create(project, epochs=2)
    good = await create(project, epochs=2)

    def poison(session: Session) -> None:  # what an older hub stored
        row = session.get(schema.Training, bad.id)
        assert row is not None
        spec = T.TrainingSpec.FromString(row.spec)
        spec.hyperparameters["learning_rate"] = math.nan
        row.spec = spec.SerializeToString()

    assert project.hub.server is not None
    await project.hub.server.spec.context.db.write(poison)
    trainer = await start_trainer(project, tmp_path / "trainer")
    try:
        failed = await project.ended(bad.id)
        after = await project.ended(good.id)
    finally:
        await trainer.stop(0)
    assert failed.phase == T.TRAINING_PHASE_FAILED
    (error,) = failed.status.errors
    assert (error.state, error.critical) == (T.TRAINING_STATE_DATA_DOWNLOADING, True)
    assert "learning_rate is NaN" in error.message
    assert succeeded(after), after


@pytest.mark.slow
async def test_a_training_that_keeps_killing_the_trainer_fails_after_bounded_runs(
    project: Project, tmp_path: Path
) -> None:
    process = TrainerProcess(
        project,
        tmp_path / "trainer",
        {"TRAINER_PLUGIN": "tests.trainer.tiny:KillingTrainer", "TRAINER_MAX_TRAINING_CRASHES": "2"},
    )
    bad = await create(project, epochs=2, seed=tiny.POISON_SEED)
    good = await create(project, epochs=2)
    starts = 0

    async def killed_or_failed() -> bool:
        assert process.process is not None
        training = await project.training(bad.id)
        return process.process.poll() is not None or training.phase == T.TRAINING_PHASE_FAILED

    try:
        while (await project.training(bad.id)).phase not in (T.TRAINING_PHASE_FAILED, T.TRAINING_PHASE_SUCCEEDED):
            assert starts < 5, "the trainer kept running the training that kills it"
            process.start()  # as a supervisor (systemd, Kubernetes) restarts it
            starts += 1
            await until(killed_or_failed, "killed, or the training failed", 120)
        failed = await project.training(bad.id)
        after = await project.ended(good.id)
    finally:
        await asyncio.to_thread(process.stop)  # the hub shares this event loop: keep it answering
    # The first run got somewhere (the data) before it was killed; the next two did not, so the
    # fourth start fails the training instead of running it.
    assert starts == 4
    assert failed.phase == T.TRAINING_PHASE_FAILED
    last = failed.status.errors[-1]
    assert (last.state, last.critical) == (T.TRAINING_STATE_TRAINING_RUNNING, True)
    assert "stopped 2 times while running this training" in last.message
    assert succeeded(after), after


# --- the worker -------------------------------------------------------------------------------------


def _metrics(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples if not s.labels}


def _health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.mark.slow
async def test_a_dead_worker_shows_everywhere_and_is_restarted(project: Project, tmp_path: Path) -> None:
    marker = tmp_path / "broken"
    marker.touch()
    port, metrics_port = free_port(), free_port()
    process = TrainerProcess(
        project,
        tmp_path / "trainer",
        {
            "TRAINER_PLUGIN": "tests.trainer.tiny:UnreachableCatalogueTrainer",
            "VISIONLOOP_TEST_BROKEN_MARKER": str(marker),
            "VISIONLOOP_PORT": str(port),
            "VISIONLOOP_METRICS_PORT": str(metrics_port),
        },
    )
    process.start()
    service = pb.DESCRIPTOR.services_by_name["TrainerService"].full_name
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING

    def dead() -> bool:
        try:
            return _health(port) == not_serving and _health(port, service) == not_serving
        except grpc.RpcError:
            return False  # not listening yet

    async def degraded() -> bool:
        nodes = await trainer_nodes(project)
        return any(n.state == node_pb2.NODE_STATE_DEGRADED and any(e.key == "worker" for e in n.errors) for n in nodes)

    try:
        await until(dead, "health NOT_SERVING while the worker is dead")
        seen = _metrics(metrics_port)
        assert seen["visionloop_trainer_worker_up"] == 0
        assert seen["visionloop_trainer_worker_crashes_total"] >= 1
        await until(degraded, "the hub lists the node DEGRADED with the worker's error")
        (node,) = await trainer_nodes(project)
        (error,) = [e for e in node.errors if e.key == "worker"]
        assert "the variant catalogue is unreachable" in error.message
        assert error.count >= 1

        def logged() -> list[dict[str, object]]:
            lines = process.log.read_text().splitlines()
            events = [json.loads(line) for line in lines if line.startswith("{")]
            return [e for e in events if e.get("event") == "trainer worker died; restarting it"]

        await until(lambda: bool(logged()), "the death logged")
        stack = str(logged()[0].get("exception", ""))
        assert "Traceback" in stack
        assert "the variant catalogue is unreachable" in stack

        # The cause goes away: the supervisor's next restart gets a worker that trains.
        marker.unlink()
        await until(lambda: _health(port) == health_pb2.HealthCheckResponse.SERVING, "SERVING again")
        assert _metrics(metrics_port)["visionloop_trainer_worker_up"] == 1
        done = await project.ended((await create(project, epochs=2)).id)
        assert succeeded(done), done
    finally:
        await asyncio.to_thread(process.stop)  # the hub shares this event loop: keep it answering


async def test_a_cancelled_worker_is_restarted(project: Project, tmp_path: Path) -> None:
    """However the worker task ends, the supervisor starts it again and counts it."""
    crashes = REGISTRY.get_sample_value("visionloop_trainer_worker_crashes_total") or 0
    trainer = await start_trainer(project, tmp_path / "trainer")
    try:

        async def worker() -> asyncio.Task[object] | None:
            return next((t for t in asyncio.all_tasks() if t.get_name() == "trainer-worker"), None)

        async def started() -> bool:
            return await worker() is not None

        await until(started, "the worker started")
        task = await worker()
        assert task is not None
        task.cancel()
        await until(
            lambda: (REGISTRY.get_sample_value("visionloop_trainer_worker_crashes_total") or 0) == crashes + 1,
            "the death counted",
        )
        done = await project.ended((await create(project, epochs=2)).id)
        assert succeeded(done), done
        assert REGISTRY.get_sample_value("visionloop_trainer_worker_up") == 1
        # The hub hears the end before the worker has cleaned up and turned idle.
        await until(lambda: trainer.spec.context.status().state == node_pb2.NODE_STATE_IDLE, "the node idle again")
        assert [e.key for e in trainer.spec.context.status().errors] == ["worker"]  # shown for a while
    finally:
        await trainer.stop(0)
