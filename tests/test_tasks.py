"""runtime.tasks: background loops stop even when a cancellation gets lost on its way (as grpc.aio can lose it)."""

from __future__ import annotations

import asyncio

import pytest

from tests.cancellation import answer_swallowing_cancel
from visionloop.runtime import tasks
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling, settled


async def retry_loop(swallowed: list[int], rounds: list[int], check: bool) -> None:
    while True:
        rounds.append(1)
        if check:
            raise_if_cancelling()
        await answer_swallowing_cancel(swallowed)  # "nothing pending": wait a little and ask again
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def quick_recancel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_S", 0.05)


async def test_a_plain_cancel_is_lost_in_a_loop_that_swallows_it() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(retry_loop(swallowed, [], check=False))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    assert swallowed == [1]
    assert await cancel_and_wait([task])
    assert task.cancelled()


async def test_cancel_and_wait_cancels_again_until_the_task_ends() -> None:
    swallowed: list[int] = []
    task = asyncio.create_task(retry_loop(swallowed, [], check=False))
    await asyncio.sleep(0.01)
    assert await cancel_and_wait([task, None])
    assert task.cancelled()
    assert len(swallowed) == 1


async def test_raise_if_cancelling_ends_the_loop_at_its_next_round() -> None:
    swallowed: list[int] = []
    rounds: list[int] = []
    task = asyncio.create_task(retry_loop(swallowed, rounds, check=True))
    await asyncio.sleep(0.01)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done
    assert task.cancelled()
    assert swallowed == [1]
    assert len(rounds) == 2


async def test_raise_if_cancelling_is_quiet_when_no_one_asked() -> None:
    raise_if_cancelling()  # the test's own task: not cancelling
    assert await asyncio.create_task(asyncio.to_thread(lambda: 1)) == 1


async def test_a_task_that_never_ends_is_given_up_after_the_limit() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await cancel_and_wait([task], within=0.2)
    assert not task.done()
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.done()


async def test_a_task_that_had_failed_is_logged_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    async def broken() -> None:
        raise OSError("disk gone")

    task = asyncio.create_task(broken(), name="uploader")
    await asyncio.wait({task})
    assert await cancel_and_wait([task])
    err = capsys.readouterr()
    assert "background task had failed" in err.out + err.err
    assert "disk gone" in err.out + err.err


async def test_settled_outlives_its_cancelled_caller() -> None:
    """Cancelling the caller neither cancels the work nor returns before the work has ended."""
    ended = asyncio.Event()

    async def write() -> str:
        await asyncio.sleep(0.3)
        ended.set()
        return "row"

    assert await settled(write()) == "row"
    ended.clear()
    caller = asyncio.ensure_future(settled(write()))
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended.is_set()
