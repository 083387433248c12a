"""Server bootstrap shared by every service: one factory, one shutdown path.

A service describes itself as a ``ServiceSpec`` (its servicers and start/stop hooks); ``GrpcServer``
mounts it on a ``grpc.aio`` server together with the interceptor chain, ``grpc.health.v1``,
server reflection and ``OpsService``, binds (port 0 picks a free one) and reports the bound port.
``run`` drives one or several servers in one process until SIGTERM/SIGINT, then shuts down
gracefully: health turns NOT_SERVING, a drain period lets load balancers move away, and
in-flight calls get the grace period to finish.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc
from visionloop.runtime import __version__
from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.interceptors import OpenStreamInterceptor, StartupGate, interceptor_chain
from visionloop.runtime.logging import get_logger
from visionloop.runtime.metrics import BUILD_INFO, MetricsServer
from visionloop.runtime.ops import OpsServicer
from visionloop.runtime.threads import named_executor
from visionloop.runtime.tls import server_credentials

log = get_logger("visionloop.server")

Hook = Callable[["GrpcServer"], Awaitable[None]]  # receives the started server (e.g. its bound port)


@dataclass(frozen=True)
class Mount:
    """One gRPC service implementation: the servicer, its generated ``add_*_to_server`` and descriptor."""

    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor

    @classmethod
    def generated(cls, servicer: object, grpc_module: ModuleType, pb2_module: ModuleType, service: str) -> Mount:
        """Mount ``servicer`` for ``service`` using the generated ``*_pb2``/``*_pb2_grpc`` modules."""
        return cls(
            servicer=servicer,
            add_to_server=getattr(grpc_module, f"add_{service}Servicer_to_server"),
            descriptor=pb2_module.DESCRIPTOR.services_by_name[service],
        )


@dataclass
class ServiceSpec:
    """What a VisionLoop service consists of."""

    name: str
    mounts: list[Mount]
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    context: Any = None  # the service's shared state, reachable by in-process tests and tools
    # The one (organization, project) the service works for, e.g. a detector's LOOP_PROJECT:
    # tokens limited to other projects may not call it at all.
    project: tuple[str, str] | None = None


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class GrpcServer:
    """One service on one ``grpc.aio`` server."""

    def __init__(self, spec: ServiceSpec, settings: ServiceSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.health_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._streams = OpenStreamInterceptor()
        self._gate = StartupGate(spec.name)

    @property
    def grpc_service_names(self) -> list[str]:
        return [m.descriptor.full_name for m in self.spec.mounts] + [
            ops_service_pb2.DESCRIPTOR.services_by_name["OpsService"].full_name
        ]

    @property
    def address(self) -> str:
        return bind_address(self.settings.host, self.port or 0)

    async def start(self) -> int:
        """Build, bind and start the server; calls are served and health turns SERVING once the start hooks ran."""
        max_bytes = self.settings.max_message_bytes
        server = grpc.aio.server(
            interceptors=interceptor_chain(self.settings.tokens(), self._streams, self.spec.project, self._gate),
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.so_reuseport", 0),  # a second process on the same port must fail, not share it
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                *self.settings.grpc_server_options(),
            ],
        )
        for mount in self.spec.mounts:
            mount.add_to_server(mount.servicer, server)
        names = self.grpc_service_names
        ops_service_pb2_grpc.add_OpsServiceServicer_to_server(OpsServicer(self.spec.name, names), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

        address = bind_address(self.settings.host, self.settings.port or 0)
        credentials = server_credentials(self.settings)
        try:
            port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise OSError(f"cannot listen on {address}: {exc}") from None
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        self.port = port
        self._server = server
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        if self.settings.health_port is not None:
            await self._start_health_server(self.settings.health_port)
        for hook in self.spec.on_start:
            await hook(self)
        self._gate.open = True
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "listening",
            service=self.spec.name,
            address=self.address,
            port=port,
            **({"health_port": self.health_port} if self.health_port is not None else {}),
            tls="mutual" if self.settings.tls_client_ca else ("on" if credentials else "off"),
            auth="on" if self.settings.tokens() else "off",
        )
        return port

    async def _start_health_server(self, port: int) -> None:
        """Health alone on a plaintext port: kubelet's gRPC probes cannot speak TLS, and this port
        answers nothing but the status the main port's health reports (the same servicer)."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        address = bind_address(self.settings.host, port)
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {address} (VISIONLOOP_HEALTH_PORT): {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen on {address} (VISIONLOOP_HEALTH_PORT)")
        self._health_server = server
        self.health_port = bound
        await server.start()
        log.info("health listening", service=self.spec.name, address=bind_address(self.settings.host, bound))

    async def enter_graceful_shutdown(self) -> None:
        """Health reports NOT_SERVING from now on; calls are still served."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Refuse new calls, end open-ended streams, give other in-flight calls ``grace`` seconds, run stop hooks."""
        if self._server is not None:
            stopping = asyncio.ensure_future(self._server.stop(grace))
            await asyncio.sleep(0)  # let grpc refuse new calls before the streams are told to reconnect
            ended = self._streams.close_all()
            await stopping
            if ended:
                log.info("ended open streams", service=self.spec.name, count=ended)
        if self._health_server is not None:
            await self._health_server.stop(0)
        for hook in reversed(self.spec.on_stop):
            await hook(self)
        log.info("stopped", service=self.spec.name)

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def run(
    builders: Sequence[Callable[[], GrpcServer]],
    *,
    metrics_host: str,
    metrics_port: int,
    on_ready: Callable[[Sequence[GrpcServer], int | None], None] | None = None,
) -> int:
    """Build and start servers in order until SIGTERM/SIGINT, then shut down gracefully; returns the exit code.

    Each builder runs right before its server starts, so a later service can point at the
    port an earlier one bound (``visionloop up`` points every node at the hub this way).
    """
    loop = asyncio.get_running_loop()
    # asyncio's own default pool (to_thread, run_in_executor(None, ...)), its threads named natively
    loop.set_default_executor(named_executor(None, "asyncio"))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    metrics = MetricsServer(metrics_host, metrics_port) if metrics_port >= 0 else None
    started: list[GrpcServer] = []
    try:
        for build in builders:
            server = build()
            started.append(server)
            await server.start()
        BUILD_INFO.info({"version": __version__, "services": ",".join(s.spec.name for s in started)})
        if on_ready is not None:
            on_ready(started, metrics.port if metrics else None)
        if metrics is not None:
            log.info("metrics listening", address=bind_address(metrics_host, metrics.port), path="/metrics")
        await stop.wait()

        settings = started[0].settings
        log.info(
            "shutting down",
            drain_seconds=settings.shutdown_drain_seconds,
            grace_seconds=settings.shutdown_grace_seconds,
        )
        for server in started:
            await server.enter_graceful_shutdown()
        await asyncio.sleep(settings.shutdown_drain_seconds)
        await asyncio.gather(*(s.stop(settings.shutdown_grace_seconds) for s in started))
        started.clear()
        return 0
    finally:
        # Start failures land here too: stop whatever already runs so the port is released.
        await asyncio.gather(*(s.stop(0) for s in started), return_exceptions=True)
        if metrics is not None:
            metrics.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
