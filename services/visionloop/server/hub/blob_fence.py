"""Hub replicas and the blob sweep: no row is committed for bytes a sweep deleted after their put.

In one process, uploads and the sweep take turns on a hash (``Hub.blob_locks``) and an upload
whose bytes were deleted after its put sees ``Hub.blob_deletions`` move. Replicas share neither,
so with several of them (``hub_replicas`` > 1, PostgreSQL) the database fences them:

- The sweep deletes a blob in a transaction holding the hash's advisory lock exclusively, after
  checking that no row references it, and logs the deletion in ``swept_blobs`` (its ``seq``
  grows with every deletion) before the lock is released.
- An upload notes how far the log went (``Hub.swept_seq``, a value read from it earlier) before
  its put. Its row's transaction takes the hash's lock shared and looks for a deletion of the
  hash logged since: if there is one, the bytes may be gone, and it puts them again first.

Either the upload's transaction takes the lock first, and the sweep, looking at the rows after
it, finds the new row and keeps the blob; or the sweep's transaction ends first, and the upload
finds its log entry, which is newer than anything the upload read before its put.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import closing
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import delete, exists, insert, select, text
from sqlalchemy.orm import Session

from visionloop.lib.storage import BlobNotFound, ObjectStore
from visionloop.runtime.errors import Aborted
from visionloop.server.hub.db import schema

if TYPE_CHECKING:
    from visionloop.server.hub.state import Hub

T = TypeVar("T")

# The first of pg_advisory_xact_lock's two int4 keys: its two-key space is apart from the
# one-key (bigint) locks used elsewhere (events, migrations, the sweep's turn).
_LOCK_CLASS = 7_004
# How long a deletion stays in the log: longer than any upload takes from its put to its commit.
KEEP_SWEPT = timedelta(days=1)
_LOCK = text("SELECT pg_advisory_xact_lock(:class, :key)")
# An upload's two statements go straight to psycopg: through SQLAlchemy each cost as much again.
_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(%s, key) FROM unnest(%s::integer[]) AS key ORDER BY key"
_SWEPT_SINCE = "SELECT sha256, max(seq) FROM swept_blobs WHERE sha256 = ANY(%s) AND seq > %s GROUP BY sha256"
# Rounds of put-again-and-commit before the client is asked to retry (a sweep deletes a blob only
# once nobody wrote it for the grace period, so a second round is already unheard of).
ATTEMPTS = 3


class BlobGone(Aborted):
    """The sweep deleted these bytes after the upload put them: put them again, then commit."""

    def __init__(self, sha256s: Iterable[str], swept_seq: int) -> None:
        self.sha256s = sorted(set(sha256s))
        self.swept_seq = swept_seq  # read before the new put: fences the retry
        named = ", ".join(self.sha256s[:3]) + (f" and {len(self.sha256s) - 3} more" if len(self.sha256s) > 3 else "")
        super().__init__(
            f"the blob sweep of another hub replica deleted image {named} while it was being stored; "
            "nothing was recorded: upload it again"
        )


def _lock_key(sha256: str) -> int:
    """An int4 from the hash; two hashes sharing one only wait for each other now and then."""
    return int(sha256[:8], 16) - 2**31


def check(session: Session, puts: Iterable[tuple[str, int]]) -> None:
    """Raise ``BlobGone`` if the sweep deleted any of the (sha256, swept seq read before its put)
    since; otherwise the hashes' locks are held until the commit, and the sweep waits for it."""
    puts = list(puts)
    if not puts:
        return
    hashes = sorted({sha256 for sha256, _ in puts})
    # the transaction's own connection; closing(): SQLAlchemy types the DBAPI cursor as no context manager
    with closing(session.connection().connection.cursor()) as cursor:
        cursor.execute(_LOCK_SHARED, (_LOCK_CLASS, sorted({_lock_key(h) for h in hashes})))
        cursor.execute(_SWEPT_SINCE, (hashes, min(seq for _, seq in puts)))
        latest: dict[str, int] = dict(cursor.fetchall())
    gone = [sha256 for sha256, seq in puts if latest.get(sha256, 0) > seq]
    if gone:
        raise BlobGone(gone, max(latest.values()))


def delete_unreferenced(
    session: Session, store: ObjectStore, sha256: str, key: str, cutoff: datetime, now: datetime
) -> bool:
    """The sweep's delete (blocking): under the hash's exclusive lock, if no row references the
    blob and nobody wrote it since ``cutoff``; the deletion is logged before the lock goes."""
    session.execute(_LOCK, {"class": _LOCK_CLASS, "key": _lock_key(sha256)})
    if session.scalar(select(exists().where(schema.Image.sha256 == sha256))):
        return False
    try:
        if store.last_modified(key) >= cutoff:
            return False
    except BlobNotFound:
        return False
    store.delete(key)
    session.execute(insert(schema.SweptBlob), {"sha256": sha256, "time": now})
    return True


def forget_old(session: Session, now: datetime) -> None:
    """Drop the deletions logged before any upload now in flight made its put: none can fence it."""
    session.execute(delete(schema.SweptBlob).where(schema.SweptBlob.time < now - KEEP_SWEPT))


async def committed(
    hub: Hub,
    swept_seq: int | None,
    commit: Callable[[int | None], Awaitable[T]],
    put_again: Callable[[Sequence[str]], Awaitable[object]],
) -> T:
    """``commit(swept_seq)``; while it finds bytes the sweep deleted after their put (``check``
    raised ``BlobGone``), put those again and commit again, fenced by the log as just read."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await commit(swept_seq)
        except BlobGone as gone:
            hub.note_swept_seq(gone.swept_seq)  # the client's next try starts from here too
            if attempt == ATTEMPTS:
                raise
            swept_seq = gone.swept_seq
            await put_again(gone.sha256s)
    raise AssertionError("unreachable: the last attempt returns or raises")
