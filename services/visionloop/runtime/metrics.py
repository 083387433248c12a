"""Prometheus metrics shared by all services and the /metrics HTTP endpoint.

gRPC metric names follow go-grpc-prometheus (``grpc_server_handled_total`` and friends) so
existing dashboards and alerts work; VisionLoop's own metrics use the ``visionloop_`` prefix.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, Info, start_http_server

from visionloop.runtime.threads import ThreadCpuCollector

# Buckets from 0.5 ms: a detector answers in a few milliseconds; hub uploads take seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

GRPC_STARTED = Counter(
    "grpc_server_started",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC until the server finished it.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)
AUTH_FAILURES = Counter(
    "visionloop_auth_failures",
    "Calls refused by token auth.",
    ["grpc_service", "reason"],
)
BUILD_INFO = Info("visionloop_build", "VisionLoop version and the services this process runs.")
REGISTRY.register(ThreadCpuCollector())


class MetricsServer:
    """The /metrics endpoint on its own port, served from a daemon thread."""

    def __init__(self, host: str, port: int) -> None:
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, addr=host)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
