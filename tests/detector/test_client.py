"""The robot client against a real detector: sync, asyncio, camera-rate streaming, ``visionloop detect``."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from tests.detector.conftest import OPEN_ADMISSION, start_detector
from tests.harness import serve
from visionloop.cli.detect import detect as detect_command
from visionloop.client import (
    AsyncDetectorClient,
    Backoff,
    ChannelConfig,
    DetectorClient,
    FrameResult,
    FrameStream,
    RetryPolicy,
    robot_channel_config,
)
from visionloop.runtime.errors import Unavailable
from visionloop.runtime.server import GrpcServer
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.service import DetectorServicer
from visionloop.testing.frames import frame, jpeg

RED = frame(squares=((100, 100, 64, "red"),))
GREEN = frame(squares=((300, 200, 64, "green"),))
# The channel reconnects within ~0.2 s of a restarted detector instead of gRPC's default 1 s+.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)
FAST_BACKOFF = Backoff(initial=0.05, maximum=0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """An in-process detector on a fixed port that can be stopped and started again."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.settings = settings
        self.port = settings.port
        self.server: GrpcServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def servicer(self) -> DetectorServicer:
        assert self.server is not None
        return self.server.spec.context

    async def start(self) -> None:
        self.server, port = await start_detector(self.settings)
        assert port == self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


@pytest.fixture
async def served(tmp_path: Path, stub_zip: Path) -> AsyncIterator[Served]:
    settings = DetectorSettings(
        port=free_port(), data_dir=tmp_path / "detector", model_paths=f"stub={stub_zip}", **OPEN_ADMISSION
    )
    detector = Served(settings)
    await detector.start()
    yield detector
    await detector.stop()


def categories(response: object) -> list[str]:
    return sorted({box.category_name for box in response.detections.boxes})  # type: ignore[attr-defined]


# --- unary calls ------------------------------------------------------------------------------------


async def test_sync_client_detects_batches_and_describes(served: Served) -> None:
    def calls() -> None:
        with DetectorClient(served.target, timeout=10) as client:
            client.wait_ready(timeout=10)
            assert categories(client.detect(RED, camera_id="front")) == ["red"]
            assert categories(client.detect(jpeg(GREEN))) == ["green"]  # encoded bytes work too
            batch = client.detect_batch([RED, GREEN, jpeg(RED)], camera_id="front")
            assert [categories(r) for r in batch] == [["red"], ["green"], ["red"]]
            assert client.model_info().version == client.model_info("stub").version
            loaded = client.loaded_models()
            assert [m.name for m in loaded.models] == ["stub"]
            assert loaded.default_model == "stub"
            assert [m.name for m in client.about().models] == ["stub"]
            assert client.build_info().service == "detector"
            answers = list(client.detect_stream([RED, GREEN, RED]))
            assert [a.frame_id for a in answers] == [0, 1, 2]
            with pytest.raises(grpc.RpcError) as error:
                client.detect(RED, model="nope")
            assert error.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

    await asyncio.to_thread(calls)


async def test_async_client_has_the_same_surface(served: Served) -> None:
    async with AsyncDetectorClient(served.target, timeout=10) as client:
        await client.wait_ready(timeout=10)
        assert categories(await client.detect(RED, camera_id="front")) == ["red"]
        batch = await client.detect_batch([GREEN, RED])
        assert [categories(r) for r in batch] == [["green"], ["red"]]
        assert (await client.model_info()).version
        assert (await client.loaded_models()).default_model == "stub"
        assert [m.name for m in (await client.about()).models] == ["stub"]
        assert (await client.build_info()).service == "detector"
        try:
            uploaded = await client.upload(RED, tags=["check"], camera_id="front", high_priority=True)
            code = grpc.StatusCode.OK if uploaded.item_id else grpc.StatusCode.UNKNOWN
        except grpc.aio.AioRpcError as error:
            code = error.code()
        assert code in {grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED}  # UNIMPLEMENTED: no outbox wired in yet
        answers = [a async for a in client.detect_stream([RED, GREEN], camera_id="front")]
        assert [(a.frame_id, categories(a.result)) for a in answers] == [(0, ["red"]), (1, ["green"])]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.detect_batch([RED], score_threshold=2.0)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unary_calls_are_retried_on_unavailable(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    servicer = served.servicer
    real = servicer.detect
    calls: list[float] = []

    async def flaky(*args: object) -> object:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise Unavailable("warming up")
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(servicer, "detect", flaky)
    async with AsyncDetectorClient(served.target, timeout=10) as client:
        assert categories(await client.detect(RED)) == ["red"]  # the third attempt answers
    assert len(calls) == 3

    calls.clear()

    # The sync client behaves the same; with retries off the first UNAVAILABLE is the answer.
    def sync_detect() -> grpc.StatusCode:
        with DetectorClient(served.target, timeout=10, retry=None) as client:
            try:
                client.detect(RED)
            except grpc.RpcError as error:
                return error.code()  # type: ignore[attr-defined,no-any-return]
            return grpc.StatusCode.OK

    assert await asyncio.to_thread(sync_detect) == grpc.StatusCode.UNAVAILABLE
    assert len(calls) == 1


def test_retry_policy_and_keepalive_options() -> None:
    config = robot_channel_config("robot:50052", retry=RetryPolicy(max_attempts=3))
    options = dict(config.options())
    assert options["grpc.keepalive_time_ms"] == 20_000
    assert options["grpc.keepalive_permit_without_calls"] == 0  # no GOAWAY too_many_pings
    assert options["grpc.max_reconnect_backoff_ms"] == 5_000
    policy = json.loads(options["grpc.service_config"])["methodConfig"][0]
    assert policy["retryPolicy"]["maxAttempts"] == 3
    assert {"service": "visionloop.detector.v1.DetectorService", "method": "Upload"} not in policy["name"]
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=9).service_config()


# --- camera-rate streaming ------------------------------------------------------------------------------


async def test_frame_stream_answers_in_order(served: Served) -> None:
    config = ChannelConfig(target=served.target)
    async with FrameStream(config, window=4, max_queued=4, camera_id="front") as stream:
        submitted = []
        for i in range(20):
            submitted.append(stream.submit(RED if i % 2 else GREEN))
            await asyncio.sleep(0.005)
        results: list[FrameResult] = []
        async for result in stream:
            results.append(result)
            if result.frame_id == submitted[-1]:
                break
    ids = [r.frame_id for r in results]
    assert ids == sorted(ids)
    assert all(r.ok for r in results)
    for result in results:
        assert categories(result.response) == (["red"] if result.frame_id % 2 else ["green"])
        assert result.latency > 0
    stats = stream.stats
    assert stats.submitted == 20
    assert stats.answered == len(results)
    assert stats.answered + stats.dropped == 20


async def test_frame_stream_drops_oldest_when_the_consumer_is_slow(served: Served) -> None:
    stream = await FrameStream(ChannelConfig(target=served.target), window=2, max_queued=2).start()
    for _ in range(30):  # nobody reads: the window fills up, then the queue; older frames give way
        stream.submit(RED)
        await asyncio.sleep(0.005)
    assert stream.stats.dropped > 20
    consumer = asyncio.create_task(collect(stream))
    await stream.close()
    results = await consumer
    ids = [r.frame_id for r in results]
    assert ids == sorted(ids)
    assert 29 in ids  # the newest frame survives
    assert len(ids) <= 2 * 2 + 2  # delivered + in flight + queued, never more
    assert stream.stats.answered == len(ids)
    assert stream.stats.answered + stream.stats.dropped == 30


async def test_frame_stream_refuses_new_frames_without_drop_oldest(served: Served) -> None:
    stream = await FrameStream(ChannelConfig(target=served.target), window=1, max_queued=1, drop_oldest=False).start()
    ids = [stream.submit(RED) for _ in range(5)]  # no await: nothing gets sent in between
    assert ids == [0, None, None, None, None]
    consumer = asyncio.create_task(collect(stream))
    await stream.close()
    assert [r.frame_id for r in await consumer] == [0]
    assert stream.stats.dropped == 4


async def collect(stream: FrameStream) -> list[FrameResult]:
    return [result async for result in stream]


async def test_frame_stream_reconnects_after_a_detector_restart(served: Served) -> None:
    config = ChannelConfig(target=served.target, extra_options=FAST_RECONNECT)
    stream = await FrameStream(config, window=4, max_queued=2, backoff=FAST_BACKOFF, camera_id="front").start()
    results: list[FrameResult] = []

    async def consume() -> None:
        async for result in stream:
            results.append(result)

    consumer = asyncio.create_task(consume())

    async def camera(seconds: float, until: set[int] | None = None) -> set[int]:
        """Submit at ~100 fps for ``seconds`` (or until a frame it sent is answered, at most 10 s)."""
        ids: set[int] = set()
        end = time.monotonic() + (10.0 if until is not None else seconds)
        while time.monotonic() < end:
            if (frame_id := stream.submit(RED)) is not None:
                ids.add(frame_id)
            if until is not None and {r.frame_id for r in results if r.ok} & ids:
                break
            await asyncio.sleep(0.01)
        return ids

    before = await camera(0.3)
    await served.stop()
    await camera(0.3)  # the detector is gone: frames are dropped, never piled up
    assert stream.queued <= 2
    await served.start()
    after = await camera(0, until=set())
    await stream.close()
    await consumer

    ids = [r.frame_id for r in results]
    assert ids == sorted(ids)
    answered = {r.frame_id for r in results if r.ok}
    assert answered & before
    assert answered & after, stream.stats  # detections again after the restart
    assert stream.stats.reconnects >= 1
    # Frames in flight at the stop come back lost (or with the detector's shutdown error).
    assert all(r.lost or r.code == grpc.StatusCode.UNAVAILABLE for r in results if not r.ok)
    stats = stream.stats
    assert stats.answered + stats.failed + stats.lost + stats.dropped == stats.submitted


async def test_frame_stream_ends_on_an_error_it_does_not_retry(served: Served) -> None:
    async with AsyncDetectorClient(served.target) as client:
        # Told not to retry UNAVAILABLE, the stream ends with it instead of reconnecting.
        stream = await client.stream(reconnect_codes=frozenset()).start()
        stream.submit(RED)
        await served.stop()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stream)  # the answer, if it came before the stop, then the error
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            stream.submit(RED)
        await stream.close()
    assert stream.stats.reconnects == 0


async def test_sync_frame_stream_runs_on_its_own_thread(served: Served) -> None:
    def robot() -> tuple[list[int], list[int | None]]:
        got: list[int] = []
        with DetectorClient(served.target) as client:
            stream = client.stream(on_result=lambda r: got.append(r.frame_id), window=2, max_queued=8)
            ids = []
            for _ in range(10):
                ids.append(stream.submit(GREEN))
                time.sleep(0.005)
            stream.close()
        assert stream.stats.answered == 10
        return got, ids

    got, ids = await asyncio.to_thread(robot)
    assert got == ids == list(range(10))


async def test_sync_frame_stream_get(served: Served) -> None:
    def robot() -> FrameResult | None:
        with DetectorClient(served.target).stream(camera_id="side") as stream:
            stream.submit(RED)
            return stream.get(timeout=10)

    result = await asyncio.to_thread(robot)
    assert result is not None
    assert result.ok
    assert categories(result.response) == ["red"]


# --- visionloop detect -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_process(tmp_path_factory: pytest.TempPathFactory, stub_zip: Path) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("detect-cli")
    with serve("detector", tmp_path, env={"DETECTOR_MODEL_PATHS": f"stub={stub_zip}"}) as proc:
        yield f"127.0.0.1:{proc.ports()['detector']}"


def test_detect_command_prints_detections(detector_process: str, tmp_path: Path) -> None:
    red, green = tmp_path / "red.jpg", tmp_path / "green.png"
    red.write_bytes(jpeg(RED))
    green.write_bytes(jpeg(GREEN))  # the detector decodes by content, not by name
    result = CliRunner().invoke(
        detect_command, [str(red), str(green), "--camera-id", "cli"], env={"DETECTOR_HOST": detector_process}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{red}: ")
    assert lines[0].endswith("detections (640x480, model stub local)")
    red_lines = lines[1 : lines.index(next(line for line in lines if line.startswith(str(green))))]
    assert red_lines
    for line in red_lines:
        category, confidence, kind, *box = line.split()
        assert (category, kind) == ("red", "box")
        assert 0 < float(confidence) <= 1
        assert [part.split("=")[0] for part in box] == ["x", "y", "w", "h"]

    result = CliRunner().invoke(
        detect_command, [str(red), "--detector", detector_process, "--json", "--score-threshold", "0.5"]
    )
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.output)
    assert answer["model"] == "stub"
    assert answer["width"] == 640
    found = answer["detections"][0]
    assert {d["category"] for d in answer["detections"]} == {"red"}
    assert found["type"] == "box"
    assert found["category"] == "red"
    assert found["confidence"] >= 0.5
    assert set(found["box"]) == {"x", "y", "width", "height"}


def test_detect_command_reports_errors_in_one_line(detector_process: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    result = CliRunner().invoke(detect_command, [str(bad), "--detector", detector_process])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "INVALID_ARGUMENT" in result.output
    assert str(bad) in result.output

    good = tmp_path / "red.jpg"
    good.write_bytes(jpeg(RED))
    result = CliRunner().invoke(detect_command, [str(good), "--detector", f"127.0.0.1:{free_port()}", "--timeout", "1"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "UNAVAILABLE" in result.output
