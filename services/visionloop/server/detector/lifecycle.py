"""Keeps the project's model in step with the hub's deployment target.

The detector watches ``DeploymentService.WatchDeployment``; when the target moves it downloads
the new version in its format, builds the new backend while the old one keeps serving, swaps
atomically and remembers the version on disk, so a restart without the hub starts from the
last model. A version that fails to download or load is retried a bounded number of times with
backoff, never in an endless rebuild loop; a full disk is not the version's fault, so it is
retried with backoff until there is space again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from visionloop.client.channel import create_aio_channel
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.lib.archives import UnsafeArchive, safe_extract
from visionloop.lib.model_format.model_json import MODEL_JSON
from visionloop.loop.v1 import (
    deployment_service_pb2,
    deployment_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
)
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.files import write_atomically
from visionloop.runtime.logging import get_logger
from visionloop.runtime.model_transfer import download_model
from visionloop.runtime.resources import report, shortage_of
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling
from visionloop.server.detector.backends.base import BackendError
from visionloop.server.detector.models import ModelSet, ServedModel

log = get_logger(__name__)

OpenModel = Callable[[str, Path], Awaitable[ServedModel]]


@dataclass
class _Failure:
    attempts: int = 0  # failed tries
    faults: int = 0  # of them, the version's own (it did not download or load), not a full disk's
    retry_at: float = 0.0
    reason: str = ""


@dataclass
class ModelUpdater:
    """Follows the deployment of ``peer.loop_project`` and serves it as model ``name``."""

    peer: PeerSettings
    models: ModelSet
    name: str
    folder: Path  # data_dir/models/<name>
    open_model: OpenModel
    model_format: str = "onnx"
    max_attempts: int = 3
    backoff: float = 2.0
    max_backoff: float = 60.0
    version_control: int = pb.VERSION_CONTROL_FOLLOW_LOOP
    pinned_version: str = ""
    target: str = ""  # the hub's resolved version
    target_formats: tuple[str, ...] = ()  # its formats so far; a new version's onnx may come later
    failures: dict[str, _Failure] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def ref(self) -> project_service_pb2.ProjectRef:
        return self.peer.project_ref

    def _channel(self) -> grpc.aio.Channel:
        return create_aio_channel(self.peer.channel_config())

    # --- start-up ---------------------------------------------------------------------------------

    def _current_file(self) -> Path:
        return self.folder / "current"

    def current_version(self) -> str:
        path = self._current_file()
        return path.read_text().strip() if path.is_file() else ""

    async def start(self) -> None:
        """Serve the last model from disk at once (offline start), then follow the hub in the background."""
        last = self.current_version()
        if last and (self.folder / last).is_dir():
            try:
                await self.models.put(await self.open_model(self.name, self.folder / last))
                log.info("serving the last model from disk", model=self.name, version=last)
            except BackendError as error:
                log.error("the last model on disk does not load", version=last, reason=str(error))
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"model-updater-{self.name}")

    async def stop(self) -> None:
        await cancel_and_wait([self._task])

    # --- following the hub ------------------------------------------------------------------------

    async def _run(self) -> None:
        watcher = asyncio.get_running_loop().create_task(self._watch())
        try:
            while True:
                await self._reconcile()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._next_retry())
        finally:
            await cancel_and_wait([watcher])  # its stream may swallow the first cancel

    def _next_retry(self) -> float:
        pending = [f.retry_at for f in self.failures.values() if f.faults < self.max_attempts]
        return max(0.1, min(pending) - time.monotonic()) if pending else 3600.0

    async def _watch(self) -> None:
        delay = self.backoff
        while True:
            channel = self._channel()
            try:
                stub = deployment_service_pb2_grpc.DeploymentServiceStub(channel)
                request = deployment_service_pb2.WatchDeploymentRequest(ref=self.ref)
                async for update in stub.WatchDeployment(request):
                    delay = self.backoff
                    version, formats = update.deployment.resolved_version, tuple(update.deployment.resolved_formats)
                    if (version, formats) != (self.target, self.target_formats):
                        if version != self.target:
                            log.info("deployment target", model=self.name, version=version or "(none)")
                        self.target, self.target_formats = version, formats
                        self._wake.set()
            except grpc.aio.AioRpcError as error:
                raise_if_cancelling()
                if error.code() is grpc.StatusCode.NOT_FOUND:
                    log.warning("the project does not exist on the hub yet; waiting", reason=error.details())
                else:
                    log.warning(
                        "hub unreachable; serving what is loaded", code=error.code().name, retry_in=round(delay, 1)
                    )
            finally:
                await channel.close()
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.max_backoff)

    def wanted(self) -> str:
        if self.version_control == pb.VERSION_CONTROL_PIN:
            return self.pinned_version
        if self.version_control == pb.VERSION_CONTROL_PAUSE:
            return ""
        return self.target

    async def set_version_control(self, mode: int, pinned: str) -> None:
        self.version_control, self.pinned_version = mode, pinned
        self._wake.set()

    async def _reconcile(self) -> None:
        version = self.wanted()
        if not version or (version == self.current_version() and self.name in self.models.names()):
            return
        if version == self.target and self.model_format not in self.target_formats:
            # Published, not converted yet: keep serving; the watch wakes us when the format lands.
            log.info("waiting for the model's format", version=version, format=self.model_format)
            return
        failure = self.failures.get(version)
        if failure is not None and (failure.faults >= self.max_attempts or time.monotonic() < failure.retry_at):
            return
        async with self._lock:
            try:
                folder = await self._download(version)
                model = await self.open_model(self.name, folder)
                await self.models.put(model)
                await asyncio.to_thread(write_atomically, self._current_file(), version.encode())
            except (BackendError, UnsafeArchive, OSError, grpc.aio.AioRpcError) as error:
                self._failed(version, error)
                return
            self.failures.pop(version, None)
            await asyncio.to_thread(self._prune, keep={version})

    def _failed(self, version: str, error: Exception) -> None:
        """Note a failed update of ``version`` and when to try again."""
        failure = self.failures.setdefault(version, _Failure())
        failure.attempts += 1
        shortage = shortage_of(error)
        if shortage is not None and shortage.retry_later:  # no space for it: retried until there is
            report(shortage, error, model=self.name, version=version)
            failure.reason = shortage.message
        else:
            failure.faults += 1
            reason = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
            failure.reason = reason or type(error).__name__
        failure.retry_at = time.monotonic() + min(self.max_backoff, self.backoff * 2**failure.attempts)
        if isinstance(error, BackendError):
            self.models.failed(self.name, f"version {version}: {failure.reason}")
        log.error(
            "model update failed",
            version=version,
            attempt=failure.attempts,
            gives_up=failure.faults >= self.max_attempts,
            reason=failure.reason,
        )

    async def _download(self, version: str) -> Path:
        """Download and unpack ``version`` into its folder (verified by sha256)."""
        target = self.folder / version
        if (target / MODEL_JSON).is_file():
            return target
        self.folder.mkdir(parents=True, exist_ok=True)
        archive = self.folder / f".{version}.zip.partial"
        channel = self._channel()
        try:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            key = model_service_pb2.ModelKey(ref=self.ref, version=version)
            await download_model(stub, key, self.model_format, archive)  # OSError when the sha256 differs
        finally:
            await channel.close()
        staging = self.folder / f".{version}.unpacking"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            await asyncio.to_thread(safe_extract, archive, staging)
            staging.rename(target)  # the version folder appears complete or not at all
        finally:
            archive.unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _prune(self, keep: set[str]) -> None:
        """Keep only the serving version and the one before it (for a quick offline rollback)."""
        versions = sorted(
            (p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
        )
        for path in versions[:-2]:
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)
