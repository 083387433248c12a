"""The blob sweep: deletes image blobs that no image row references, once they are old enough.

An upload puts its blob before it commits its row and deletes the blob again if the row cannot
be written. A blob can still end up without a row: the hub dies between the put and the commit,
a client cancels its upload once the put has started (the put completes; nothing is cleaned up
after a cancellation, as the row may have committed), an import is interrupted, or, with several
hub replicas, an upload fails (see ``images.discard_blobs``). The sweep collects those.

It never races an upload of the same bytes in this hub: it deletes under the upload's per-hash
lock, after checking the rows again, and only a blob that has not been written again since
the grace period began (an upload refreshes it by putting it again). With several replicas the
database fences another replica's uploads as well (``blob_fence``).

The same round discards the writes a crash left unfinished, anywhere in the store, once older
than the grace period: partial files in the data folder, S3 multipart uploads (a model zip)
never completed nor aborted, whose parts S3 keeps, and bills, until someone aborts them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from visionloop.lib.storage import BlobNotFound
from visionloop.runtime.logging import get_logger
from visionloop.runtime.tasks import cancel_and_wait
from visionloop.server.hub import blob_fence
from visionloop.server.hub.images import image_key, referenced_hashes
from visionloop.server.hub.state import Hub

log = get_logger(__name__)

BATCH = 500  # keys listed, and looked up in the database, at a time
_SWEEP_LOCK = 7_004_244  # pg_advisory_lock key: one hub replica sweeps at a time
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

SWEPT = Counter("visionloop_hub_blobs_swept", "Image blobs without an image row that the sweep deleted.")
PARTIAL = Counter(
    "visionloop_hub_partial_writes_discarded",
    "Unfinished writes a crash left in the object store (partial files, S3 multipart uploads) the sweep removed.",
)


@dataclass(frozen=True)
class SweepResult:
    swept: bool  # False: another hub replica was sweeping
    listed: int = 0  # keys under images/ in the store
    deleted: int = 0
    partial: int = 0  # unfinished writes discarded
    seconds: float = 0.0


def _old_blobs(listing: Iterator[tuple[str, datetime]], cutoff: datetime) -> Iterator[tuple[str, str]]:
    """(sha256, key) of the image blobs last written before ``cutoff``; other keys are left alone."""
    for key, modified in listing:
        sha256 = key.rpartition("/")[2]
        if modified < cutoff and _SHA256.match(sha256) and key == image_key(sha256):
            yield sha256, key


async def sweep_images(hub: Hub, grace: timedelta) -> SweepResult:
    """Delete the image blobs that no row references and that nobody wrote during the last ``grace``,
    unless another hub replica is sweeping (each would list the whole store)."""
    async with hub.db.only_replica(_SWEEP_LOCK) as alone:
        return await _sweep(hub, grace) if alone else SweepResult(swept=False)


async def _sweep(hub: Hub, grace: timedelta) -> SweepResult:
    started = time.perf_counter()
    cutoff = hub.now() - grace
    listed = deleted = 0

    def counted(listing: Iterator[tuple[str, datetime]]) -> Iterator[tuple[str, datetime]]:
        nonlocal listed
        for item in listing:
            listed += 1
            yield item

    candidates = _old_blobs(counted(hub.store.list_keys("images/")), cutoff)
    while batch := await hub.in_blob_worker(lambda: list(itertools.islice(candidates, BATCH))):
        referenced = await hub.db.read(functools.partial(referenced_hashes, hashes=[sha for sha, _ in batch]))
        for sha256, key in batch:
            if sha256 not in referenced and await _delete_unreferenced(hub, sha256, key, cutoff):
                deleted += 1
                SWEPT.inc()
    if hub.fenced:
        await hub.db.write(lambda s: blob_fence.forget_old(s, hub.now()))
    partial = await hub.in_blob_worker(hub.store.discard_partial_writes, cutoff)
    PARTIAL.inc(partial)
    return SweepResult(True, listed, deleted, partial, time.perf_counter() - started)


async def _delete_unreferenced(hub: Hub, sha256: str, key: str, cutoff: datetime) -> bool:
    if hub.fenced:  # another replica's upload may be storing these bytes: the database fences it
        now = hub.now()
        async with hub.blob_locks.hold(sha256):
            hub.blob_deletions += 1  # this replica's uploads see it as they see delete_blob's
            return await hub.db.write(lambda s: blob_fence.delete_unreferenced(s, hub.store, sha256, key, cutoff, now))
    return await _delete_in_turn(hub, sha256, key, cutoff)


async def _delete_in_turn(hub: Hub, sha256: str, key: str, cutoff: datetime) -> bool:
    # An upload of these bytes in this hub holds the lock from just after its put to its commit:
    # wait for it, then look again; one whose put lands while this deletes puts again (see
    # images.store_image). A blob written since the listing belongs to an upload under way
    # (another replica's, too): keep it.
    async with hub.blob_locks.hold(sha256):
        if await hub.db.read(lambda s: referenced_hashes(s, [sha256])):
            return False
        try:
            if await hub.in_blob_worker(hub.store.last_modified, key) >= cutoff:
                return False
        except BlobNotFound:
            return False
        await hub.delete_blob(key)
        return True


class BlobSweeper:
    """Start/stop hooks for the hub's ServiceSpec: a sweep every ``blob_sweep_seconds`` (0: never)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._interval = hub.settings.blob_sweep_seconds
        self._grace = timedelta(seconds=hub.settings.blob_sweep_grace_seconds)
        self._task: asyncio.Task[None] | None = None

    async def start(self, _server: object) -> None:
        if self._interval > 0:
            self._task = asyncio.create_task(self._run(), name="hub-blob-sweep")

    async def stop(self, _server: object) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                result = await sweep_images(self._hub, self._grace)
            except Exception:  # the store or the database is away: try again next time
                log.warning("blob sweep failed", exc_info=True)
                continue
            if not result.swept:
                log.info("blob sweep skipped: another hub replica is sweeping")
                continue
            log.info(
                "blob sweep",
                listed=result.listed,
                deleted=result.deleted,
                partial_writes=result.partial,
                seconds=round(result.seconds, 3),
            )
