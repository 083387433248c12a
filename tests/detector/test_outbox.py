"""The detector's durable outbox against a real in-process hub (SQLite + folder stack)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from tests.harness import REPO, eventually
from tests.hub.pictures import picture
from visionloop.client.channel import ChannelConfig, create_aio_channel
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2
from visionloop.loop.v1 import image_service_pb2, image_service_pb2_grpc, project_service_pb2, project_service_pb2_grpc
from visionloop.runtime.errors import FailedPrecondition, ResourceExhausted
from visionloop.runtime.server import GrpcServer
from visionloop.server.detector import outbox as outbox_module
from visionloop.server.detector.outbox import (
    CONTINUOUS_UPLOAD,
    STOPPED,
    Accepted,
    Failed,
    HubSender,
    ImageUpload,
    Outbox,
    Outcome,
    Rejected,
    Sender,
    TransportError,
)
from visionloop.server.hub import app
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.state import Hub
from visionloop.testing.ports import free_port

REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")
# The channel's own reconnect backoff (default up to 2 minutes) would outlast the tests' short one.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)


# --- helpers --------------------------------------------------------------------------------------


def item(seed: int, tag: str | None = None, data: bytes | None = None) -> ImageUpload:
    metadata = image_pb2.ImageMetadata(tags=[tag or f"item-{seed}"], camera_id="cam-1", source="test")
    return ImageUpload(data=picture(seed) if data is None else data, metadata=metadata)


def tags_of(uploads: Sequence[ImageUpload]) -> list[str]:
    return [upload.metadata.tags[0] for upload in uploads]


def files(folder: Path, lane: str) -> list[str]:
    return sorted(p.stem for p in (folder / lane).glob("*.item"))


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*/*.item"))


@dataclass
class RunningHub:
    port: int
    channel: grpc.aio.Channel
    hub: Hub

    async def images(self) -> list[image_pb2.ImageMetadata]:
        """Every image, oldest upload first (the order the hub received them)."""
        stub = image_service_pb2_grpc.ImageServiceStub(self.channel)
        found: list[image_pb2.ImageMetadata] = []
        token = ""
        while True:
            request = image_service_pb2.ListImagesRequest(
                ref=REF, order=image_service_pb2.IMAGE_ORDER_OLDEST, page_size=1000, page_token=token
            )
            page = await stub.ListImages(request)
            found.extend(page.images)
            token = page.next_page_token
            if not token:
                return found


@asynccontextmanager
async def running_hub(data_dir: Path, port: int = 0) -> AsyncIterator[RunningHub]:
    settings = LoopSettings(port=port, data_dir=data_dir, host="127.0.0.1")
    spec = app.create(settings)
    server = GrpcServer(spec, settings)
    bound = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound}") as channel:
            projects = project_service_pb2_grpc.ProjectServiceStub(channel)
            project = project_service_pb2.Project(ref=REF, display_name="Weeds")
            await projects.CreateProject(project_service_pb2.CreateProjectRequest(project=project))
            yield RunningHub(bound, channel, spec.context)
    finally:
        await server.stop(0)


@asynccontextmanager
async def hub_sender(port: int) -> AsyncIterator[HubSender]:
    config = ChannelConfig(target=f"127.0.0.1:{port}", extra_options=FAST_RECONNECT)
    async with create_aio_channel(config) as channel:
        yield HubSender(channel, REF, timeout=10)


@dataclass
class Recorder:
    """A sender that records each batch's tags and forwards it (or accepts everything)."""

    forward: Sender | None = None
    batches: list[list[str]] = field(default_factory=list)
    calls: int = 0

    async def __call__(self, uploads: Sequence[ImageUpload]) -> Sequence[Outcome]:
        self.calls += 1
        self.batches.append(tags_of(uploads))
        if self.forward is None:
            return [Accepted()] * len(uploads)
        return await self.forward(uploads)

    @property
    def sent(self) -> list[str]:
        return [tag for batch in self.batches for tag in batch]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path / "hub") as running:
        yield running


@pytest.fixture
async def sender(hub: RunningHub) -> AsyncIterator[HubSender]:
    async with hub_sender(hub.port) as hub_sender_:
        yield hub_sender_


@asynccontextmanager
async def started(outbox: Outbox) -> AsyncIterator[Outbox]:
    outbox.start()
    try:
        yield outbox
    finally:
        await outbox.stop()


# --- crash safety ---------------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
from tests.hub.pictures import picture
from visionloop.client.channel import ChannelConfig, create_aio_channel
from visionloop.common.v1 import image_pb2
from visionloop.server.detector.outbox import CONTINUOUS_UPLOAD, STOPPED, HubSender, Outbox
from visionloop.loop.v1 import image_service_pb2, project_service_pb2

async def main(folder: str, port: int, live: bool) -> None:
    channel = create_aio_channel(ChannelConfig(target=f"127.0.0.1:{port}"))
    hub = HubSender(channel, project_service_pb2.ProjectRef(organization="acme", project="weeds"))

    async def slow(uploads):  # widens the window between the hub's answer and deleting the files
        outcomes = await hub(uploads)
        await asyncio.sleep(0.05)
        return outcomes

    mode = STOPPED if live else CONTINUOUS_UPLOAD  # offline: the uploader retries against nothing
    outbox = Outbox(Path(folder), slow, batch_size=4, mode=mode, backoff_initial=0.05, backoff_max=0.2)
    outbox.start()
    for i in range(100):
        metadata = image_pb2.ImageMetadata(tags=[f"item-{i}"])
        await outbox.put(image_service_pb2.ImageUpload(data=picture(i), metadata=metadata), i % 10 == 0)
    print("ready", flush=True)
    outbox.set_mode(CONTINUOUS_UPLOAD)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "live"))
"""


async def put_100_then_kill(folder: Path, port: int, live: bool, kill_when: Callable[[], bool] | None = None) -> None:
    """Run an outbox in a child process that puts 100 items; SIGKILL it once they are acknowledged."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(folder), str(port), "live" if live else "offline",
        cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()).strip() != b"ready":  # log lines come first
                assert line, "the child exited before it was ready"
        if kill_when is not None:
            await eventually(kill_when, what="kill condition")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL


async def drain(folder: Path, sender: Sender, expect_depth: int) -> Outbox:
    outbox = Outbox(folder, sender, mode=STOPPED)
    async with started(outbox):
        assert outbox.depth == expect_depth
        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0, what="outbox drained")
    return outbox


def assert_each_once(images: Sequence[image_pb2.ImageMetadata], count: int) -> None:
    assert len(images) == count
    assert len({image.id for image in images}) == count
    tags = sorted(tag for image in images for tag in image.tags)
    assert tags == sorted(f"item-{i}" for i in range(count))


async def test_kill_9_with_100_pending_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    await put_100_then_kill(folder, free_port(), live=False)  # nothing listens there: the hub is not up yet
    assert len(files(folder, "high")) == 10
    assert len(files(folder, "normal")) == 90
    async with running_hub(tmp_path / "hub") as hub, hub_sender(hub.port) as sender:
        outbox = await drain(folder, sender, expect_depth=100)
        assert_each_once(await hub.images(), 100)
    assert outbox.uploaded == 100
    assert files(folder, "high") == files(folder, "normal") == []


async def test_kill_9_while_sending_sends_each_image_once(tmp_path: Path, hub: RunningHub) -> None:
    folder = tmp_path / "outbox"
    seen: list[int] = []

    def some_arrived() -> bool:  # polled: counts what the hub stored so far, read in the background
        return bool(seen) and seen[-1] >= 20

    async def watch() -> None:
        while True:
            seen.append(len(await hub.images()))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        await put_100_then_kill(folder, hub.port, live=True, kill_when=some_arrived)
    finally:
        watcher.cancel()
    left = len(files(folder, "high")) + len(files(folder, "normal"))
    assert 0 < left < 100  # killed half way
    async with hub_sender(hub.port) as sender:
        await drain(folder, sender, expect_depth=left)
    assert_each_once(await hub.images(), 100)


async def test_leftover_temp_files_are_removed_and_damaged_items_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    async with started(Outbox(folder, Recorder(), mode=STOPPED)) as outbox:
        await outbox.put(item(1))
        await outbox.put(item(2))
    (folder / "normal" / "00000000000000000001.tmp").write_bytes(b"half written")
    damaged = folder / "normal" / f"{files(folder, 'normal')[0]}.item"
    damaged.write_bytes(damaged.read_bytes()[:-5] + b"xxxxx")
    recorder = Recorder()
    async with started(Outbox(folder, recorder)) as outbox:
        assert not list(folder.glob("*/*.tmp"))
        await eventually(lambda: outbox.depth == 0)
    assert recorder.sent == ["item-2"]
    assert outbox.rejected == 1


async def test_one_folder_serves_one_outbox(tmp_path: Path) -> None:
    async with started(Outbox(tmp_path, Recorder())):
        with pytest.raises(FailedPrecondition):
            Outbox(tmp_path, Recorder()).start()


async def test_put_returns_without_waiting_for_the_network(tmp_path: Path) -> None:
    hanging = asyncio.Event()

    async def never_answers(uploads: Sequence[ImageUpload]) -> list[Outcome]:
        await hanging.wait()
        raise AssertionError("unreachable")

    async with started(Outbox(tmp_path, never_answers)) as outbox:
        for seed in range(5):
            await asyncio.wait_for(outbox.put(item(seed)), timeout=2)
        assert outbox.depth == 5
    assert len(files(tmp_path, "normal")) == 5  # stop() abandoned the unanswered batch, not the items


# --- hub down -------------------------------------------------------------------------------------


async def test_hub_down_keeps_items_and_retries_with_backoff(tmp_path: Path) -> None:
    port = free_port()
    async with hub_sender(port) as sender:
        recorder = Recorder(sender)
        outbox = Outbox(tmp_path / "outbox", recorder, backoff_initial=0.05, backoff_max=0.2)
        async with started(outbox):
            for seed in range(5):
                await outbox.put(item(seed))
            await eventually(lambda: recorder.calls >= 4, what="several attempts")
            began = time.monotonic()
            calls = recorder.calls
            await asyncio.sleep(0.5)
            # Backed off: at most one attempt per 0.1 s (the 0.2 s cap, jittered down to half).
            assert recorder.calls - calls <= 0.5 / 0.1 + 1
            assert outbox.depth == 5
            assert len(files(tmp_path / "outbox", "normal")) == 5
            assert "UNAVAILABLE" in outbox.status().last_error
            assert time.monotonic() - began < 2

            async with running_hub(tmp_path / "hub", port=port) as hub:
                await eventually(lambda: outbox.depth == 0, what="drained after the hub came up")
                assert_each_once(await hub.images(), 5)
            assert outbox.status().last_error == ""
            assert outbox.uploaded == 5
            assert files(tmp_path / "outbox", "normal") == []


async def test_backoff_grows_and_resets_after_success(tmp_path: Path) -> None:
    moments: list[float] = []
    healthy = False

    async def flaky(uploads: Sequence[ImageUpload]) -> list[Outcome]:
        moments.append(time.monotonic())
        if not healthy:
            raise TransportError("hub unreachable")
        return [Accepted()] * len(uploads)

    outbox = Outbox(tmp_path, flaky, backoff_initial=0.1, backoff_max=0.8)
    async with started(outbox):
        await outbox.put(item(1))
        await eventually(lambda: len(moments) >= 6)
        gaps = [b - a for a, b in itertools.pairwise(moments)]
        assert gaps[0] < 0.25  # about the initial delay (a busy machine adds some)
        assert max(gaps[3:5]) >= 0.4 * 0.9  # grew to the cap (jitter keeps at least half)
        assert outbox.depth == 1
        healthy = True
        await eventually(lambda: outbox.depth == 0)
        healthy = False
        moments.clear()
        await outbox.put(item(2))
        await eventually(lambda: len(moments) >= 2)
        assert moments[1] - moments[0] < 0.25  # reset to the initial delay after the success


# --- size bound and drop policy -------------------------------------------------------------------


async def test_full_outbox_drops_oldest_normal_first_and_keeps_priority(tmp_path: Path) -> None:
    dropped_before = outbox_module.DROPPED.labels("normal")._value.get()
    outbox = Outbox(tmp_path, Recorder(), max_items=5, mode=STOPPED)
    async with started(outbox):
        ids = {}
        for tag, high in [("h0", True), ("h1", True), ("n0", False), ("n1", False), ("n2", False)]:
            ids[tag] = await outbox.put(item(len(ids), tag), high_priority=high)
        assert outbox.dropped == 0
        ids["n3"] = await outbox.put(item(10, "n3"))
        ids["h2"] = await outbox.put(item(11, "h2"), high_priority=True)
        assert outbox.pending() == [ids[t] for t in ("h0", "h1", "h2", "n2", "n3")]  # n0, n1 went first
        ids["h3"] = await outbox.put(item(12, "h3"), high_priority=True)
        ids["h4"] = await outbox.put(item(13, "h4"), high_priority=True)
        assert outbox.pending() == [ids[t] for t in ("h0", "h1", "h2", "h3", "h4")]  # all normal gone
        ids["h5"] = await outbox.put(item(14, "h5"), high_priority=True)
        assert outbox.pending() == [ids[t] for t in ("h1", "h2", "h3", "h4", "h5")]  # then the oldest high
        assert outbox.dropped == 5
        assert outbox.status().depth == outbox.depth == 5
        assert outbox_module.DROPPED.labels("normal")._value.get() - dropped_before == 4
    # What is on disk is what the index says, and survives a restart in the same order.
    assert files(tmp_path, "high") == [ids[t] for t in ("h1", "h2", "h3", "h4", "h5")]
    assert files(tmp_path, "normal") == []
    recorder = Recorder()
    async with started(Outbox(tmp_path, recorder)) as again:
        await eventually(lambda: again.depth == 0)
    assert recorder.sent == ["h1", "h2", "h3", "h4", "h5"]


async def test_byte_bound_holds(tmp_path: Path) -> None:
    sizes = [len(picture(seed)) for seed in range(20)]
    limit = sum(sizes[:4]) + 200  # room for about four items with their metadata
    outbox = Outbox(tmp_path, Recorder(), max_bytes=limit, mode=STOPPED)
    async with started(outbox):
        for seed in range(20):
            await outbox.put(item(seed), high_priority=seed == 0)
            assert disk_bytes(tmp_path) == outbox.size_bytes <= limit
        assert outbox.dropped >= 15
        assert outbox.pending()[0] == files(tmp_path, "high")[0]  # the priority item outlived 15+ normal ones
        with pytest.raises(ResourceExhausted):
            await outbox.put(item(99, data=b"x" * (limit + 1)))
        assert outbox.size_bytes <= limit


# --- sending --------------------------------------------------------------------------------------


async def test_priority_lane_reaches_the_hub_first(tmp_path: Path, hub: RunningHub, sender: HubSender) -> None:
    outbox = Outbox(tmp_path / "outbox", sender, batch_size=2, mode=STOPPED)
    async with started(outbox):
        order = [("n0", False), ("n1", False), ("h0", True), ("n2", False), ("h1", True), ("n3", False)]
        for seed, (tag, high) in enumerate(order):
            await outbox.put(item(seed, tag), high_priority=high)
        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
    received = [image.tags[0] for image in await hub.images()]
    # Batches of two arrive in this order; the hub stores a batch's images together, in any order.
    assert [sorted(received[i : i + 2]) for i in (0, 2, 4)] == [["h0", "h1"], ["n0", "n1"], ["n2", "n3"]]


async def test_rejected_item_is_dropped_without_blocking_the_rest(
    tmp_path: Path, hub: RunningHub, sender: HubSender
) -> None:
    recorder = Recorder(sender)
    outbox = Outbox(tmp_path / "outbox", recorder, mode=STOPPED)
    async with started(outbox):
        await outbox.put(item(0))
        await outbox.put(item(1, "not-an-image", data=b"these bytes are not an image"))
        await outbox.put(item(2))
        await outbox.put(item(3))
        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
        assert outbox.rejected == 1
        assert outbox.uploaded == 3
        status = outbox.status().to_proto()  # what GetAbout and SetOutboxMode answer
        assert (status.rejected, status.uploaded, status.last_error) == (1, 3, "")
    assert recorder.calls == 1  # one batch: the bad image did not cost a retry
    assert sorted(image.tags[0] for image in await hub.images()) == ["item-0", "item-2", "item-3"]


async def test_image_that_breaks_the_stream_is_isolated(tmp_path: Path, hub: RunningHub, sender: HubSender) -> None:
    # The hub refuses an image larger than its limit in that image's own answer (RESOURCE_EXHAUSTED);
    # the rest of the batch is stored.
    hub.hub.max_image_bytes = 20_000
    outbox = Outbox(tmp_path / "outbox", sender, mode=STOPPED)
    async with started(outbox):
        await outbox.put(item(0))
        await outbox.put(item(1, "too-large", data=picture(1, 256, 256)))
        await outbox.put(item(2))
        await outbox.put(item(3))
        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
        assert (outbox.rejected, outbox.uploaded) == (1, 3)
    assert sorted(image.tags[0] for image in await hub.images()) == ["item-0", "item-2", "item-3"]


async def test_hub_sender_maps_per_image_answers(hub: RunningHub, sender: HubSender) -> None:
    outcomes = await sender([item(0), item(1, data=b"garbage"), item(0, "again")])
    assert outcomes[0] == Accepted(duplicate=False)
    assert isinstance(outcomes[1], Rejected)
    assert outcomes[1].code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcomes[2] == Accepted(duplicate=True)  # same bytes: one image, tags merged
    images = await hub.images()
    assert len(images) == 1
    assert sorted(images[0].tags) == ["again", "item-0"]


async def test_hub_sender_reports_a_missing_hub_as_retryable() -> None:
    async with hub_sender(free_port()) as sender:
        outcomes = await sender([item(0), item(1)])
    assert all(isinstance(o, Failed) and "UNAVAILABLE" in o.message for o in outcomes)


async def test_pause_and_resume(tmp_path: Path) -> None:
    recorder = Recorder()
    outbox = Outbox(tmp_path, recorder, mode=STOPPED)
    async with started(outbox):
        await outbox.put(item(0))
        await outbox.put(item(1))
        await asyncio.sleep(0.1)
        assert recorder.calls == 0
        assert outbox.depth == 2
        assert outbox.status().to_proto().mode == detector_service_pb2.OUTBOX_MODE_STOPPED

        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
        assert recorder.sent == ["item-0", "item-1"]

        outbox.set_mode(STOPPED)
        await outbox.put(item(2))  # still accepted while stopped
        await asyncio.sleep(0.1)
        assert outbox.depth == 1
        assert recorder.calls == 1
        status = outbox.status().to_proto()
        assert (status.mode, status.depth) == (detector_service_pb2.OUTBOX_MODE_STOPPED, 1)
        assert status.size_bytes == outbox.size_bytes > 0

        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
        assert recorder.sent == ["item-0", "item-1", "item-2"]


async def test_a_stopped_outbox_stays_stopped_after_a_restart(tmp_path: Path) -> None:
    recorder = Recorder()
    async with started(Outbox(tmp_path, recorder)) as outbox:
        outbox.set_mode(STOPPED)  # e.g. the robot is on a metered link
        await outbox.put(item(0))
    # The detector restarts with its default (continuous) mode: the operator's stop still holds.
    async with started(Outbox(tmp_path, recorder)) as outbox:
        assert outbox.mode == STOPPED
        await asyncio.sleep(0.1)
        assert (recorder.calls, outbox.depth) == (0, 1)
        outbox.set_mode(CONTINUOUS_UPLOAD)
        await eventually(lambda: outbox.depth == 0)
    async with started(Outbox(tmp_path, recorder)) as outbox:
        assert outbox.mode == CONTINUOUS_UPLOAD  # and so does a resume
    assert recorder.sent == ["item-0"]
