"""The micro-batcher on its own: one backend call per batch, each request finished on its own slice."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from visionloop.server.detector.batching import MicroBatcher


def frames(count: int) -> list[np.ndarray]:
    return [np.full((3, 2, 2), index, np.float32) for index in range(count)]


async def test_concurrent_requests_share_one_call_and_are_finished_in_one_worker_thread() -> None:
    calls: list[int] = []
    threads: list[int] = []

    async def run(tensors: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(tensors))
        batch = np.stack(tensors)
        return [batch * 2, batch.sum(axis=(1, 2, 3))]

    def finish(outputs: list[np.ndarray]) -> tuple[float, float]:
        threads.append(threading.get_ident())
        return float(outputs[0][0, 0, 0]), float(outputs[1])

    batcher = MicroBatcher("m", run, max_batch=8)
    done = await asyncio.gather(*(batcher.submit(tensor, finish) for tensor in frames(5)))
    await batcher.close()

    assert calls == [5]
    assert [d.value for d in done] == [(2.0 * i, 12.0 * i) for i in range(5)]  # each its own slice, in order
    assert len(set(threads)) == 1  # one hop for the whole batch ...
    assert threads[0] != threading.get_ident()  # ... off the event loop
    assert all(d.infer_seconds >= 0 and d.queue_seconds >= 0 and d.finish_seconds >= 0 for d in done)


async def test_a_failing_finish_fails_only_its_request() -> None:
    async def run(tensors: list[np.ndarray]) -> list[np.ndarray]:
        return [np.stack(tensors)]

    def finish(outputs: list[np.ndarray]) -> float:
        value = float(outputs[0][0, 0, 0])
        if value == 2:
            raise ValueError("frame 2 has a bad output")
        return value

    batcher = MicroBatcher("m", run, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(t, finish) for t in frames(4)), return_exceptions=True)
    await batcher.close()
    assert [type(r) if isinstance(r, Exception) else r.value for r in results] == [0.0, 1.0, ValueError, 3.0]


async def test_a_failing_backend_call_fails_every_request_of_the_batch_and_the_next_batch_runs() -> None:
    failing = True

    async def run(tensors: list[np.ndarray]) -> list[np.ndarray]:
        if failing:
            raise RuntimeError("backend down")
        return [np.stack(tensors)]

    batcher = MicroBatcher("m", run, max_batch=8)
    results = await asyncio.gather(*(batcher.submit(t, len) for t in frames(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    failing = False
    assert (await batcher.submit(frames(1)[0], len)).value == 1  # the slot came back
    await batcher.close()


async def test_closing_while_a_batch_runs_cancels_its_requests_instead_of_leaving_them_waiting() -> None:
    started = asyncio.Event()

    async def run(tensors: list[np.ndarray]) -> list[np.ndarray]:
        started.set()
        await asyncio.sleep(60)
        return [np.stack(tensors)]

    batcher = MicroBatcher("m", run, max_batch=8)
    request = asyncio.ensure_future(batcher.submit(frames(1)[0], len))
    await asyncio.wait_for(started.wait(), 5)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, 5)
