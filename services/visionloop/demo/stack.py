"""The hub, a detector, a trainer, a converter and an annotator in this process, as ``visionloop up`` starts them.

The services run on an event loop of their own on a background thread, so the demo's robots,
annotators and bookkeeping can be plain blocking client code talking to them over loopback gRPC,
exactly as separate programs would. With ``backend="triton"`` a real ``tritonserver`` (the
``nvidia-pytriton`` wheel's, on the CPU) serves the detector's models from the repository the
converter writes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from visionloop.runtime.logging import get_logger
from visionloop.runtime.server import GrpcServer
from visionloop.server.detector.uploads import ActiveLearningUploads
from visionloop.server.embedded import embedded

SERVICES = ("loop", "detector", "trainer", "converter", "annotator")
START_TIMEOUT = 120.0
STOP_GRACE = 2.0
log = get_logger(__name__)


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    organization: str = "demo"
    project: str = "demo"
    backend: str = "onnxruntime"  # or "triton": a tritonserver is started for the detector
    loop: Mapping[str, Any] = field(default_factory=dict)  # further hub settings
    detector: Mapping[str, Any] = field(default_factory=dict)  # further detector settings (upload filter)
    trainer: Mapping[str, Any] = field(default_factory=dict)
    converter: Mapping[str, Any] = field(default_factory=dict)
    annotator: Mapping[str, Any] = field(default_factory=dict)


class SimulatedClock:
    """The detector's upload filter's time: monotonic seconds plus the hours robots spent away.

    ``advance`` moves it on at once, so per-minute upload limits and the filter's memory of recent
    observations start afresh for a new round without anybody waiting for them.
    """

    def __init__(self) -> None:
        self._skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self._skipped

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time does not run backwards: {seconds}")
        self._skipped += seconds


class Stack:
    """Start with ``with Stack(config) as stack:``; ``stack.hub`` and ``stack.detector`` are host:port."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.servers: dict[str, GrpcServer] = {}
        self.triton: Any = None  # visionloop.testing.triton.TritonServer with backend triton
        self.clock = SimulatedClock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="visionloop-demo-services", daemon=True)

    @property
    def hub(self) -> str:
        return self._address("loop")

    @property
    def annotator(self) -> str:
        return self._address("annotator")

    @property
    def detector(self) -> str:
        return self._address("detector")

    def context(self, service: str) -> Any:
        """The service's shared state (``ServiceSpec.context``): the detector's servicer, the trainer's worker..."""
        return self.servers[service].spec.context

    def _address(self, service: str) -> str:
        return f"127.0.0.1:{self.servers[service].port}"

    def _overrides(self) -> dict[str, dict[str, Any]]:
        config = self.config
        peer = {"loop_organization": config.organization, "loop_project": config.project}
        detector: dict[str, Any] = {**peer, "backend": config.backend, **config.detector}
        converter: dict[str, Any] = {**peer, **config.converter}
        if self.triton is not None:
            # One repository: the converter writes entries, Triton serves them, the detector loads them.
            repository = self.triton.repository
            detector |= {"triton_url": self.triton.grpc_url, "triton_model_repository": repository}
            converter |= {"triton_model_repository": repository}
        return {
            "loop": {"bootstrap_project": f"{config.organization}/{config.project}", **config.loop},
            "detector": detector,
            # A short lease: the trainer pushes its status (epochs for the progress bar) every third of it.
            "trainer": {
                **peer,
                "claim_interval_seconds": 0.5,
                "lease_seconds": 15,
                "step_backoff_seconds": 0.5,
                **config.trainer,
            },
            "converter": converter,
            "annotator": {**peer, **config.annotator},
        }

    def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.backend == "triton":
            self._start_triton()
        _, builders = embedded(SERVICES, data_dir=self.config.data_dir, overrides=self._overrides())
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(builders), self._loop).result(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        uploads = self.context("detector").uploads
        if isinstance(uploads, ActiveLearningUploads):
            uploads.clock = self.clock  # the upload filter keeps camera time, which the demo moves on

    def _start_triton(self) -> None:
        from visionloop.testing.triton import TritonServer  # only the triton demo needs it

        folder = self.config.data_dir / "tritonserver"
        folder.mkdir(parents=True, exist_ok=True)
        self.triton = TritonServer(self.config.data_dir / "triton", folder)
        self.triton.start()

    async def _start(self, builders: list[Any]) -> None:
        for build in builders:
            server: GrpcServer = build()
            self.servers[server.spec.name] = server
            await server.start()

    async def _stop(self) -> None:
        for name in reversed(list(self.servers)):  # nodes before the hub they talk to
            try:
                await self.servers[name].stop(STOP_GRACE)
            except Exception:  # stop the others anyway
                log.exception("service did not stop cleanly", service=name)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(START_TIMEOUT)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        self.servers.clear()
        if self.triton is not None:
            self.triton.stop()
            self.triton = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
