"""``visionloop.ops.v1.OpsService``: served by every process next to health and reflection."""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Sequence

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from visionloop.ops.v1 import ops_service_pb2 as pb
from visionloop.ops.v1 import ops_service_pb2_grpc as pb_grpc
from visionloop.runtime import __version__
from visionloop.runtime.errors import InvalidArgument

MAX_PROBE_HOLD_SECONDS = 60.0


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(self, service: str, grpc_services: Sequence[str]) -> None:
        self._service = service
        self._grpc_services = list(grpc_services)
        self._start_wall = timestamp_pb2.Timestamp()
        self._start_wall.GetCurrentTime()
        self._start = time.monotonic()

    async def GetBuildInfo(
        self, request: pb.GetBuildInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBuildInfoResponse:
        uptime = duration_pb2.Duration()
        uptime.FromNanoseconds(int((time.monotonic() - self._start) * 1e9))
        return pb.GetBuildInfoResponse(
            service=self._service,
            version=__version__,
            python_version=platform.python_version(),
            start_time=self._start_wall,
            uptime=uptime,
            grpc_services=self._grpc_services,
        )

    async def Probe(self, request: pb.ProbeRequest, context: grpc.aio.ServicerContext) -> pb.ProbeResponse:
        hold = request.hold.ToTimedelta().total_seconds()
        if not 0 <= hold <= MAX_PROBE_HOLD_SECONDS:
            raise InvalidArgument(f"hold must be between 0 and {MAX_PROBE_HOLD_SECONDS:.0f} seconds, got {hold:g}")
        started = time.monotonic()
        await asyncio.sleep(hold)
        held = duration_pb2.Duration()
        held.FromNanoseconds(int((time.monotonic() - started) * 1e9))
        return pb.ProbeResponse(held=held)
