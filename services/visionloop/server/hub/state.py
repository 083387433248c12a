"""The hub's shared state: database, object store, event bus, upload spool.

Every hub servicer receives the one ``Hub``; nothing else is global.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from visionloop.lib.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from visionloop.lib.storage import LocalObjectStore, ObjectStore, S3ObjectStore
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime import access
from visionloop.runtime.errors import InvalidArgument, NotFound
from visionloop.runtime.threads import named_executor
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.db.engine import Database

_EVENT_LOCK = 7_004_243  # pg_advisory_xact_lock key: event rows commit in sequence order
# Blob writes wait on the disk or the network: more of them in flight than the default executor
# (cores + 4 threads, shared with the database calls) allows. Also the S3 client's connection pool.
BLOB_WORKERS = 32

T = TypeVar("T")
_TAKE_EVENT_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_EVENT_LOCK_HELD = "visionloop.event_lock_held"  # session.info: the transaction that holds the event lock
_INSERT_EVENT = insert(schema.Event.__table__)  # type: ignore[arg-type]


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventBus:
    """Appends events inside the caller's transaction and wakes watchers after it commits.

    Watchers take ``generation`` before they read and pass it to ``wait``, so a notify that
    lands between their read and their wait is never lost. They also poll, so events written
    by another hub replica arrive within ``poll_seconds``.
    """

    def __init__(self, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self.generation = 0
        self._changed = asyncio.Event()

    @staticmethod
    def append(
        session: Session,
        type_: int,
        project: AnyProject | None,
        subject: str = "",
        detail: str = "",
    ) -> None:
        EventBus.append_many(session, [(type_, project, subject, detail)])

    @staticmethod
    def append_many(session: Session, events: Sequence[tuple[int, AnyProject | None, str, str]]) -> None:
        """Append (type, project, subject, detail) events in one statement."""
        if not events:
            return
        if session.get_bind().dialect.name == "postgresql":
            # Serialize event writers so a cursor never skips a row that commits later with a lower seq.
            # The lock lasts until the commit, so once per transaction is enough (group commit appends
            # many events in one); inside a savepoint it is always taken, as rolling the savepoint
            # back releases it.
            transaction = session.get_transaction()
            nested = session.in_nested_transaction()
            if nested or session.info.get(_EVENT_LOCK_HELD) is not transaction:
                session.connection().execute(_TAKE_EVENT_LOCK, {"key": _EVENT_LOCK})  # not the ORM's execute: cheaper
                if not nested:
                    session.info[_EVENT_LOCK_HELD] = transaction
        # A plain INSERT rather than ORM objects: uploads append one event per image, and the unit
        # of work's flush cost more than the statement.
        now = utcnow()
        session.connection().execute(
            _INSERT_EVENT,
            [
                {
                    "type": type_,
                    "organization": project.organization if project else "",
                    "project": project.name if project else "",
                    "subject": subject,
                    "detail": detail,
                    "time": now,
                }
                for type_, project, subject, detail in events
            ],
        )

    def notify(self) -> None:
        """Call on the event loop after a transaction that appended events committed."""
        self.generation += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen: int) -> None:
        """Return once ``generation`` moved past ``seen`` or the poll interval passed."""
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=self.poll_seconds)


class KeyedLocks:
    """One asyncio lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def hold_all(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Every key's lock, taken in sorted order so that two holders never wait on each other."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys)):
                await stack.enter_async_context(self.hold(key))
            yield

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class Hub:
    settings: LoopSettings
    db: Database
    store: ObjectStore
    spool: Path
    host: str
    events: EventBus = field(default_factory=EventBus)
    max_image_bytes: int = DEFAULT_MAX_BYTES  # from the settings; tests lower them in place
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    # Leases and heartbeats read the clock through ``now()``; tests move it forward instead of sleeping.
    clock_offset: timedelta = timedelta(0)
    blob_workers: ThreadPoolExecutor = field(default_factory=lambda: named_executor(BLOB_WORKERS, "hub-blob"))
    # Uploads and imports of the same bytes, one at a time (see images.store_image).
    blob_locks: KeyedLocks = field(default_factory=KeyedLocks)
    # Image blobs deleted so far (``delete_blob``): an upload that put its blob before taking its
    # turn puts it again if this moved meanwhile (see images.store_image).
    blob_deletions: int = 0
    # With several replicas: how far the sweep's deletion log went, as last read (see blob_fence).
    swept_seq: int = 0

    @property
    def fenced(self) -> bool:
        """Whether other hub replicas may sweep: uploads then check the sweep's log (``blob_fence``)."""
        return self.settings.hub_replicas > 1 and self.db.dialect == "postgresql"

    def note_swept_seq(self, seq: int) -> None:
        self.swept_seq = max(self.swept_seq, seq)

    def now(self) -> datetime:
        return utcnow() + self.clock_offset

    async def in_blob_worker(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking blob work (decoding, hashing, object store calls) in ``blob_workers``."""
        return await asyncio.get_running_loop().run_in_executor(self.blob_workers, fn, *args)

    async def delete_blob(self, key: str) -> None:
        """Delete an image blob; the caller holds its turn on the bytes (``blob_locks``)."""
        self.blob_deletions += 1  # before the delete: an upload's put may land while it runs
        await self.in_blob_worker(self.store.delete, key)

    def close(self) -> None:
        self.blob_workers.shutdown(wait=False)
        self.db.close()

    @classmethod
    def from_settings(cls, settings: LoopSettings) -> Hub:
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        url = settings.database_url or f"sqlite:///{data / 'loop.db'}"
        store: ObjectStore
        if settings.s3_endpoint:
            s3 = S3ObjectStore(
                settings.s3_endpoint,
                settings.s3_bucket,
                settings.s3_access_key_id,
                settings.s3_secret_access_key,
                settings.s3_region,
                max_connections=BLOB_WORKERS,
            )
            s3.ensure_bucket()
            store = s3
        else:
            store = LocalObjectStore(data / "blobs")
        spool = data / "spool"
        shutil.rmtree(spool, ignore_errors=True)  # partial uploads of a previous run are garbage
        spool.mkdir(parents=True)
        host = settings.public_address or f"{settings.host}:{settings.port}"
        return cls(
            settings=settings,
            db=Database(url),
            store=store,
            spool=spool,
            host=host,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
        )

    def spool_file(self) -> Path:
        """A fresh temporary file for an incoming upload; the caller deletes it."""
        with tempfile.NamedTemporaryFile(dir=self.spool, prefix="upload-", delete=False) as handle:
            return Path(handle.name)


def check_ref(ref: project_service_pb2.ProjectRef) -> None:
    """INVALID_ARGUMENT for an incomplete ref; PERMISSION_DENIED when the caller's token is limited to
    other projects (every request naming a project passes here, through ``get_project`` at the latest)."""
    if not ref.organization or not ref.project:
        raise InvalidArgument("ref.organization and ref.project are required, e.g. acme / weeds")
    access.check_project(ref.organization, ref.project)


def check_in_scope(project: schema.Project) -> None:
    """PERMISSION_DENIED when the caller's token is limited to other projects, for rows found by their
    own id (trainings, conversions, nodes) rather than through a ref."""
    access.check_project(project.organization, project.name)


@dataclass(frozen=True)
class ProjectKey:
    """A project's identity, safe to keep outside a session (projects are never renamed)."""

    pk: int
    organization: str
    name: str


AnyProject = schema.Project | ProjectKey  # where only identity is needed

_project_keys: weakref.WeakKeyDictionary[Engine, dict[tuple[str, str], ProjectKey]] = weakref.WeakKeyDictionary()


def project_key(session: Session, ref: project_service_pb2.ProjectRef) -> ProjectKey:
    """``get_project`` for hot paths: remembered per database after the first lookup.

    Not checked against the caller's token: group commit runs it for many calls in one worker
    thread, outside each call's context. Callers check the ref first (``check_ref``).
    """
    engine = session.get_bind().engine
    known = _project_keys.setdefault(engine, {})
    key = known.get((ref.organization, ref.project))
    if key is None:
        project = get_project(session, ref)
        key = known[(ref.organization, ref.project)] = ProjectKey(project.pk, project.organization, project.name)
    return key


def get_project(session: Session, ref: project_service_pb2.ProjectRef) -> schema.Project:
    """The project named by ``ref`` or NOT_FOUND with a message saying how to create it."""
    check_ref(ref)
    project = session.scalars(
        select(schema.Project).where(
            schema.Project.organization == ref.organization, schema.Project.name == ref.project
        )
    ).one_or_none()
    if project is None:
        raise NotFound(
            f"project {ref.organization}/{ref.project} does not exist; "
            "create it with ProjectService.CreateProject (visionloop projects create)"
        )
    return project
