"""The trainer service: a node that claims trainings from the hub and runs them, one at a time.

On start it registers at the hub, resumes a training a previous run left unfinished (claiming
exactly that training back), then polls the queue. A training runs on a worker thread; the
event loop keeps serving TrainerService, heartbeats and lease renewals meanwhile.

A supervisor keeps the claim-and-train worker alive: a training's own failures end that
training (the machine fails it on the hub with its reason), and should the worker itself die,
the death is logged with its stack, counted (``visionloop_trainer_worker_crashes_total``),
shown in health (NOT_SERVING) and in the node status the hub lists (DEGRADED, with the error),
and the worker is started again after a delay that doubles while it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2

from visionloop.common.v1 import node_pb2, training_pb2
from visionloop.runtime.config import ConfigError
from visionloop.runtime.identity import node_id
from visionloop.runtime.logging import get_logger
from visionloop.runtime.presence import Presence
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.runtime.tasks import cancel_and_wait
from visionloop.server.trainer import metrics as trainer_metrics
from visionloop.server.trainer.config import TrainerSettings
from visionloop.server.trainer.hub_client import TrainerHub
from visionloop.server.trainer.machine import MachineSettings, TrainingMachine, Unreported
from visionloop.server.trainer.plugin import TrainerPlugin, Variant, load_plugin
from visionloop.server.trainer.record import TrainingRecord, readable, unfinished
from visionloop.server.trainer.service import TrainerServicer
from visionloop.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc

SETTINGS = TrainerSettings
STOP_TIMEOUT_SECONDS = 30.0
log = get_logger(__name__)
T = TypeVar("T")


def _adopt_requests(record: TrainingRecord, claimed: training_pb2.Training) -> None:
    """Stop and abort requests the hub took while this node was away."""
    record.training.stop_requested = claimed.stop_requested
    if claimed.abort_requested:
        record.end = "abort"


def _declared(variant: Variant) -> training_pb2.ModelVariantSchema:
    return training_pb2.ModelVariantSchema(
        name=variant.name, hyperparameters=[spec.to_proto() for spec in variant.hyperparameters]
    )


class Worker:
    """Registration, heartbeat, and the supervised worker: the claim loop and the training in progress."""

    # Class attributes so tests can shorten them.
    restart_delay_seconds = 1.0  # after the worker died; doubles while it keeps dying
    restart_delay_max_seconds = 60.0
    crash_shown_seconds = 600.0  # how long the node status lists the last worker death

    def __init__(self, settings: TrainerSettings, plugin: TrainerPlugin) -> None:
        self.settings = settings
        self.plugin = plugin
        self.node_id = node_id(settings.data_dir, "trainer")
        self.root = settings.data_dir / "trainings"
        self.hub = TrainerHub(settings, self.node_id, timedelta(seconds=settings.lease_seconds))
        self.machine: TrainingMachine | None = None
        self.started = time.monotonic()
        self.alive = False  # the worker runs (health SERVING, node not DEGRADED)
        self.crashes = 0
        self._crash: node_pb2.NodeError | None = None  # the last worker death, for the node status
        self._crashed_at = 0.0
        self._health: health.aio.HealthServicer | None = None
        self._health_names: Sequence[str] = ()
        self._presence: Presence | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._thread: asyncio.Future[object] | None = None  # the training thread; outlives a dead worker task
        self._stopping = asyncio.Event()
        trainer_metrics.show_state(None)  # every state series exists from the start, at 0
        trainer_metrics.WORKER_UP.set(0)

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.plugin.variants()]

    def status(self) -> node_pb2.NodeStatus:
        machine = self.machine
        errors: list[node_pb2.NodeError] = []
        try:
            variants = [_declared(v) for v in self.plugin.variants()]
        except Exception as error:  # the heartbeat must go out whatever the plug-in does
            variants = []
            errors.append(node_pb2.NodeError(key="plugin", message=f"variants() failed: {error!r}", count=1))
        if self._crash is not None and (
            not self.alive or time.monotonic() - self._crashed_at < self.crash_shown_seconds
        ):
            errors.append(self._crash)
        if not self.alive or not variants:
            state = node_pb2.NODE_STATE_DEGRADED
        else:
            state = node_pb2.NODE_STATE_BUSY if machine else node_pb2.NODE_STATE_IDLE
        status = node_pb2.NodeStatus(
            node_id=self.node_id,
            name=f"trainer@{socket.gethostname()}",
            type=node_pb2.NODE_TYPE_TRAINER,
            state=state,
            organization=self.settings.loop_organization,
            project=self.settings.loop_project,
            capabilities=[v.name for v in variants],
            training_id=machine.record.id if machine else "",
            errors=errors,
            model_variants=variants,
        )
        status.uptime.FromTimedelta(timedelta(seconds=time.monotonic() - self.started))
        return status

    async def start(self, server: GrpcServer) -> None:
        self._health = server.health
        self._health_names = ["", *server.grpc_service_names]
        self._presence = Presence(self.settings, self.status, self.started)
        self._presence.start()
        self._supervisor = asyncio.create_task(self._supervise(), name="trainer-supervisor")

    async def stop(self) -> None:
        self._stopping.set()
        if self.machine is not None:
            self.machine.shutdown()  # the record stays; the next start resumes it
        # The worker thread leaves at its next safe point (between training batches).
        if self._supervisor is not None:
            _, pending = await asyncio.wait([self._supervisor], timeout=STOP_TIMEOUT_SECONDS)
            await cancel_and_wait(pending, within=STOP_TIMEOUT_SECONDS)
        if self._presence is not None:
            await self._presence.stop()
        self.hub.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- supervision ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Run the worker; whenever it dies, show it, wait, and start it again."""
        loop = asyncio.get_running_loop()
        delay = self.restart_delay_seconds
        while not self._stopping.is_set():
            if self._thread is not None and not self._thread.done():
                await asyncio.wait([self._thread])  # a dead worker's training leaves at its next safe point
            started = loop.time()
            await self._set_alive(True)
            task = asyncio.create_task(self._main(), name="trainer-worker")
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                await cancel_and_wait([task])
                raise
            if self._stopping.is_set() and not task.cancelled() and task.exception() is None:
                return
            if loop.time() - started > self.restart_delay_max_seconds:
                delay = self.restart_delay_seconds  # it had been running well: this is a new incident
            await self._died(task, delay)
            await self._sleep(delay)
            delay = min(delay * 2, self.restart_delay_max_seconds)

    async def _died(self, task: asyncio.Task[None], delay: float) -> None:
        error = None if task.cancelled() else task.exception()
        reason = "cancelled" if error is None and task.cancelled() else repr(error) if error else "returned"
        self.crashes += 1
        self._crashed_at = time.monotonic()
        crash = node_pb2.NodeError(
            key="worker",
            message=f"the worker that claims and runs trainings died ({reason}); restarted by the supervisor",
            count=self.crashes,
        )
        if self._crash is not None:
            crash.first_seen_time.CopyFrom(self._crash.first_seen_time)
        else:
            crash.first_seen_time.GetCurrentTime()
        self._crash = crash
        trainer_metrics.WORKER_CRASHES.inc()
        log.error(
            "trainer worker died; restarting it",
            reason=reason,
            crashes=self.crashes,
            restart_in_s=delay,
            exc_info=error,
        )
        await self._set_alive(False)

    async def _set_alive(self, alive: bool) -> None:
        self.alive = alive
        trainer_metrics.WORKER_UP.set(1 if alive else 0)
        if self._health is not None:
            serving = health_pb2.HealthCheckResponse.SERVING if alive else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in self._health_names:
                await self._health.set(name, serving)
        if self._presence is not None:
            self._presence.poke()

    # --- the worker -----------------------------------------------------------------------------

    async def _main(self) -> None:
        for record in await asyncio.to_thread(unfinished, self.root):
            try:
                await self._resume(record)
            except Exception:  # one bad record must not keep the worker from the queue
                log.exception("unfinished training not resumed", training_id=record.id)
        await self._remove_leftovers()
        while not self._stopping.is_set():
            training = await self._claim()
            if training is None:
                await self._sleep(self.settings.claim_interval_seconds)
                continue
            claimed = await self._record(training)
            if claimed is not None:
                await self._run(claimed)

    async def _claim(self, training_id: str = "") -> training_pb2.Training | None:
        try:
            return await asyncio.to_thread(self.hub.claim, self.variants, training_id)
        except grpc.RpcError as error:
            if training_id and error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.info("hub not reachable for claims; retrying", error=str(error))
            return None

    async def _record(self, training: training_pb2.Training) -> TrainingRecord | None:
        """The record of a claimed training: the one on disk if this node held it before (its end
        not reported, say), else a new one. None when it cannot even be written: then it failed."""
        folder = self.root / training.id
        try:
            held = await asyncio.to_thread(readable, folder)
            if held is not None and held.id == training.id:
                log.info("claimed back a training this node held", training_id=training.id, state=held.state)
                _adopt_requests(held, training)
                return held
            training.status.state = training_pb2.TRAINING_STATE_INITIALIZED
            # The machine saves it first (on a full disk: once there is space).
            return TrainingRecord(training=training, folder=folder)
        except Exception as error:
            log.exception("claimed training cannot be set up; failing it", training_id=training.id)
            await asyncio.to_thread(self._fail_unstarted, training, f"the trainer could not start it: {error!r}")
            return None

    def _fail_unstarted(self, training: training_pb2.Training, message: str) -> None:
        status = training_pb2.TrainingStatus()
        status.CopyFrom(training.status)
        status.state = training_pb2.TRAINING_STATE_INITIALIZED
        status.errors.add(state=status.state, message=message, attempts=1, critical=True).time.FromDatetime(
            datetime.now(UTC)
        )
        try:
            self.hub.finish(training.id, training_pb2.TRAINING_PHASE_FAILED, status, "")
        except grpc.RpcError as error:
            log.warning("failure not reported; the lease runs out and it is claimed again", error=str(error))
        shutil.rmtree(self.root / training.id, ignore_errors=True)
        trainer_metrics.TRAININGS.labels("FAILED").inc()

    async def _resume(self, record: TrainingRecord) -> None:
        """Continue a training this node left unfinished, unless the hub gave it away or ended it."""
        while not self._stopping.is_set():
            try:
                training = await self._claim(record.id)
            except grpc.RpcError as error:
                log.warning("unfinished training dropped", training_id=record.id, reason=error.details())
                await asyncio.to_thread(shutil.rmtree, record.folder, True)
                return
            if training is not None:
                log.info("resuming training", training_id=record.id, state=record.state, crashes=record.crashes)
                _adopt_requests(record, training)
                await self._run(record)
                return
            await self._sleep(self.settings.claim_interval_seconds)

    async def _remove_leftovers(self) -> None:
        """Folders without a readable record (killed before the first save) hold nothing to resume."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir() and not (folder / "training.json").is_file():
                await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _run(self, record: TrainingRecord) -> None:
        settings = self.settings
        machine = TrainingMachine(
            record,
            self.plugin,
            self.hub,
            MachineSettings(
                inference_batch_size=settings.inference_batch_size,
                keep_old_trainings=settings.keep_old_trainings,
                max_attempts=settings.max_step_attempts,
                backoff_seconds=settings.step_backoff_seconds,
                image_limits=settings.image_limits,
                max_crashes=settings.max_training_crashes,
            ),
            old_trainings=settings.data_dir / "old_trainings",
        )
        if record.training.stop_requested and not record.end:
            machine.request("stop")
        self.machine = machine
        renew = asyncio.create_task(self._renew(machine), name="trainer-lease")
        try:
            phase = await self._in_thread(machine, machine.run)
        except Unreported as error:
            log.warning("training end not reported; the next start reports it", training_id=record.id, error=str(error))
            return
        except Exception:  # the machine fails trainings itself; this is its own failure
            log.exception("training could not be ended; it resumes at the next start", training_id=record.id)
            return
        finally:
            renew.cancel()
            self.machine = None
            trainer_metrics.show_state(None)
        if phase and settings.restart_after_training and not self._stopping.is_set():
            log.info("RESTART_AFTER_TRAINING: exiting so the supervisor starts a fresh process")
            os.kill(os.getpid(), signal.SIGTERM)

    async def _in_thread(self, machine: TrainingMachine, function: Callable[[], T]) -> T:
        """``function()`` on a thread that outlives a cancelled worker (told to leave at its next safe
        point); an error that is no ``Exception`` (SystemExit) arrives as one, so it cannot escape
        into the event loop."""

        def call() -> T:
            try:
                return function()
            except Exception:
                raise
            except BaseException as error:
                raise RuntimeError(f"the training thread raised {error!r}") from error

        thread = asyncio.ensure_future(asyncio.to_thread(call))
        self._thread = thread  # type: ignore[assignment]
        try:
            return await asyncio.shield(thread)
        except asyncio.CancelledError:
            machine.shutdown()
            raise

    async def _renew(self, machine: TrainingMachine) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await asyncio.to_thread(machine.push)
            except Exception:  # a lost renewal loses the lease: keep renewing whatever one push did
                log.exception("lease renewal failed", training_id=machine.record.id)


def create(settings: TrainerSettings) -> ServiceSpec:
    try:
        plugin = load_plugin(settings.trainer_plugin)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    worker = Worker(settings, plugin)
    servicer = TrainerServicer(plugin, lambda: worker.machine, worker.status)
    mount = Mount.generated(servicer, trainer_service_pb2_grpc, trainer_service_pb2, "TrainerService")

    async def start(server: GrpcServer) -> None:
        await worker.start(server)

    async def stop(server: GrpcServer) -> None:
        await worker.stop()

    return ServiceSpec(
        name="trainer",
        mounts=[mount],
        on_start=[start],
        on_stop=[stop],
        context=worker,
        project=(settings.loop_organization, settings.loop_project),  # it claims this project's trainings only
    )
