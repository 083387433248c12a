"""Stopping background tasks for sure, and letting a write outlive its cancelled caller.

A cancellation can get lost in grpc.aio: when it lands just after the call's status arrived but
before the call's own task ran, the caller gets that status (say NOT_FOUND) as an ``AioRpcError``
instead of ``CancelledError``. A loop that treats the error as "retry later" then runs on forever
and its service never stops. Loops check ``raise_if_cancelling`` where they swallow errors, and
``cancel_and_wait`` cancels again until the task has really ended.

``settled`` is the other way round: work that goes on without its caller (a group commit, a
write in a thread) is waited for even when the caller is cancelled, so whatever the caller holds
(a lock, a blob it may have to clean up) lasts until the work's outcome is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from visionloop.runtime.logging import get_logger

log = get_logger(__name__)

RECANCEL_S = 2.0  # long enough for a cancelled task to finish its cleanup (closing a channel)
T = TypeVar("T")


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if someone asked the current task to stop (call it where errors are swallowed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object] | None], within: float | None = None) -> bool:
    """Cancel ``tasks`` and wait until each has ended, cancelling again every ``RECANCEL_S`` any that
    swallowed it; True when all ended, False if ``within`` seconds ran out first. A task that had
    already died of an exception is logged with it: a stop never fails."""
    started = [task for task in tasks if task is not None]
    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    pending = {task for task in started if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        wait = RECANCEL_S if deadline is None else min(RECANCEL_S, deadline - loop.time())
        if wait <= 0:
            return False
        _, pending = await asyncio.wait(pending, timeout=wait)
    for task in started:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task had failed", task=task.get_name(), exc_info=error)
    return True


async def settled(work: Awaitable[T]) -> T:
    """``work``'s result; if the caller is cancelled meanwhile, ``work`` is not, and the caller's
    ``CancelledError`` comes only once ``work`` has ended."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
