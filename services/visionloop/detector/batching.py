"""Server-side micro-batching: concurrent requests for one model become one backend call.

A request waits at most ``max_wait`` for company; while a batch runs, the next one fills up,
so under load batches grow on their own and throughput grows with the number of cameras.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import numpy as np
from prometheus_client import Histogram

BATCH_SIZE = Histogram(
    "visionloop_detector_batch_size",
    "Images per backend call.",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)

Run = Callable[[list[np.ndarray]], Awaitable[list[np.ndarray]]]  # per-frame tensors -> batched outputs


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
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[list[np.ndarray]]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._submitting = 0  # requests between submit() and the queue: company is on its way

    async def submit(self, tensor: np.ndarray) -> tuple[list[np.ndarray], float]:
        """Outputs for one CHW tensor (batch dimension removed) and the seconds it waited to be run."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self.name}")
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        queued = time.perf_counter()
        self._queue.put_nowait((tensor, future))
        outputs = await future
        return outputs, getattr(future, "started", queued) - queued

    async def claim_idle(self) -> bool:
        """Hold a free slot for a lone request, which then runs decode, inference and post-processing
        in one worker thread instead of hopping through the queue; False when others are queued or
        on their way (they batch better together). Release with ``release``."""
        if not self._queue.empty() or self._submitting or self._slots.locked():
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

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future[list[np.ndarray]]]]:
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            if self._submitting == 0:  # nobody else is coming: a lone request never waits
                break
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [(tensor, future) for tensor, future in batch if not future.cancelled()]

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

    async def _execute(self, batch: list[tuple[np.ndarray, asyncio.Future[list[np.ndarray]]]]) -> None:
        try:
            started = time.perf_counter()
            for _, future in batch:
                future.started = started  # type: ignore[attr-defined]
            BATCH_SIZE.labels(self.name).observe(len(batch))
            try:
                outputs = await self._run([tensor for tensor, _ in batch])
            except Exception as error:  # every request of the batch learns what went wrong
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                return
            for index, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result([output[index] for output in outputs])
        finally:
            self._slots.release()

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
