"""The node registry: registration, heartbeats and offline detection."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from grpc import StatusCode as Code

from tests.hub.conftest import HubClient
from visionloop.common.v1 import node_pb2 as n
from visionloop.loop.v1 import node_service_pb2 as pb
from visionloop.server.hub.nodes import NodeServicer

INTERVAL = 0.25  # seconds; offline after three missed heartbeats


@pytest.fixture
def fast_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(NodeServicer, "heartbeat_interval", timedelta(seconds=INTERVAL))


def node(node_id: str = "n1", name: str = "robot-7-detector", type_: int = n.NODE_TYPE_DETECTOR, **kw) -> n.NodeStatus:
    return n.NodeStatus(node_id=node_id, name=name, type=type_, **kw)


async def register(hub: HubClient, status: n.NodeStatus) -> pb.RegisterNodeResponse:
    return await hub.nodes.RegisterNode(pb.RegisterNodeRequest(status=status))


async def get(hub: HubClient, node_id: str) -> n.NodeStatus:
    return (await hub.nodes.GetNode(pb.GetNodeRequest(node_id=node_id))).status


async def listed(hub: HubClient, **kw) -> list[str]:
    return [s.node_id for s in (await hub.nodes.ListNodes(pb.ListNodesRequest(**kw))).nodes]


async def fails(call, code: Code) -> str:
    """The details of the error ``call`` fails with, which must have ``code``."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


async def test_register_and_reregister(hub: HubClient) -> None:
    answer = await register(hub, node(state=n.NODE_STATE_STARTING, capabilities=["onnx"]))
    assert answer.heartbeat_interval.ToTimedelta() == timedelta(seconds=10)
    assert answer.status.HasField("last_heartbeat_time")
    assert (answer.status.state, list(answer.status.capabilities)) == (n.NODE_STATE_STARTING, ["onnx"])

    await register(hub, node(name="robot-7-detector-b", state=n.NODE_STATE_IDLE))
    stored = await get(hub, "n1")
    assert (stored.name, stored.state, list(stored.capabilities)) == ("robot-7-detector-b", n.NODE_STATE_IDLE, [])


@pytest.mark.parametrize(
    ("status", "mentions"),
    [
        (node(node_id=""), "node_id"),
        (node(name=""), "name"),
        (node(type_=n.NODE_TYPE_UNSPECIFIED), "type"),
        (node(type_=42), "type"),
        (node(node_id="x" * 129), "node_id"),
        (node(state=n.NODE_STATE_OFFLINE), "OFFLINE"),
    ],
)
async def test_register_rejects_incomplete_status(hub: HubClient, status: n.NodeStatus, mentions: str) -> None:
    assert mentions in await fails(register(hub, status), Code.INVALID_ARGUMENT)


async def test_heartbeat_updates_status(hub: HubClient) -> None:
    assert "RegisterNode" in await fails(hub.nodes.Heartbeat(pb.HeartbeatRequest(status=node())), Code.NOT_FOUND)

    first = (await register(hub, node(state=n.NODE_STATE_STARTING))).status
    await asyncio.sleep(0.01)
    beat = n.NodeStatus(node_id="n1", state=n.NODE_STATE_BUSY, model_version="1.2")  # name and type left out
    answer = await hub.nodes.Heartbeat(pb.HeartbeatRequest(status=beat))
    assert answer.heartbeat_interval.ToTimedelta() == timedelta(seconds=10)
    stored = await get(hub, "n1")
    assert (stored.name, stored.type, stored.state, stored.model_version) == (
        "robot-7-detector",
        n.NODE_TYPE_DETECTOR,
        n.NODE_STATE_BUSY,
        "1.2",
    )
    assert stored.last_heartbeat_time.ToDatetime() > first.last_heartbeat_time.ToDatetime()


async def test_silent_node_shows_offline(hub: HubClient, fast_heartbeats) -> None:
    await register(hub, node("quiet", "a-quiet", state=n.NODE_STATE_IDLE))
    await register(hub, node("alive", "b-alive", state=n.NODE_STATE_IDLE))
    hub.hub.clock_offset += timedelta(seconds=3 * INTERVAL + 0.1)  # three heartbeats missed
    await hub.nodes.Heartbeat(pb.HeartbeatRequest(status=node("alive", "b-alive", state=n.NODE_STATE_IDLE)))

    assert (await get(hub, "quiet")).state == n.NODE_STATE_OFFLINE
    assert (await get(hub, "alive")).state == n.NODE_STATE_IDLE
    assert await listed(hub) == ["alive"]
    assert await listed(hub, include_offline=True) == ["quiet", "alive"]  # by name

    await hub.nodes.Heartbeat(pb.HeartbeatRequest(status=node("quiet", "a-quiet", state=n.NODE_STATE_IDLE)))
    assert (await get(hub, "quiet")).state == n.NODE_STATE_IDLE


async def test_list_filters_by_type(hub: HubClient) -> None:
    await register(hub, node("d", "detector", n.NODE_TYPE_DETECTOR))
    await register(hub, node("t2", "trainer-b", n.NODE_TYPE_TRAINER))
    await register(hub, node("t1", "trainer-a", n.NODE_TYPE_TRAINER))
    assert await listed(hub, type=n.NODE_TYPE_TRAINER) == ["t1", "t2"]
    assert await listed(hub) == ["d", "t1", "t2"]


async def test_get_unknown_node(hub: HubClient) -> None:
    await fails(get(hub, "ghost"), Code.NOT_FOUND)
    await fails(get(hub, ""), Code.INVALID_ARGUMENT)
