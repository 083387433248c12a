"""A call that loses its first cancellation, as grpc.aio now and then does."""

from __future__ import annotations

import asyncio


async def answer_swallowing_cancel(swallowed: list[int]) -> str:
    """What grpc.aio does once in a while, when a cancel lands just after the call's status
    arrived: the status wins (here the first cancel only, as that race is rare)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        if swallowed:
            raise
        swallowed.append(1)
        return "NOT_FOUND"
    return "OK"
