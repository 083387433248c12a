"""A node's presence in the hub's node registry: register, heartbeat, register again after a reset.

Every long-running node (detector, trainer, converter) runs one ``Presence``: operators see it in
``ListNodes`` with its state, model version, errors and uptime, and the hub marks it offline once
it misses about three heartbeats. Hub outages never reach the node's own work: failures are
logged and retried at the next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import timedelta

import grpc

from visionloop.client.channel import create_aio_channel
from visionloop.common.v1 import node_pb2
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc
from visionloop.runtime import __version__, limits
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.logging import get_logger
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling
from visionloop.runtime.text import clip

log = get_logger(__name__)

DEFAULT_INTERVAL_S = 10.0
RPC_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def beat_interval(hub_interval: timedelta | None, fallback: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between beats: half the hub's interval (one late beat is no outage), 1 to 30 s."""
    if not hub_interval or hub_interval.total_seconds() <= 0:
        return fallback
    return max(1.0, min(hub_interval.total_seconds() / 2, 30.0))


_MAX_ERRORS = limits.max_items(limits.of(limits.field(node_pb2.NodeStatus, "errors")))
_MAX_KEY, _MAX_MESSAGE = (
    limits.max_length(field, limits.of(field))
    for field in (limits.field(node_pb2.NodeError, name) for name in ("key", "message"))
)


def _fit_errors(status: node_pb2.NodeStatus) -> None:
    """The newest errors, texts clipped, as the hub's contract accepts them (errors quote exceptions: unbounded)."""
    del status.errors[:-_MAX_ERRORS]
    for error in status.errors:
        error.key = clip(error.key, _MAX_KEY)
        error.message = clip(error.message, _MAX_MESSAGE)


class Presence:
    """Registers ``status()`` with the hub at ``peer`` and keeps heart-beating until stopped."""

    def __init__(
        self,
        peer: PeerSettings,
        status: Callable[[], node_pb2.NodeStatus],
        started: float | None = None,
    ) -> None:
        self.peer = peer
        self._status = status
        self.started = time.monotonic() if started is None else started
        self.registered = False
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None

    def status(self) -> node_pb2.NodeStatus:
        """The node's status plus what every node reports alike: software version and uptime."""
        status = self._status()
        status.software_version = status.software_version or __version__
        status.uptime.FromTimedelta(timedelta(seconds=time.monotonic() - self.started))
        _fit_errors(status)
        return status

    def poke(self) -> None:
        """Report now instead of at the next beat (the node's state or model changed)."""
        self._poked.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="presence")

    async def stop(self) -> None:
        """Stop beating and close the channel; bounded, so a hub that hangs never holds up a shutdown."""
        task, self._task = self._task, None
        await cancel_and_wait([task], within=STOP_TIMEOUT_S)
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(channel.close(), STOP_TIMEOUT_S)

    async def _run(self) -> None:
        self._channel = create_aio_channel(self.peer.channel_config())
        nodes = node_service_pb2_grpc.NodeServiceStub(self._channel)
        interval = DEFAULT_INTERVAL_S
        while True:
            raise_if_cancelling()
            interval = await self.beat(nodes, interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), interval)
            self._poked.clear()

    async def beat(self, nodes: node_service_pb2_grpc.NodeServiceStub, interval: float) -> float:
        """One registration or heartbeat; returns the seconds until the next one."""
        status = self.status()
        try:
            if self.registered:
                response = await nodes.Heartbeat(
                    node_service_pb2.HeartbeatRequest(status=status), timeout=RPC_TIMEOUT_S
                )
            else:
                response = await nodes.RegisterNode(
                    node_service_pb2.RegisterNodeRequest(status=status), timeout=RPC_TIMEOUT_S
                )
                log.info("registered with the hub", node_id=status.node_id, type=node_pb2.NodeType.Name(status.type))
            self.registered = True
            return beat_interval(response.heartbeat_interval.ToTimedelta())
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                self.registered = False  # the hub forgot us (a new database): register again
            log.info("hub presence failed; retrying", code=error.code().name, error=error.details())
            return interval
