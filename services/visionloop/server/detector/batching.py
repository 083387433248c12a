"""Server-side micro-batching: concurrent requests for one model become one backend call.

A request waits at most ``max_wait`` for company; while a batch runs, the next one fills up,
so under load batches grow on their own and throughput grows with the number of cameras.
Only tensors of one shape share a batch: a model of any input size (a dynamic-shape export) gets
frames letterboxed to their own rectangles, and a frame of another shape waits for the next
batch, ahead of later arrivals. Each request brings a ``finish`` (its post-processing); a batch's
finishes run one after the other in one worker thread once its backend call returned, rather than
one thread hop per frame with a dozen threads contending for the interpreter lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from prometheus_client import Histogram

BATCH_SIZE = Histogram(
    "visionloop_detector_batch_size",
    "Images per backend call.",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)

Run = Callable[[list[np.ndarray]], Awaitable[list[np.ndarray]]]  # per-frame tensors -> batched outputs
T = TypeVar("T")


@dataclass(frozen=True)
class Batched(Generic[T]):
    """One request's result and where its time went."""

    value: T
    queue_seconds: float  # submitted until its batch started
    infer_seconds: float  # the batch's backend call
    finish_seconds: float  # this request's own finish


@dataclass
class _Request:
    tensor: np.ndarray
    finish: Callable[[list[np.ndarray]], Any]
    future: asyncio.Future[Batched[Any]]
    queued: float = field(default_factory=time.perf_counter)


def _finish_all(
    requests: Sequence[tuple[int, _Request]], outputs: list[np.ndarray]
) -> list[tuple[BaseException | None, Any, float]]:
    """Each request's finish on its slice of the batch's outputs (blocking): (error, value, seconds)."""
    done: list[tuple[BaseException | None, Any, float]] = []
    for index, request in requests:
        started = time.perf_counter()
        try:
            value = request.finish([output[index] for output in outputs])
        except Exception as error:  # one frame's failure is that request's alone
            done.append((error, None, time.perf_counter() - started))
        else:
            done.append((None, value, time.perf_counter() - started))
    return done


class MicroBatcher:
    def __init__(self, name: str, run: Run, max_batch: int, max_wait: float = 0.002, max_in_flight: int = 1) -> None:
        self.name = name
        self._run = run
        self.max_batch = max(1, max_batch)
        self.max_wait = max_wait
        # Batches running at once: one for an in-process backend (it uses every core already),
        # a few for a remote one, whose round trip would otherwise leave it idle.
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._running: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._deferred: deque[_Request] = deque()  # taken from the queue, of another shape than their batch
        self._worker: asyncio.Task[None] | None = None
        self._submitting = 0  # requests between submit() and the queue: company is on its way

    async def submit(self, tensor: np.ndarray, finish: Callable[[list[np.ndarray]], T]) -> Batched[T]:
        """Run one CHW tensor (no batch dimension) in the next batch, then ``finish`` (blocking, in a
        worker thread) on its outputs; its exception, if it raises, is this request's alone."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self.name}")
        future: asyncio.Future[Batched[T]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(tensor, finish, future))
        return await future

    async def claim_idle(self) -> bool:
        """Hold a free slot for a lone request, which then runs decode, inference and post-processing
        in one worker thread instead of hopping through the queue; False when others are queued or
        on their way (they batch better together). Release with ``release``."""
        if not self._queue.empty() or self._deferred or self._submitting or self._slots.locked():
            return False
        await self._slots.acquire()  # free, so this returns at once: nothing can slip in between
        BATCH_SIZE.labels(self.name).observe(1)
        return True

    def release(self) -> None:
        self._slots.release()

    def note_arrival(self) -> None:
        """A request is on its way (decoding); a batch about to run may wait for it."""
        self._submitting += 1

    def note_departure(self) -> None:
        self._submitting = max(0, self._submitting - 1)

    async def _collect(self) -> list[_Request]:
        batch = [self._deferred.popleft() if self._deferred else await self._queue.get()]
        shape = batch[0].tensor.shape
        others: deque[_Request] = deque()
        while self._deferred:  # earlier arrivals first, those of this shape into this batch
            request = self._deferred.popleft()
            (batch if request.tensor.shape == shape and len(batch) < self.max_batch else others).append(request)
        self._deferred = others

        def take(request: _Request) -> None:
            (batch if request.tensor.shape == shape else self._deferred).append(request)

        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                take(self._queue.get_nowait())
                continue
            if self._submitting == 0:  # nobody else is coming: a lone request never waits
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                take(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [request for request in batch if not request.future.cancelled()]

    async def _work(self) -> None:
        while True:
            await self._slots.acquire()  # collect only once a batch can run: meanwhile the next one fills up
            batch = await self._collect()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Request]) -> None:
        try:
            started = time.perf_counter()
            BATCH_SIZE.labels(self.name).observe(len(batch))
            try:
                outputs = await self._run([request.tensor for request in batch])
            finally:
                self._slots.release()  # the next batch may run while this one is finished
            inferred = time.perf_counter()
            pending = [(index, request) for index, request in enumerate(batch) if not request.future.done()]
            finished = await asyncio.to_thread(_finish_all, pending, outputs)
            for (_, request), (error, value, seconds) in zip(pending, finished, strict=True):
                if request.future.done():
                    continue
                if error is not None:
                    request.future.set_exception(error)
                else:
                    queued = started - request.queued
                    request.future.set_result(Batched(value, queued, inferred - started, seconds))
        except Exception as error:  # the backend call failed: every request of the batch learns why
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
        finally:  # cancelled (closing): no request may wait forever
            for request in batch:
                if not request.future.done():
                    request.future.cancel()

    async def close(self) -> None:
        for request in self._deferred:
            request.future.cancel()
        self._deferred.clear()
        for task in list(self._running):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
