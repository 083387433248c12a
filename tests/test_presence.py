"""runtime.presence against a real hub: register, heartbeat, register again after the hub forgot the node."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc

from tests.detector.conftest import Hub
from tests.detector.triton_server import free_port
from visionloop.client.channel import create_aio_channel
from visionloop.common.v1 import node_pb2
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc
from visionloop.runtime import __version__
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.presence import Presence, beat_interval


def test_beats_come_at_half_the_hubs_interval_within_bounds() -> None:
    assert beat_interval(timedelta(seconds=10)) == 5.0
    assert beat_interval(timedelta(seconds=0.5)) == 1.0  # never hammer the hub
    assert beat_interval(timedelta(minutes=5)) == 30.0  # never go quiet for long
    assert beat_interval(None, fallback=7.0) == 7.0


async def listed(port: int) -> list[node_pb2.NodeStatus]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = node_service_pb2.ListNodesRequest(include_offline=True)
        return list((await node_service_pb2_grpc.NodeServiceStub(channel).ListNodes(request)).nodes)


async def test_registers_heartbeats_and_registers_again_after_the_hub_forgot_it(tmp_path: Path) -> None:
    port = free_port()
    hub = Hub(tmp_path / "hub", port)
    await hub.start()
    peer = PeerSettings(loop_host=f"127.0.0.1:{port}")
    state = {"value": node_pb2.NODE_STATE_IDLE}

    def status() -> node_pb2.NodeStatus:
        return node_pb2.NodeStatus(node_id="n-1", name="probe", type=node_pb2.NODE_TYPE_TRAINER, state=state["value"])

    presence = Presence(peer, status)
    channel = create_aio_channel(peer.channel_config())
    nodes = node_service_pb2_grpc.NodeServiceStub(channel)
    try:
        assert await presence.beat(nodes, 10.0) == 5.0  # registered; the test hub asks for 10 s beats
        assert presence.registered
        (node,) = await listed(port)
        assert (node.node_id, node.state, node.software_version) == ("n-1", node_pb2.NODE_STATE_IDLE, __version__)

        state["value"] = node_pb2.NODE_STATE_BUSY
        await presence.beat(nodes, 10.0)  # a heartbeat carries the new state
        assert [n.state for n in await listed(port)] == [node_pb2.NODE_STATE_BUSY]

        # A hub with a fresh database answers the heartbeat NOT_FOUND: the next beat registers again.
        await hub.stop()
        hub = Hub(tmp_path / "hub-after-reset", port)
        await hub.start()
        assert await presence.beat(nodes, 3.0) == 3.0  # failed: the next try comes at the old interval
        assert not presence.registered
        await presence.beat(nodes, 3.0)
        assert presence.registered
        assert [n.node_id for n in await listed(port)] == ["n-1"]

        # With the hub gone the beat fails quietly and keeps its interval.
        await hub.stop()
        assert await presence.beat(nodes, 3.0) == 3.0
    finally:
        await channel.close()
        await hub.stop()


async def test_a_node_with_many_long_errors_still_registers(tmp_path: Path) -> None:
    """Errors quote exceptions of any length: the node sends its newest ones within the hub's contract."""
    port = free_port()
    hub = Hub(tmp_path / "hub", port)
    await hub.start()
    peer = PeerSettings(loop_host=f"127.0.0.1:{port}")

    def status() -> node_pb2.NodeStatus:
        errors = [node_pb2.NodeError(key=f"k{i}" * 100, message=f"failure {i}: " + "x" * 5000) for i in range(40)]
        return node_pb2.NodeStatus(node_id="n-2", name="chatty", type=node_pb2.NODE_TYPE_DETECTOR, errors=errors)

    presence = Presence(peer, status)
    channel = create_aio_channel(peer.channel_config())
    try:
        await presence.beat(node_service_pb2_grpc.NodeServiceStub(channel), 10.0)
        assert presence.registered
        (node,) = await listed(port)
        assert len(node.errors) == 32
        assert node.errors[-1].message.startswith("failure 39: xxx")
        assert max(len(error.message) for error in node.errors) <= 1024
        assert max(len(error.key) for error in node.errors) <= 128
    finally:
        await channel.close()
        await hub.stop()
