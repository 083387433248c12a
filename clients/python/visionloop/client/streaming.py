"""Camera-rate detection over ``DetectStream`` that never blocks the capture loop.

A camera produces frames whether or not the link keeps up. ``FrameStream`` takes each frame with
``submit`` (non-blocking, from any thread), keeps at most ``max_queued`` unsent frames (dropping the
oldest, or refusing the newest) and at most ``window`` frames in flight, and hands back answers in
frame order through ``async for`` or a callback. When the stream breaks (UNAVAILABLE, a detector
restart...) the frames in flight are reported lost, and it reconnects with capped, jittered
exponential backoff and goes on with the newest frames. A frame the detector refuses because it
is busy (RESOURCE_EXHAUSTED: it holds a latency budget's worth of frames already) is dropped like
one that never left the queue: counted in ``stats.busy``, not delivered, and the stream goes on.
Memory stays bounded however slow the network, the detector or the consumer is: a slow consumer
fills the window, and then unsent frames are dropped and counted.

``SyncFrameStream`` runs a ``FrameStream`` on a background thread with its own event loop for
robot code without asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc

from visionloop.client.channel import ChannelConfig, create_aio_channel
from visionloop.client.detector import Frame, detect_options, robot_channel_config
from visionloop.client.images import PixelOrder, to_image
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}

# Codes after which the stream is opened again; anything else (UNAUTHENTICATED, INVALID_ARGUMENT,
# UNIMPLEMENTED...) will not heal by retrying and ends the stream with that error.
RECONNECT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,  # a detector shutting down cancels its open streams
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass(frozen=True)
class Backoff:
    """Wait before reconnect ``n`` (from 0): ``min(initial * multiplier**n, maximum)``, +/- ``jitter``."""

    initial: float = 0.2
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # spreads robots that lost the same detector over time

    def delay(self, attempt: int) -> float:
        base = min(self.initial * self.multiplier**attempt, self.maximum)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True)
class FrameResult:
    """The outcome of one sent frame: a ``response``, or an error ``code`` and ``message``."""

    frame_id: int
    response: pb.DetectResponse | None
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""
    latency: float = 0.0  # seconds from submit to answer
    lost: bool = False  # the stream broke before the answer came

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK


@dataclass
class StreamStats:
    """Counters since the stream was created; every submitted frame ends in exactly one of
    answered, failed, busy, lost or dropped (or is still queued or in flight)."""

    submitted: int = 0
    sent: int = 0
    answered: int = 0  # results with detections
    failed: int = 0  # the detector answered with an error for the frame (e.g. does not decode)
    busy: int = 0  # the detector was busy and refused the frame at once (RESOURCE_EXHAUSTED); not delivered
    lost: int = 0  # in flight when the stream broke
    dropped: int = 0  # never sent: the queue was full, or the stream closed without draining
    reconnects: int = 0
    last_error: str = ""


ResultCallback = Callable[[FrameResult], "Awaitable[None] | None"]


@dataclass
class _Queued:
    frame_id: int
    image: image_pb2.Image
    submitted: float = field(default_factory=time.monotonic)


class FrameStream:
    """Streams camera frames to a detector at camera rate (asyncio).

    ``channel``: a ``grpc.aio.Channel`` (shared, not closed here), a ``ChannelConfig`` or a
    ``host:port`` (a channel of its own). ``window``: frames sent but not yet answered.
    ``max_queued``: frames submitted but not yet sent; when full, ``drop_oldest`` drops the oldest
    queued frame for the new one, otherwise the new frame is refused. ``on_result`` (sync or async)
    receives every result instead of ``async for``; frames a busy detector refused are only counted
    (``stats.busy``). Other keyword arguments are ``detect_options`` (``camera_id``, ``model``,
    ``score_threshold``...).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel | ChannelConfig | str,
        *,
        window: int = 4,
        max_queued: int = 2,
        drop_oldest: bool = True,
        on_result: ResultCallback | None = None,
        backoff: Backoff = Backoff(),
        reconnect_codes: frozenset[grpc.StatusCode] = RECONNECT_CODES,
        pixel_order: PixelOrder = "bgr",
        **options: Any,
    ) -> None:
        if window < 1 or max_queued < 1:
            raise ValueError("window and max_queued must be at least 1")
        self._channel_source = channel
        self._channel: grpc.aio.Channel | None = None
        self._owns_channel = not isinstance(channel, grpc.aio.Channel)
        self.window = window
        self.max_queued = max_queued
        self.drop_oldest = drop_oldest
        self.backoff = backoff
        self.reconnect_codes = reconnect_codes
        self.pixel_order = pixel_order
        self.options = detect_options(**options)
        self.stats = StreamStats()
        self._on_result = on_result
        self._ids = itertools.count()
        # submit() may run on any thread: the queue and the counters it touches are under a lock.
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        self._inflight: dict[int, float] = {}  # frame id -> submit time, in send order
        self._results: asyncio.Queue[FrameResult | None] = asyncio.Queue()
        self._room: asyncio.Semaphore | None = None  # bounds undelivered results to ``window``
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._runner: asyncio.Task[None] | None = None
        self._generation = 0  # which DetectStream call is current; older request iterators stop
        self._closing = False
        self._drain = True
        self._finished = False
        self._closed = False
        self._error: grpc.RpcError | None = None

    # --- life cycle -------------------------------------------------------------------------------

    async def start(self) -> FrameStream:
        if self._runner is not None:
            return self
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._room = asyncio.Semaphore(self.window)
        source = self._channel_source
        if isinstance(source, grpc.aio.Channel):
            self._channel = source
        else:
            config = source if isinstance(source, ChannelConfig) else robot_channel_config(source)
            self._channel = create_aio_channel(config)
        self._runner = self._loop.create_task(self._run(pb_grpc.DetectorServiceStub(self._channel)))
        return self

    async def close(self, *, drain: bool = True, drain_timeout: float = 5.0) -> None:
        """Stop. ``drain``: send what is queued and wait up to ``drain_timeout`` for the answers first."""
        if self._closed:
            return
        self._closed = True
        self._closing, self._drain = True, drain
        self._notify()
        if self._runner is not None:
            if drain:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._runner), drain_timeout)
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._finish()
        if self._owns_channel and self._channel is not None:
            await self._channel.close()

    def _finish(self) -> None:
        """Account for what never got an answer and end ``async for``."""
        if self._finished:
            return
        self._finished = True
        with self._lock:
            self.stats.dropped += len(self._queue)
            self._queue.clear()
        self.stats.lost += len(self._inflight)
        self._inflight.clear()
        self._results.put_nowait(None)

    async def __aenter__(self) -> FrameStream:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(drain=exc_type is None)

    # --- the robot's side ---------------------------------------------------------------------------

    def submit(self, frame: Frame, *, pixel_order: PixelOrder | None = None) -> int | None:
        """Queue a frame (copied: the caller may reuse its buffer); return its frame id.

        Never blocks. Returns None when the frame was refused (queue full and not ``drop_oldest``).
        Raises the stream's error once it failed for good, ``RuntimeError`` when closed.
        """
        if self._error is not None:
            raise self._error
        if self._closing or self._runner is None:
            raise RuntimeError("the frame stream is not running (start it, or use 'async with')")
        image = to_image(frame, pixel_order or self.pixel_order)
        with self._lock:
            frame_id = next(self._ids)
            self.stats.submitted += 1
            if len(self._queue) >= self.max_queued:
                self.stats.dropped += 1
                if not self.drop_oldest:
                    return None
                self._queue.popleft()
            self._queue.append(_Queued(frame_id, image))
        self._notify()
        return frame_id

    def __aiter__(self) -> FrameStream:
        return self

    async def __anext__(self) -> FrameResult:
        result = await self._results.get()
        if result is None:
            self._results.put_nowait(None)  # later iterations end too
            if self._error is not None:
                raise self._error
            raise StopAsyncIteration
        assert self._room is not None
        self._room.release()
        return result

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # --- the stream ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        if self._loop is None or self._wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._wake.set)

    async def _next_frame(self) -> _Queued | None:
        """The oldest queued frame once the window has room; None when closing is done sending."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            with self._lock:
                if self._closing and (not self._drain or not self._queue):
                    return None
                if self._queue and len(self._inflight) < self.window:
                    return self._queue.popleft()
            await self._wake.wait()

    async def _requests(self, generation: int) -> Any:
        first = True
        while (item := await self._next_frame()) is not None:
            if generation != self._generation:
                # The call this iterator fed has ended: leave the frame to the next one.
                with self._lock:
                    self._queue.appendleft(item)
                return
            # In flight from here: if the stream breaks before the answer, the frame counts as lost.
            self._inflight[item.frame_id] = item.submitted
            self.stats.sent += 1
            # Each new stream starts with the options; the detector keeps them for later frames.
            yield pb.DetectStreamRequest(
                frame_id=item.frame_id, image=item.image, options=self.options if first else None
            )
            first = False

    async def _deliver(self, result: FrameResult) -> None:
        if self._on_result is not None:
            try:
                outcome = self._on_result(result)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # a faulty callback must not end the stream
                log.exception("on_result failed", extra={"frame_id": result.frame_id})
            return
        assert self._room is not None
        await self._room.acquire()  # a consumer that does not keep up stops the reading here
        self._results.put_nowait(result)

    async def _answer(self, response: pb.DetectStreamResponse) -> None:
        submitted = self._inflight.get(response.frame_id)
        latency = time.monotonic() - submitted if submitted is not None else 0.0
        if response.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]:
            # A busy detector's fast "no": the frame is dropped, the next one will be fresher anyway.
            self.stats.busy += 1
            self._inflight.pop(response.frame_id, None)
            if self._wake is not None:
                self._wake.set()
            return
        if response.error_code:
            self.stats.failed += 1
            code = _CODES.get(response.error_code, grpc.StatusCode.UNKNOWN)
            result = FrameResult(response.frame_id, None, code, response.error_message, latency)
        else:
            self.stats.answered += 1
            result = FrameResult(response.frame_id, response.result, latency=latency)
        await self._deliver(result)
        # The frame leaves the window only once delivered, so a slow consumer holds the sender back.
        self._inflight.pop(response.frame_id, None)
        if self._wake is not None:
            self._wake.set()

    async def _lose_inflight(self, code: grpc.StatusCode, message: str) -> None:
        lost = list(self._inflight.items())
        self._inflight.clear()
        self.stats.lost += len(lost)
        now = time.monotonic()
        for frame_id, submitted in lost:
            await self._deliver(FrameResult(frame_id, None, code, message, now - submitted, lost=True))

    async def _run(self, stub: pb_grpc.DetectorServiceStub) -> None:
        attempt = 0
        try:
            while True:
                call = stub.DetectStream(self._requests(self._generation))
                code, message = grpc.StatusCode.UNAVAILABLE, "the detector ended the stream"
                try:
                    async for response in call:
                        attempt = 0  # the link works again: the next break starts the backoff afresh
                        await self._answer(response)
                    if self._closing:
                        return
                except grpc.aio.AioRpcError as error:
                    if self._closing and not self._drain:
                        return
                    if error.code() not in self.reconnect_codes:
                        self._error = error
                        self.stats.last_error = f"{error.code().name}: {error.details()}"
                        await self._lose_inflight(error.code(), error.details() or "")
                        return
                    code, message = error.code(), error.details() or ""
                finally:
                    call.cancel()
                    self._generation += 1  # its request iterator must not take more frames
                self.stats.last_error = f"{code.name}: {message}"
                await self._lose_inflight(code, f"stream broke before the answer: {message}")
                if self._closing:
                    return
                await self._sleep(self.backoff.delay(attempt))
                if self._closing:
                    return
                attempt += 1
                self.stats.reconnects += 1
        finally:
            self._finish()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or stop early when ``close`` is called."""
        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while not self._closing and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)


class SyncFrameStream:
    """``FrameStream`` for code without asyncio: a background thread runs its event loop.

    ``submit`` is non-blocking and thread-safe. Results come from iterating (blocks for the next
    one; ends after ``close``), ``get(timeout)``, or ``on_result``, which is then called on the
    background thread.
    """

    def __init__(
        self, channel: ChannelConfig | str, *, on_result: Callable[[FrameResult], None] | None = None, **kwargs: Any
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="visionloop-frame-stream", daemon=True)
        self._thread.start()
        self._stopped = False
        try:
            # The aio channel must be created on the loop that uses it.
            self._stream: FrameStream = self._wait(self._open(channel, on_result, kwargs))
        except BaseException:
            self._stop_loop()
            raise

    async def _open(
        self, channel: ChannelConfig | str, on_result: Callable[[FrameResult], None] | None, kwargs: dict[str, Any]
    ) -> FrameStream:
        return await FrameStream(channel, on_result=on_result, **kwargs).start()

    def _wait(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def stats(self) -> StreamStats:
        return self._stream.stats

    def submit(self, frame: Frame, *, pixel_order: PixelOrder | None = None) -> int | None:
        """As ``FrameStream.submit``."""
        return self._stream.submit(frame, pixel_order=pixel_order)

    async def _next(self) -> FrameResult | None:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return None

    def get(self, timeout: float | None = None) -> FrameResult | None:
        """The next result; None once the stream is closed. Raises ``TimeoutError`` after ``timeout``."""
        if self._stopped:
            return None
        future = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def __iter__(self) -> Iterator[FrameResult]:
        while (result := self.get()) is not None:
            yield result

    def close(self, *, drain: bool = True, drain_timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._wait(self._stream.close(drain=drain, drain_timeout=drain_timeout))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncFrameStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(drain=exc_type is None)
