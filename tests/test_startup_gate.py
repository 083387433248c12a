"""A service takes no calls until its start-up steps have run (the hub's migration, say)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc
from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.server import GrpcServer, ServiceSpec


async def test_calls_wait_for_the_start_up_steps(tmp_path: Path) -> None:
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def slow_start(server: GrpcServer) -> None:  # a migration that takes a while
        assert server.port is not None
        listening.set_result(server.port)
        await release.wait()

    spec = ServiceSpec(name="loop", mounts=[], on_start=[slow_start])
    server = GrpcServer(spec, ServiceSettings(port=0, data_dir=tmp_path))
    starting = asyncio.create_task(server.start())
    port = await asyncio.wait_for(listening, 30)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ops = ops_service_pb2_grpc.OpsServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            # Listening, but not started: calls are refused with the code clients retry.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ops.GetBuildInfo(ops_service_pb2.GetBuildInfoRequest(), timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "still starting up" in (refused.value.details() or "")
            checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert checked.status == health_pb2.HealthCheckResponse.NOT_SERVING  # probes are answered

            release.set()
            await asyncio.wait_for(starting, 30)
            assert (await ops.GetBuildInfo(ops_service_pb2.GetBuildInfoRequest(), timeout=10)).version
            checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        release.set()
        await asyncio.wait_for(starting, 30)
        await server.stop(0)
