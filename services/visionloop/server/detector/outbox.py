"""The detector's durable outbox: images wait on disk until the hub has acknowledged them.

Robots (``DetectorService.Upload``) and the active-learning filter hand images to ``Outbox.put``,
which returns as soon as the item is on disk and never waits for the network. A background task
sends the items to the hub in batches.

On disk, ``folder/high/`` and ``folder/normal/`` hold one file per item, named by a strictly
increasing nanosecond stamp, so sorting names gives enqueue order, across restarts too. A file is
written aside (``runtime.files.atomic_writer``), fsynced, renamed to ``<name>.item`` and the
folder fsynced: once ``put`` returned, the item survives ``kill -9`` and power loss. Leftover
``.tmp`` files are items nobody was told about; they are deleted on start. Each file carries a CRC
so a damaged item is noticed (and dropped) instead of being sent as garbage.

Delivery: an item is deleted only after the hub answered for it, so a crash between sending and
deleting sends it again; the hub deduplicates by content hash (the same bytes are one image, tags
merged), which makes delivery exactly once end to end.

Size bound and drop policy: when adding an item would exceed ``max_items`` or ``max_bytes``, the
oldest normal items are dropped first; priority items are dropped only when no normal item is left
(oldest first). The new item is always kept: fresh frames are worth more than stale ones. A single
item larger than ``max_bytes`` is refused with RESOURCE_EXHAUSTED. So is a ``put`` on a full disk
(the interceptor answers the OS error so): the partial file is removed, the index forgets the item,
and the next ``put`` works again once there is space.

Sending: the priority lane before the normal lane, oldest first, in batches. An image the hub
refuses (it does not decode, is too large, ...) is dropped and counted in ``rejected`` without
holding up the others; transport failures, and refusals the hub marks ``retry_later`` (its disk
is full), keep the items and retry with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import os
import random
import struct
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

import grpc
import structlog
from google.protobuf.message import DecodeError
from prometheus_client import Counter, Gauge

from visionloop.client.channel import create_aio_channel
from visionloop.common.v1 import transfer_pb2
from visionloop.detector.v1 import detector_service_pb2 as detector_pb
from visionloop.loop.v1 import image_service_pb2, image_service_pb2_grpc, project_service_pb2, project_service_pb2_grpc
from visionloop.runtime.config import PeerSettings
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from visionloop.runtime.files import TEMP_SUFFIX, fsync_dir, write_atomically
from visionloop.runtime.tasks import cancel_and_wait, raise_if_cancelling

log = structlog.stdlib.get_logger(__name__)

ImageUpload = image_service_pb2.ImageUpload

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CHUNK_BYTES = 1 * MiB  # the recommended chunk size of the transfer contract

CONTINUOUS_UPLOAD = detector_pb.OUTBOX_MODE_CONTINUOUS_UPLOAD
STOPPED = detector_pb.OUTBOX_MODE_STOPPED

_MAGIC = b"VLO1"
_HEADER = struct.Struct(">4sI")  # magic, crc32 of the payload
_ITEM = ".item"
_STOPPED_FILE = "stopped"  # present while an operator has stopped uploads

ITEMS = Gauge("visionloop_outbox_items", "Items waiting in the detector's outbox.", ["lane"])
BYTES = Gauge("visionloop_outbox_bytes", "Bytes the detector's outbox holds on disk.")
DROPPED = Counter("visionloop_outbox_dropped", "Outbox items dropped because the outbox was full.", ["lane"])
REJECTED = Counter("visionloop_outbox_rejected", "Outbox items the hub refused (or found damaged), then dropped.")
UPLOADED = Counter("visionloop_outbox_uploaded", "Outbox items the hub acknowledged.")


class Lane(StrEnum):
    HIGH = "high"
    NORMAL = "normal"


SEND_ORDER = (Lane.HIGH, Lane.NORMAL)
DROP_ORDER = (Lane.NORMAL, Lane.HIGH)

Key = tuple[Lane, str]  # (lane, item id)


# --- what a sender answers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """The hub stored the image (``duplicate``: it already had these bytes and merged the tags)."""

    duplicate: bool = False


@dataclass(frozen=True)
class Rejected:
    """The hub refused this image for good; sending it again would fail the same way."""

    code: grpc.StatusCode
    message: str


@dataclass(frozen=True)
class Failed:
    """The image did not get through (connection, timeout, hub busy); it is sent again later."""

    message: str


Outcome = Accepted | Rejected | Failed
Sender = Callable[[Sequence[ImageUpload]], Awaitable[Sequence[Outcome]]]
"""Sends a batch; answers one outcome per image, in order, or raises ``TransportError``."""


class TransportError(Exception):
    """The whole batch could not be sent; the outbox keeps it and retries later."""


@dataclass(frozen=True)
class OutboxState:
    """A snapshot of the outbox for GetAbout, SetOutboxMode and logs."""

    mode: int
    depth: int
    high_depth: int
    size_bytes: int
    dropped: int
    rejected: int
    uploaded: int
    last_error: str

    def to_proto(self) -> detector_pb.OutboxStatus:
        return detector_pb.OutboxStatus(
            mode=self.mode,  # type: ignore[arg-type]
            depth=self.depth,
            size_bytes=self.size_bytes,
            dropped=self.dropped,
            last_error=self.last_error,
            rejected=self.rejected,
            uploaded=self.uploaded,
        )


# --- files ----------------------------------------------------------------------------------------


def _encode(upload: ImageUpload) -> bytes:
    payload = upload.SerializeToString()
    return _HEADER.pack(_MAGIC, zlib.crc32(payload)) + payload


def _decode(blob: bytes) -> ImageUpload:
    """Parse an item file; ``ValueError`` when it is damaged."""
    if len(blob) < _HEADER.size:
        raise ValueError("shorter than its header")
    magic, crc = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size :]
    if magic != _MAGIC:
        raise ValueError(f"unknown format {magic!r}")
    if zlib.crc32(payload) != crc:
        raise ValueError("checksum mismatch")
    try:
        return ImageUpload.FromString(payload)
    except DecodeError as error:
        raise ValueError(f"does not parse: {error}") from None


def _unlink_all(paths: Iterable[Path]) -> None:
    # Deletions need no fsync: an item that reappears after a crash is sent again and deduplicated.
    for path in paths:
        path.unlink(missing_ok=True)


def _scan(folder: Path) -> dict[Lane, list[tuple[str, int]]]:
    """Item ids and sizes per lane, oldest first; deletes half-written temp files."""
    found: dict[Lane, list[tuple[str, int]]] = {}
    for lane in Lane:
        lane_dir = folder / lane
        lane_dir.mkdir(parents=True, exist_ok=True)
        items: list[tuple[str, int]] = []
        with os.scandir(lane_dir) as entries:
            for entry in entries:
                if entry.name.endswith(TEMP_SUFFIX):  # also the bare <id>.tmp of earlier versions
                    os.unlink(entry.path)
                    log.info("outbox removed a half-written item", file=entry.path)
                elif entry.name.endswith(_ITEM) and entry.name.removesuffix(_ITEM).isdigit():
                    items.append((entry.name.removesuffix(_ITEM), entry.stat().st_size))
        found[lane] = sorted(items)
    fsync_dir(folder)
    return found


def _lock(folder: Path) -> IO[bytes]:
    """Hold ``folder/.lock`` so two outboxes never share a folder (the OS frees it when we die)."""
    folder.mkdir(parents=True, exist_ok=True)
    file = open(folder / ".lock", "ab")  # noqa: SIM115 - held open for the outbox's lifetime
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise FailedPrecondition(f"another outbox is using {folder}") from None
    return file


def _open(folder: Path) -> tuple[IO[bytes], dict[Lane, list[tuple[str, int]]]]:
    """Lock the folder, then list what is in it."""
    lock = _lock(folder)
    try:
        return lock, _scan(folder)
    except BaseException:
        lock.close()
        raise


# --- the outbox -----------------------------------------------------------------------------------


class Outbox:
    """Durable, bounded, two-lane upload queue with a background uploader."""

    def __init__(
        self,
        folder: Path,
        send: Sender,
        max_items: int = 10_000,
        max_bytes: int = 2 * GiB,
        batch_size: int = 16,
        *,
        max_batch_bytes: int = 32 * MiB,
        mode: int = CONTINUOUS_UPLOAD,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
    ) -> None:
        if max_items < 1 or max_bytes < 1 or batch_size < 1 or max_batch_bytes < 1:
            raise ValueError("max_items, max_bytes, batch_size and max_batch_bytes must be positive")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff must satisfy 0 < backoff_initial <= backoff_max")
        self.folder = Path(folder)
        self._send = send
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._batch_size = batch_size
        self._max_batch_bytes = max_batch_bytes
        self._mode = _checked_mode(mode)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

        self._items: dict[Lane, dict[str, int]] = {lane: {} for lane in Lane}  # id -> size, oldest first
        self._bytes = 0
        self._writing: set[str] = set()  # ids whose file is not renamed into place yet
        self._last_stamp = 0
        self._lock_file: IO[bytes] | None = None
        self._load_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()  # items arrived or the mode changed
        self._kick = asyncio.Event()  # cuts a backoff short (uploads resumed)
        self._unlinking: set[asyncio.Future[None]] = set()  # deletions of settled items under way

        self.dropped = 0
        self.rejected = 0
        self.uploaded = 0
        self.last_error = ""

    # lifecycle

    def start(self) -> None:
        """Pick up items left on disk and start sending. Reads the folder synchronously: call at start-up."""
        if not self._loaded:
            self._install(*_open(self.folder))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"outbox {self.folder}")

    async def stop(self) -> None:
        """Stop sending and release the folder. Items stay on disk; an unanswered batch is sent again later."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        if self._unlinking:
            await asyncio.gather(*self._unlinking, return_exceptions=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def mode(self) -> int:
        return self._mode

    def set_mode(self, mode: int) -> None:
        """CONTINUOUS_UPLOAD sends; STOPPED keeps items (and keeps accepting them) but sends nothing.
        A stop is remembered in the folder, so a detector stopped on a metered link stays stopped
        after a restart until someone resumes it."""
        mode = _checked_mode(mode)
        marker = self.folder / _STOPPED_FILE
        if mode == STOPPED:  # first: on a full disk the call fails and the mode stays as it was
            write_atomically(marker, b"uploads stopped by SetOutboxMode\n")
        else:
            marker.unlink(missing_ok=True)
        self._mode = mode
        log.info("outbox mode", mode=detector_pb.OutboxMode.Name(self._mode))
        self._wakeup.set()
        if self._mode == CONTINUOUS_UPLOAD:
            self._kick.set()  # an operator resuming expects sending now, not after the current backoff

    # queueing

    async def put(self, upload: ImageUpload, high_priority: bool = False) -> str:
        """Store one image durably; return its item id once it is on disk."""
        await self._ensure_loaded()
        if not upload.data:
            raise InvalidArgument("image is empty")
        blob = await asyncio.to_thread(_encode, _with_create_time(upload))
        if len(blob) > self._max_bytes:
            raise ResourceExhausted(f"item is {len(blob)} bytes; the outbox holds at most {self._max_bytes} bytes")
        lane = Lane.HIGH if high_priority else Lane.NORMAL
        item_id = self._next_id()
        victims = self._make_room(len(blob))
        self._add(lane, item_id, len(blob))
        self._writing.add(item_id)
        paths = [self._path(key) for key in victims]
        write = asyncio.ensure_future(asyncio.to_thread(self._write, lane, item_id, blob, paths))
        write.add_done_callback(functools.partial(self._written, lane, item_id))
        # Shielded: a caller that gives up mid-write must not leave a file the index does not know.
        await asyncio.shield(write)
        self._wakeup.set()
        return item_id

    def _write(self, lane: Lane, item_id: str, blob: bytes, victims: list[Path]) -> None:
        _unlink_all(victims)  # first, so the folder stays within its bound
        write_atomically(self.folder / lane / f"{item_id}{_ITEM}", blob)

    def _written(self, lane: Lane, item_id: str, write: asyncio.Future[None]) -> None:
        self._writing.discard(item_id)
        if write.cancelled() or write.exception() is not None:
            self._forget((lane, item_id))

    def _make_room(self, incoming: int) -> list[Key]:
        """Drop the oldest items (normal lane first) until ``incoming`` more bytes and one more item fit."""
        victims: list[Key] = []
        while self.depth + 1 > self._max_items or self._bytes + incoming > self._max_bytes:
            victim = self._oldest(DROP_ORDER, skip=self._writing)
            if victim is None:  # only items other puts are still writing: over the bound for a moment
                break
            self._forget(victim)
            victims.append(victim)
        if victims:
            self.dropped += len(victims)
            for lane, _ in victims:
                DROPPED.labels(lane).inc()
            log.warning(
                "outbox full: dropped the oldest items",
                items=[f"{lane}/{item_id}" for lane, item_id in victims],
                dropped_total=self.dropped,
                max_items=self._max_items,
                max_bytes=self._max_bytes,
            )
        return victims

    # state

    @property
    def depth(self) -> int:
        return sum(len(items) for items in self._items.values())

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def status(self) -> OutboxState:
        return OutboxState(
            mode=self._mode,
            depth=self.depth,
            high_depth=len(self._items[Lane.HIGH]),
            size_bytes=self._bytes,
            dropped=self.dropped,
            rejected=self.rejected,
            uploaded=self.uploaded,
            last_error=self.last_error,
        )

    def pending(self) -> list[str]:
        """Item ids in sending order (priority lane first, oldest first)."""
        return [item_id for lane in SEND_ORDER for item_id in self._items[lane]]

    # sending

    async def _run(self) -> None:
        delay = self._backoff_initial
        while True:
            raise_if_cancelling()
            try:
                failures, progress = await self._send_next()
            except Exception as error:  # disk trouble (permissions, I/O errors) must not end the uploader
                raise_if_cancelling()
                log.exception("outbox uploader failed")
                self.last_error = f"outbox: {error}"
                failures, progress = 1, False
            if not failures:
                delay = self._backoff_initial
                continue
            if progress:  # the hub answered part of the batch: it is reachable, start backing off afresh
                delay = self._backoff_initial
            pause = random.uniform(delay / 2, delay)  # jitter: robots that lost the hub together do not return in step
            log.warning(
                "outbox send failed; retrying", error=self.last_error, items=failures, retry_in_s=round(pause, 3)
            )
            await self._pause(pause)
            delay = min(delay * 2, self._backoff_max)

    async def _send_next(self) -> tuple[int, bool]:
        batch = await self._next_batch()
        outcomes = await self._deliver([upload for _, upload in batch])
        return await self._settle([key for key, _ in batch], outcomes)

    async def _next_batch(self) -> list[tuple[Key, ImageUpload]]:
        """Wait until sending is on and items are ready; read the next batch from disk."""
        while True:
            keys = self._choose_batch() if self._mode == CONTINUOUS_UPLOAD else []
            if not keys:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            read = await asyncio.to_thread(_read_items, [(key, self._path(key)) for key in keys])
            batch = [(key, upload) for key, upload in read if isinstance(upload, ImageUpload)]
            await self._discard_unreadable([(key, problem) for key, problem in read if isinstance(problem, str)])
            if batch:
                return batch

    def _choose_batch(self) -> list[Key]:
        keys: list[Key] = []
        total = 0
        for lane in SEND_ORDER:
            for item_id, size in self._items[lane].items():
                if item_id in self._writing:
                    continue
                if len(keys) == self._batch_size or (keys and total + size > self._max_batch_bytes):
                    return keys
                keys.append((lane, item_id))
                total += size
        return keys

    async def _discard_unreadable(self, problems: list[tuple[Key, str]]) -> None:
        damaged: list[Path] = []
        for key, problem in problems:
            if not self._forget(key):
                continue  # dropped while it was being read: already accounted for
            if problem == "missing":
                log.warning("outbox item vanished from disk", item=f"{key[0]}/{key[1]}")
                continue
            log.error("outbox item is damaged; dropping it", item=f"{key[0]}/{key[1]}", problem=problem)
            self.rejected += 1
            REJECTED.inc()
            damaged.append(self._path(key))
        if damaged:
            await self._unlink(damaged)

    async def _deliver(self, uploads: list[ImageUpload]) -> Sequence[Outcome]:
        try:
            outcomes = await self._send(uploads)
        except TransportError as error:
            return [Failed(str(error) or type(error).__name__)] * len(uploads)
        except Exception as error:  # a sender bug must not kill the uploader; the items stay
            log.exception("outbox sender raised")
            return [Failed(f"sender raised {type(error).__name__}: {error}")] * len(uploads)
        if len(outcomes) != len(uploads):
            log.error("outbox sender answered the wrong number of items", sent=len(uploads), answers=len(outcomes))
            return [Failed(f"sender answered {len(outcomes)} outcomes for {len(uploads)} items")] * len(uploads)
        return outcomes

    async def _settle(self, keys: list[Key], outcomes: Sequence[Outcome]) -> tuple[int, bool]:
        """Delete what the hub answered for; return (items to retry, whether the hub answered any)."""
        done: list[Path] = []
        failures = 0
        for key, outcome in zip(keys, outcomes, strict=True):
            if isinstance(outcome, Failed):
                failures += 1
                self.last_error = outcome.message
                continue
            if isinstance(outcome, Rejected):
                self.rejected += 1
                REJECTED.inc()
                log.warning(
                    "hub rejected an outbox item; dropping it",
                    item=f"{key[0]}/{key[1]}",
                    code=outcome.code.name,
                    reason=outcome.message,
                )
            else:
                self.uploaded += 1
                UPLOADED.inc()
            self._forget(key)  # may already be gone: dropped for room while it was being sent
            done.append(self._path(key))
        progress = len(done) > 0
        if progress and not failures:
            if self.last_error:
                log.info("outbox reaches the hub again")
            self.last_error = ""
        if done:
            await self._unlink(done)
        return failures, progress

    async def _unlink(self, paths: list[Path]) -> None:
        """Delete settled items' files. Shielded and awaited by ``stop``: a stop in the middle must not
        return while the files of items already counted as sent are still on disk (a restart would
        send them again)."""
        task = asyncio.ensure_future(asyncio.to_thread(_unlink_all, paths))
        self._unlinking.add(task)
        task.add_done_callback(self._unlinking.discard)
        await asyncio.shield(task)

    async def _pause(self, seconds: float) -> None:
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), seconds)

    # index

    @property
    def _loaded(self) -> bool:
        return self._lock_file is not None

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._load_lock:
            if not self._loaded:
                self._install(*await asyncio.to_thread(_open, self.folder))

    def _install(self, lock: IO[bytes], found: dict[Lane, list[tuple[str, int]]]) -> None:
        self._lock_file = lock
        if (self.folder / _STOPPED_FILE).exists() and self._mode != STOPPED:  # an operator's stop outlives a restart
            self._mode = STOPPED
            log.info("outbox stays stopped (SetOutboxMode before the restart)", folder=str(self.folder))
        self._items = {lane: dict(found.get(lane, [])) for lane in Lane}
        self._bytes = sum(size for items in self._items.values() for size in items.values())
        stamps = [int(item_id) for items in self._items.values() for item_id in items]
        self._last_stamp = max(stamps, default=0)  # new ids sort after old ones even if the clock went back
        self._publish()
        if self._bytes:
            log.info("outbox picked up items from disk", items=self.depth, bytes=self._bytes, folder=str(self.folder))

    def _next_id(self) -> str:
        self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
        return f"{self._last_stamp:020d}"

    def _path(self, key: Key) -> Path:
        return self.folder / key[0] / f"{key[1]}{_ITEM}"

    def _oldest(self, lanes: Sequence[Lane], skip: set[str]) -> Key | None:
        for lane in lanes:
            for item_id in self._items[lane]:
                if item_id not in skip:
                    return lane, item_id
        return None

    def _add(self, lane: Lane, item_id: str, size: int) -> None:
        self._items[lane][item_id] = size
        self._bytes += size
        self._publish()

    def _forget(self, key: Key) -> bool:
        size = self._items[key[0]].pop(key[1], None)
        if size is None:
            return False
        self._bytes -= size
        self._publish()
        return True

    def _publish(self) -> None:
        for lane in Lane:
            ITEMS.labels(lane).set(len(self._items[lane]))
        BYTES.set(self._bytes)


def _checked_mode(mode: int) -> int:
    if mode not in (CONTINUOUS_UPLOAD, STOPPED):
        raise InvalidArgument("outbox mode must be OUTBOX_MODE_CONTINUOUS_UPLOAD or OUTBOX_MODE_STOPPED")
    return mode


def _with_create_time(upload: ImageUpload) -> ImageUpload:
    """Stamp when the image was queued if the caller did not say when it was taken: it may be sent much later."""
    if upload.metadata.HasField("create_time"):
        return upload
    stamped = ImageUpload()
    stamped.CopyFrom(upload)
    stamped.metadata.create_time.GetCurrentTime()
    return stamped


def _read_items(paths: list[tuple[Key, Path]]) -> list[tuple[Key, ImageUpload | str]]:
    """Each item parsed, or why it could not be: "missing" or what is damaged."""
    read: list[tuple[Key, ImageUpload | str]] = []
    for key, path in paths:
        try:
            read.append((key, _decode(path.read_bytes())))
        except FileNotFoundError:
            read.append((key, "missing"))
        except ValueError as error:
            read.append((key, str(error)))
    return read


# --- the hub as a sender --------------------------------------------------------------------------

_CODES = {code.value[0]: code for code in grpc.StatusCode}
PROJECT_CHECK_SECONDS = 60.0

# Per-image answers with these codes are passing trouble at the hub: send the image again later.
_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
# A whole stream failing with these codes blames the image being received, not the connection.
_ITEM_FAULT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details() or 'no details'}"


def _outcome(response: image_service_pb2.UploadImagesResponse) -> Outcome:
    if response.error_code == 0:
        return Accepted(response.duplicate)
    code = _CODES.get(response.error_code, grpc.StatusCode.UNKNOWN)
    if code in _RETRY_CODES or response.retry_later:  # e.g. the hub's disk is full: not this image's fault
        return Failed(f"{code.name}: {response.error_message}")
    return Rejected(code, response.error_message)


class HubSender:
    """A ``Sender`` over the hub's ``ImageService.UploadImages`` stream: header plus 1 MiB chunks per image."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        ref: project_service_pb2.ProjectRef,
        *,
        timeout: float = 300.0,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._channel = channel
        self._stub = image_service_pb2_grpc.ImageServiceStub(channel)
        self._ref = ref
        self._timeout = timeout
        self._chunk_bytes = chunk_bytes
        self._owns_channel = False
        self._projects = project_service_pb2_grpc.ProjectServiceStub(channel)
        self._project_seen = 0.0  # monotonic time the project was last confirmed to exist

    @classmethod
    def connect(cls, peer: PeerSettings, *, timeout: float = 300.0) -> HubSender:
        """A sender with its own channel to the hub named by LOOP_HOST and friends; ``close`` it when done."""
        # gRPC waits up to 2 minutes between reconnects by default; the outbox's own backoff decides.
        config = peer.channel_config(extra_options=(("grpc.max_reconnect_backoff_ms", 10_000),))
        sender = cls(create_aio_channel(config), peer.project_ref, timeout=timeout)
        sender._owns_channel = True
        return sender

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def _check_project(self) -> str | None:
        """Why the project cannot take images now, or None. A missing project (a typo in
        LOOP_PROJECT, a hub not set up yet) must keep the items, not get them rejected one by one."""
        if time.monotonic() - self._project_seen < PROJECT_CHECK_SECONDS:
            return None
        try:
            await self._projects.GetProject(project_service_pb2.GetProjectRequest(ref=self._ref), timeout=30)
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name}: {error.details()}"
        self._project_seen = time.monotonic()
        return None

    async def __call__(self, uploads: Sequence[ImageUpload]) -> list[Outcome]:
        if (problem := await self._check_project()) is not None:
            return [Failed(problem) for _ in uploads]
        outcomes, error = await self._stream(uploads)
        if error is None:
            return [o or Failed("the hub ended the stream without answering") for o in outcomes]
        unanswered = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if error.code() in _ITEM_FAULT_CODES and unanswered:
            await self._isolate(uploads, outcomes, unanswered, error)
        return [o or Failed(_describe(error)) for o in outcomes]

    async def _isolate(
        self,
        uploads: Sequence[ImageUpload],
        outcomes: list[Outcome | None],
        unanswered: list[int],
        error: grpc.aio.AioRpcError,
    ) -> None:
        """Find which image the hub refused: alone it is to blame, among several send each on its own stream."""
        if len(unanswered) == 1:
            outcomes[unanswered[0]] = Rejected(error.code(), error.details() or "")
            return
        for index in unanswered:
            single, single_error = await self._stream([uploads[index]])
            if single_error is None:
                outcomes[index] = single[0]
            elif single_error.code() in _ITEM_FAULT_CODES:
                outcomes[index] = Rejected(single_error.code(), single_error.details() or "")
            else:
                return  # the connection went: the rest waits for the next attempt

    async def _stream(self, uploads: Sequence[ImageUpload]) -> tuple[list[Outcome | None], grpc.aio.AioRpcError | None]:
        """One UploadImages stream: the outcome per image answered so far, and the error that ended it."""
        outcomes: list[Outcome | None] = [None] * len(uploads)
        digests = await asyncio.to_thread(lambda: [hashlib.sha256(u.data).hexdigest() for u in uploads])
        call = self._stub.UploadImages(self._requests(uploads, digests), timeout=self._timeout)
        try:
            async for response in call:
                if 0 <= response.sequence < len(uploads):
                    outcomes[response.sequence] = _outcome(response)
                else:
                    log.warning("hub answered an image it was not sent", sequence=response.sequence)
        except grpc.aio.AioRpcError as error:
            return outcomes, error
        return outcomes, None

    async def _requests(
        self, uploads: Sequence[ImageUpload], digests: list[str]
    ) -> AsyncIterator[image_service_pb2.UploadImagesRequest]:
        yield image_service_pb2.UploadImagesRequest(ref=self._ref)
        for sequence, (upload, digest) in enumerate(zip(uploads, digests, strict=True)):
            header = image_service_pb2.ImageHeader(
                sequence=sequence,
                blob=transfer_pb2.BlobHeader(size_bytes=len(upload.data), sha256=digest),
                metadata=upload.metadata,
                annotations=upload.annotations,
                detections=upload.detections,
            )
            yield image_service_pb2.UploadImagesRequest(header=header)
            data = upload.data
            for offset in range(0, len(data), self._chunk_bytes):
                chunk = transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + self._chunk_bytes])
                yield image_service_pb2.UploadImagesRequest(chunk=chunk)
