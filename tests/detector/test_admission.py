"""Admission control: a model holds a bounded number of frames and refuses the rest at once.

The detector is real (the synthetic model on ONNX Runtime, gRPC on loopback). To keep its queue
full for as long as a test needs, the test holds the micro-batcher's only backend slot itself
(``claim_idle``, what a lone frame takes): admitted frames then wait in the queue until the test
lets go, exactly as they wait behind a long batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from tests.detector.conftest import DetectorClient, start_detector
from visionloop.client import ChannelConfig, FrameResult, FrameStream, SyncFrameStream
from visionloop.client import DetectorClient as RobotClient
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.runtime.errors import ResourceExhausted
from visionloop.server.detector.admission import Admission
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.models import ServedModel
from visionloop.testing.frames import frame, jpeg
from visionloop.testing.ports import free_port

RED = frame(squares=((100, 100, 64, "red"),))
IMAGE = image_pb2.Image(encoded=jpeg(RED))
BOUND = 2  # DETECTOR_MAX_QUEUED_BATCHES 1 x DETECTOR_MAX_BATCH_SIZE 2; the budget never binds below it
BUSY = grpc.StatusCode.RESOURCE_EXHAUSTED


def refused(model: str = "stub") -> float:
    return REGISTRY.get_sample_value("visionloop_detector_refused_frames_total", {"model": model}) or 0.0


async def until(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def bounded(tmp_path: Path, stub_zip: Path) -> AsyncIterator[DetectorClient]:
    """A detector whose model holds at most BOUND frames (a minute's budget: only the cap binds)."""
    settings = DetectorSettings(
        port=free_port(),
        data_dir=tmp_path / "detector",
        model_paths=f"stub={stub_zip}",
        max_batch_size=BOUND,
        max_queued_batches=1,
        queue_budget_ms=60_000,
    )
    server, port = await start_detector(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield DetectorClient(
            channel, server.spec.context, detector_service_pb2_grpc.DetectorServiceStub(channel), settings
        )
    await server.stop(0)


def target(detector: DetectorClient) -> str:
    return f"127.0.0.1:{detector.settings.port}"


def stub_model(detector: DetectorClient) -> ServedModel:
    return detector.servicer.models.get("stub")


async def hold_backend(detector: DetectorClient) -> ServedModel:
    """Take the backend's only slot: from now on admitted frames queue until ``release``."""
    model = stub_model(detector)
    assert await model.batcher.claim_idle()
    return model


async def fill(detector: DetectorClient, send: Callable[[], Awaitable[object]]) -> list[asyncio.Task[object]]:
    """BOUND calls of ``send`` that the model admitted and holds (its backend must be held)."""
    model = stub_model(detector)
    calls = [asyncio.ensure_future(send()) for _ in range(BOUND)]
    await until(lambda: model.admission.held == BOUND, f"{BOUND} frames held")
    return calls


# --- the detector ---------------------------------------------------------------------------------


async def test_beyond_the_bound_detect_and_detect_batch_are_refused_at_once(bounded: DetectorClient) -> None:
    model = await hold_backend(bounded)
    before = refused()
    accepted = await fill(bounded, lambda: bounded.stub.Detect(pb.DetectRequest(image=IMAGE)))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bounded.stub.Detect(pb.DetectRequest(image=IMAGE))
    assert caught.value.code() is BUSY
    assert "DETECTOR_MAX_QUEUED_BATCHES" in (caught.value.details() or "")  # the cap binds here
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bounded.stub.DetectBatch(pb.DetectBatchRequest(images=[IMAGE]))
    assert caught.value.code() is BUSY
    # Refused while the admitted frames still wait: the answer did not wait for the queue to move.
    assert not any(call.done() for call in accepted)
    assert refused() == before + 2
    assert model.admission.held == BOUND  # refused frames took nothing

    model.batcher.release()
    for answer in await asyncio.gather(*accepted):  # nothing admitted is lost
        assert isinstance(answer, pb.DetectResponse)
        assert answer.detections.boxes
    assert model.admission.held == 0
    # Idle again: a DetectBatch larger than the bound is taken whole (an idle model never refuses).
    batch = await bounded.stub.DetectBatch(pb.DetectBatchRequest(images=[IMAGE] * (BOUND + 1)))
    assert [bool(r.detections.boxes) for r in batch.results] == [True] * (BOUND + 1)


async def test_a_stream_answers_a_refused_frame_and_goes_on(bounded: DetectorClient) -> None:
    model = await hold_backend(bounded)
    before = refused()
    outgoing: asyncio.Queue[pb.DetectStreamRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
        while (request := await outgoing.get()) is not None:
            yield request

    call = bounded.stub.DetectStream(requests())
    for frame_id in range(BOUND + 2):  # two more than the model holds
        outgoing.put_nowait(pb.DetectStreamRequest(frame_id=frame_id, image=IMAGE))
    await until(lambda: refused() == before + 2, "the two frames beyond the bound refused")
    assert model.admission.held == BOUND  # the first ones wait for the backend
    model.batcher.release()
    answers = [await call.read() for _ in range(BOUND + 2)]  # in request order
    outgoing.put_nowait(pb.DetectStreamRequest(frame_id=99, image=IMAGE))  # the stream is still open
    later = await call.read()
    outgoing.put_nowait(None)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() is grpc.StatusCode.OK

    assert [a.frame_id for a in answers] == list(range(BOUND + 2))
    assert [a.error_code for a in answers] == [0] * BOUND + [BUSY.value[0]] * 2
    assert all(a.result.detections.boxes for a in answers[:BOUND])  # nothing admitted is lost
    assert "busy" in answers[-1].error_message
    assert later.frame_id == 99
    assert later.error_code == 0
    assert later.result.detections.boxes


# --- the robot client -----------------------------------------------------------------------------


async def test_frame_stream_drops_refused_frames_without_reconnecting(bounded: DetectorClient) -> None:
    model = await hold_backend(bounded)
    stream = await FrameStream(target(bounded), window=BOUND + 2, max_queued=BOUND + 2).start()
    for _ in range(BOUND + 2):
        stream.submit(RED)
    await until(lambda: stream.stats.sent == BOUND + 2 and model.admission.held == BOUND, "frames sent")
    model.batcher.release()
    results: list[FrameResult] = []
    async for result in stream:
        results.append(result)
        if len(results) == BOUND:
            break
    await until(lambda: stream.in_flight == 0, "every frame answered")
    stream.submit(RED)  # still streaming on the same call
    async for result in stream:
        results.append(result)
        break
    await stream.close()

    assert [r.frame_id for r in results] == [0, 1, BOUND + 2]  # the refused frames are not delivered ...
    assert all(r.ok and r.response is not None and r.response.detections.boxes for r in results)
    stats = stream.stats
    assert stats.busy == 2  # ... only counted
    assert (stats.failed, stats.lost, stats.reconnects, stats.last_error) == (0, 0, 0, "")
    assert stats.answered + stats.busy == stats.submitted


async def test_sync_frame_stream_counts_refused_frames(bounded: DetectorClient) -> None:
    model = await hold_backend(bounded)
    before = refused()
    config = ChannelConfig(target=target(bounded))
    stream = await asyncio.to_thread(SyncFrameStream, config, window=BOUND + 1, max_queued=BOUND + 1)
    try:
        for _ in range(BOUND + 1):
            stream.submit(RED)
        await until(lambda: refused() == before + 1, "the frame beyond the bound refused")
        model.batcher.release()
        first = await asyncio.to_thread(stream.get, 15)
        second = await asyncio.to_thread(stream.get, 15)
        await until(lambda: stream.stats.busy == 1, "the refusal counted")
    finally:
        await asyncio.to_thread(stream.close)
    assert [r.frame_id for r in (first, second) if r is not None] == [0, 1]
    assert (stream.stats.busy, stream.stats.failed, stream.stats.reconnects) == (1, 0, 0)


async def test_the_unary_client_does_not_retry_a_refusal(bounded: DetectorClient) -> None:
    model = await hold_backend(bounded)
    accepted = await fill(bounded, lambda: bounded.stub.Detect(pb.DetectRequest(image=IMAGE)))
    before = refused()

    def detect() -> grpc.StatusCode:
        # The default RetryPolicy retries UNAVAILABLE only: a "busy" is the answer, not asked again.
        with RobotClient(target(bounded), timeout=15) as client:
            try:
                client.detect(RED)
            except grpc.RpcError as error:
                return error.code()  # type: ignore[attr-defined,no-any-return]
            return grpc.StatusCode.OK

    assert await asyncio.to_thread(detect) is BUSY
    assert refused() == before + 1  # one attempt reached the detector
    model.batcher.release()
    await asyncio.gather(*accepted)


# --- the bound itself -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(admission: Admission, clock: Clock, frames: int, seconds: float) -> None:
    """``frames`` admitted together and answered ``seconds`` later."""
    admission.admit(frames)
    clock.now += seconds
    admission.release(frames)


def test_the_bound_is_what_the_model_gets_through_in_the_budget() -> None:
    clock = Clock()
    admission = Admission("bound-test", budget=0.5, max_frames=64, clock=clock)
    assert admission.limit == 64  # not measured yet: the cap alone
    for _ in range(8):  # one frame at a time, 125 ms each
        answer(admission, clock, 1, 0.125)
    assert admission.frame_seconds == 0.125
    assert admission.limit == 1 + 4  # 500 ms of frames ahead of a new one, and the new one

    for _ in range(10):  # under load: 8 frames per 125 ms, the throughput a batch brings
        answer(admission, clock, 8, 0.125)
    assert admission.frame_seconds is not None
    assert admission.frame_seconds < 0.125 / 4
    assert admission.limit > 16
    for _ in range(10):
        answer(admission, clock, 8, 0.0001)
    assert admission.limit == 64  # faster than the budget can use: the cap holds

    admission.admit(1)  # a hung backend: a second busy with nothing answered
    clock.now += 1.0
    admission.release(1, answered=False)
    assert admission.limit < 64


def test_a_full_model_refuses_and_an_idle_one_takes_any_request() -> None:
    clock = Clock()
    admission = Admission("refusal-test", budget=0.5, max_frames=3, clock=clock)
    before = refused("refusal-test")
    admission.admit(5)  # idle: taken whole, though larger than the bound
    with pytest.raises(ResourceExhausted, match="busy"):
        admission.admit(1)
    admission.release(5)
    admission.admit(2)
    admission.admit(1)
    with pytest.raises(ResourceExhausted):
        admission.admit(1)
    assert admission.held == 3
    assert refused("refusal-test") == before + 2


# --- a burst next to an overload -----------------------------------------------------------------


def overloaded(model: str) -> float | None:
    return REGISTRY.get_sample_value("visionloop_detector_admission_overloaded", {"model": model})


def measured(model: str, clock: Clock) -> Admission:
    """A model measured at 10 ms per frame, whose budget admits 6 frames (1 + 55 ms / 10 ms) and its
    target 3 (1 + 25 ms / 10 ms)."""
    admission = Admission(model, budget=0.055, max_frames=64, target=0.025, interval=0.1, clock=clock)
    for _ in range(8):
        answer(admission, clock, 1, 0.01)
    assert admission.frame_seconds == pytest.approx(0.01)
    return admission


def test_a_burst_at_light_load_is_admitted_up_to_the_budget() -> None:
    clock = Clock()
    admission = measured("burst-test", clock)
    for _ in range(10):  # bursts of 6 frames, each drained within the interval
        for _ in range(6):
            admission.admit(1)
        with pytest.raises(ResourceExhausted, match="DETECTOR_QUEUE_BUDGET_MS"):
            admission.admit(1)
        clock.now += 0.06
        admission.release(6)
        clock.now += 0.01  # idle a moment between bursts
    assert not admission.overloaded
    assert overloaded("burst-test") == 0


def test_a_model_busy_without_a_break_for_the_interval_admits_only_the_target() -> None:
    clock = Clock()
    admission = measured("overload-test", clock)
    before = refused("overload-test")
    for _ in range(6):
        admission.admit(1)
    for _ in range(9):  # answered one at a time, each replaced at once: never empty
        clock.now += 0.01
        admission.release(1)
        admission.admit(1)  # 90 ms in: still a burst, 6 frames are within the budget
    assert not admission.overloaded
    clock.now += 0.01
    admission.release(1)  # 100 ms without a break
    assert admission.overloaded
    assert admission.limit == 3
    assert overloaded("overload-test") == 1
    with pytest.raises(ResourceExhausted, match="DETECTOR_QUEUE_TARGET_MS") as caught:
        admission.admit(1)  # 5 held: over the target's 3, though within the budget's 6
    assert "DETECTOR_QUEUE_INTERVAL_MS" in str(caught.value)
    admission.release(3)
    admission.admit(1)  # 2 held: a third fits the target
    with pytest.raises(ResourceExhausted):
        admission.admit(1)
    assert refused("overload-test") == before + 2
    assert admission.held == 3


def test_an_overload_ends_when_the_model_drains_and_refuses_nothing_for_an_interval() -> None:
    clock = Clock()
    admission = measured("drain-test", clock)
    admission.admit(2)
    clock.now += 0.2  # one long call: overloaded while it lasts
    assert overloaded("drain-test") == 1
    admission.release(2, answered=False)  # drained, nothing refused: over (failed: the measurement stays)
    assert not admission.overloaded

    admission.admit(3)
    clock.now += 0.2
    with pytest.raises(ResourceExhausted, match="DETECTOR_QUEUE_TARGET_MS"):
        admission.admit(1)
    admission.release(3, answered=False)  # empty a moment between two batches, a frame just refused: no relief
    assert admission.overloaded
    admission.admit(3)  # though an idle model takes any one request
    with pytest.raises(ResourceExhausted, match="DETECTOR_QUEUE_TARGET_MS"):
        admission.admit(1)
    clock.now += 0.05
    admission.release(3, answered=False)
    assert admission.overloaded
    clock.now += 0.06  # drained, and nothing refused for 110 ms: back to absorbing bursts
    assert not admission.overloaded
    assert overloaded("drain-test") == 0
    assert admission.limit == 6
    for _ in range(6):
        admission.admit(1)
    clock.now += 0.09  # busy again, but not for a whole interval yet
    with pytest.raises(ResourceExhausted, match="DETECTOR_QUEUE_BUDGET_MS"):
        admission.admit(1)
    clock.now += 0.02
    assert admission.overloaded


def test_a_target_at_the_budget_is_one_mode() -> None:
    assert Admission("half-test", budget=0.05, max_frames=64).target == 0.025  # unset: half the budget
    clock = Clock()
    admission = Admission("one-mode-test", budget=0.05, max_frames=64, target=0.5, clock=clock)
    assert admission.target == admission.budget  # never more than the budget
    admission.admit(1)
    clock.now += 1.0
    assert admission.overloaded
    assert admission.limit == 64
