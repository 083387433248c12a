"""Server connection settings: maximum connection age (clients move to new replicas), its grace,
and the plaintext health port for probes that cannot speak TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import NOT_SERVING, SERVING, eventually
from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc
from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.server import GrpcServer, ServiceSpec
from visionloop.testing.certs import make_pki


@asynccontextmanager
async def running(**settings: Any) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(ServiceSpec(name="ops", mounts=[]), ServiceSettings(port=0, **settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


@asynccontextmanager
async def connected(**settings: Any) -> AsyncIterator[grpc.aio.Channel]:
    """A plaintext channel to a running server with ``settings``."""
    async with running(**settings) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


def probe(channel: grpc.aio.Channel, hold: float) -> Any:
    stub = ops_service_pb2_grpc.OpsServiceStub(channel)
    request = ops_service_pb2.ProbeRequest(hold=duration_pb2.Duration(seconds=int(hold), nanos=int(hold % 1 * 1e9)))
    return stub.Probe(request, timeout=60)


async def test_a_connection_past_its_maximum_age_is_closed_and_the_client_reconnects() -> None:
    """Robots hold one connection for hours: the server's GOAWAY at the maximum age makes them
    connect again, and through a Service that new connection may reach a replica added since."""
    async with connected(grpc_max_connection_age_seconds=1) as channel:
        await probe(channel, 0)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        # GOAWAY: the channel gives up its connection (IDLE) and opens a new one on the next call
        await eventually(lambda: channel.get_state() is not grpc.ChannelConnectivity.READY, within=30, what="GOAWAY")
        assert (await probe(channel, 0)).held.ToTimedelta().total_seconds() < 1  # a new connection serves it


async def test_calls_in_flight_at_the_maximum_age_finish_within_the_grace() -> None:
    async with connected(grpc_max_connection_age_seconds=1, grpc_max_connection_age_grace_seconds=30) as channel:
        response = await probe(channel, 3)  # spans the connection's maximum age
        assert response.held.ToTimedelta().total_seconds() >= 3


async def test_a_call_longer_than_the_grace_ends_unavailable_so_clients_retry() -> None:
    async with connected(grpc_max_connection_age_seconds=1, grpc_max_connection_age_grace_seconds=1) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await probe(channel, 50)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_health_port_answers_health_in_plaintext_beside_a_tls_port(tmp_path: Path) -> None:
    """kubelet's gRPC probes cannot speak TLS: the health port answers them, and nothing else."""
    pki = make_pki(tmp_path / "pki")
    tls = {"tls_cert": pki.server_cert, "tls_key": pki.server_key, "tls_client_ca": pki.ca}
    async with running(health_port=0, **tls) as server:
        assert server.health_port
        assert server.health_port != server.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=10)).status == SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await probe(channel, 0)
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED  # only health is served there
            await server.enter_graceful_shutdown()
            assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=10)).status == NOT_SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await probe(plaintext, 0)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE  # the service port stays TLS only


async def test_no_health_port_unless_asked() -> None:
    async with running() as server:
        assert server.health_port is None
