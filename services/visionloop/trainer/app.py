"""The trainer service: a node that claims trainings from the hub and runs them, one at a time.

On start it registers at the hub, resumes a training a previous run left unfinished (claiming
exactly that training back), then polls the queue. A training runs on a worker thread; the
event loop keeps serving TrainerService, heartbeats and lease renewals meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from datetime import timedelta

import grpc

from visionloop.common.v1 import node_pb2, training_pb2
from visionloop.runtime.config import ConfigError
from visionloop.runtime.identity import node_id
from visionloop.runtime.logging import get_logger
from visionloop.runtime.presence import Presence
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec
from visionloop.trainer import metrics as trainer_metrics
from visionloop.trainer.config import TrainerSettings
from visionloop.trainer.hub import TrainerHub
from visionloop.trainer.machine import MachineSettings, TrainingMachine
from visionloop.trainer.plugin import TrainerPlugin, load_plugin
from visionloop.trainer.record import TrainingRecord, unfinished
from visionloop.trainer.service import TrainerServicer
from visionloop.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc

SETTINGS = TrainerSettings
STOP_TIMEOUT_SECONDS = 30.0
log = get_logger(__name__)


class Worker:
    """Registration, heartbeat, the claim loop and the training in progress."""

    def __init__(self, settings: TrainerSettings, plugin: TrainerPlugin) -> None:
        self.settings = settings
        self.plugin = plugin
        self.node_id = node_id(settings.data_dir, "trainer")
        self.root = settings.data_dir / "trainings"
        self.hub = TrainerHub(settings, self.node_id, timedelta(seconds=settings.lease_seconds))
        self.machine: TrainingMachine | None = None
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        trainer_metrics.show_state(None)  # every state series exists from the start, at 0

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.plugin.variants()]

    def status(self) -> node_pb2.NodeStatus:
        machine = self.machine
        status = node_pb2.NodeStatus(
            node_id=self.node_id,
            name=f"trainer@{socket.gethostname()}",
            type=node_pb2.NODE_TYPE_TRAINER,
            state=node_pb2.NODE_STATE_BUSY if machine else node_pb2.NODE_STATE_IDLE,
            organization=self.settings.loop_organization,
            project=self.settings.loop_project,
            capabilities=self.variants,
            training_id=machine.record.id if machine else "",
        )
        status.uptime.FromTimedelta(timedelta(seconds=time.monotonic() - self.started))
        return status

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._main(), name="trainer-main")]

    async def stop(self) -> None:
        self._stopping.set()
        if self.machine is not None:
            self.machine.shutdown()  # the record stays; the next start resumes it
        # The worker thread leaves at its next safe point (between training batches).
        _, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
        for task in pending:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.hub.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _main(self) -> None:
        presence = Presence(self.settings, self.status, self.started)
        presence.start()
        try:
            for record in await asyncio.to_thread(unfinished, self.root):
                await self._resume(record)
            await self._remove_leftovers()
            while not self._stopping.is_set():
                training = await self._claim()
                if training is None:
                    await self._sleep(self.settings.claim_interval_seconds)
                    continue
                folder = self.root / training.id
                training.status.state = training_pb2.TRAINING_STATE_INITIALIZED
                record = TrainingRecord(training=training, folder=folder)
                await self._run(record)  # the machine saves the record first (on a full disk: once there is space)
        finally:
            await presence.stop()

    async def _claim(self, training_id: str = "") -> training_pb2.Training | None:
        try:
            return await asyncio.to_thread(self.hub.claim, self.variants, training_id)
        except grpc.RpcError as error:
            if training_id and error.code() == grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                raise
            log.info("hub not reachable for claims; retrying", error=str(error))
            return None

    async def _resume(self, record: TrainingRecord) -> None:
        """Continue a training this node left unfinished, unless the hub gave it away or ended it."""
        while not self._stopping.is_set():
            try:
                training = await self._claim(record.id)
            except grpc.RpcError as error:
                log.warning("unfinished training dropped", training_id=record.id, reason=error.details())  # type: ignore[attr-defined]
                await asyncio.to_thread(shutil.rmtree, record.folder, True)
                return
            if training is not None:
                log.info("resuming training", training_id=record.id, state=record.state)
                record.training.stop_requested = training.stop_requested
                if training.abort_requested:
                    record.end = "abort"
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
            ),
            old_trainings=settings.data_dir / "old_trainings",
        )
        if record.training.stop_requested and not record.end:
            machine.request("stop")
        self.machine = machine
        renew = asyncio.create_task(self._renew(machine), name="trainer-lease")
        try:
            phase = await asyncio.to_thread(machine.run)
        except Exception:
            log.exception("training could not be reported; it resumes at the next start", training_id=record.id)
            return
        finally:
            renew.cancel()
            self.machine = None
            trainer_metrics.show_state(None)
        if phase and settings.restart_after_training and not self._stopping.is_set():
            log.info("RESTART_AFTER_TRAINING: exiting so the supervisor starts a fresh process")
            os.kill(os.getpid(), signal.SIGTERM)

    async def _renew(self, machine: TrainingMachine) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            await asyncio.to_thread(machine.push)


def create(settings: TrainerSettings) -> ServiceSpec:
    try:
        plugin = load_plugin(settings.trainer_plugin)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    worker = Worker(settings, plugin)
    servicer = TrainerServicer(plugin, lambda: worker.machine, worker.status)
    mount = Mount.generated(servicer, trainer_service_pb2_grpc, trainer_service_pb2, "TrainerService")

    async def start(server: GrpcServer) -> None:
        await worker.start()

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
