"""Running out of something the server needs: disk space, a quota, database connections.

A full disk is neither the caller's fault nor a bug, so it must not be answered INTERNAL: it is
RESOURCE_EXHAUSTED (UNAVAILABLE where trying again shortly is all it takes), with a message that
says what ran out and what to do. ``shortage_of`` recognises how each layer reports it, raised
directly or wrapped (SQLAlchemy's ``orig``, chained exceptions, boto3's ``S3UploadFailedError``):

- the OS: ENOSPC, EDQUOT, EFBIG; EMFILE and ENFILE (too many open files);
- SQLite: SQLITE_FULL ("database or disk is full"), SQLITE_BUSY after the busy timeout;
- PostgreSQL: SQLSTATE class 53, insufficient resources (53100 disk full, 53300 too many connections);
- S3: HTTP 507, the quota and storage-full codes of S3-compatible stores, EntityTooLarge, SlowDown.

The exception interceptor answers them for every RPC; background workers (trainer, annotator,
detector model updates) use ``shortage_of`` to wait for space instead of giving up or dying.
Every shortage is counted in ``visionloop_resource_shortages_total{resource}`` and logged.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter

from visionloop.runtime.logging import get_logger

log = get_logger(__name__)

SHORTAGES = Counter(
    "visionloop_resource_shortages",
    "Operations refused or postponed because the process ran out of a resource (disk space, quota, connections).",
    ["resource"],
)

_SQLITE_FULL = 13
_SQLITE_BUSY = 5
_FREE_DISK = "free space on its data volume (or raise its quota), then try again"
# Codes S3-compatible stores answer when a bucket or the storage behind it is full.
_S3_FULL_CODES = frozenset(
    {
        "InsufficientStorage",
        "QuotaExceeded",
        "StorageFull",
        "XMinioStorageFull",
        "XMinioAdminBucketQuotaExceeded",
    }
)
_S3_SLOW_DOWN_CODES = frozenset({"SlowDown", "ServiceUnavailable"})
_MAX_CHAIN = 16  # exceptions looked at per error: causes, contexts and wrapped driver errors


@dataclass(frozen=True)
class Shortage:
    """What ran out, the status a caller gets for it, and whether the same request succeeds later."""

    resource: str  # metric label: disk, database, object_store, open_files, database_connections
    code: grpc.StatusCode
    message: str
    # True: the same request succeeds once the resource is back (space freed, connections released);
    # False: this request is too big for the resource however much of it is free.
    retry_later: bool = True


def shortage_of(error: BaseException) -> Shortage | None:
    """The shortage ``error`` (or an error it wraps or was raised while handling) reports, or None."""
    for candidate in _chain(error):
        shortage = _os_shortage(candidate) or _database_shortage(candidate) or _s3_shortage(candidate)
        if shortage is not None:
            return shortage
    return None


def report(shortage: Shortage, error: BaseException, **context: Any) -> None:
    """Count the shortage and log it with the full error (paths included, which callers do not see)."""
    SHORTAGES.labels(shortage.resource).inc()
    log.warning("out of a resource", resource=shortage.resource, error=str(error) or type(error).__name__, **context)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    queue: list[BaseException] = [error]
    while queue and len(seen) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError holds the driver's error
        for inner in (wrapped, current.__cause__, current.__context__):
            if isinstance(inner, BaseException):
                queue.append(inner)


def _os_shortage(error: BaseException) -> Shortage | None:
    if not isinstance(error, OSError):
        return None
    if error.errno == errno.ENOSPC:
        return Shortage("disk", grpc.StatusCode.RESOURCE_EXHAUSTED, f"no space left on the server's disk: {_FREE_DISK}")
    if error.errno == errno.EDQUOT:
        return Shortage("disk", grpc.StatusCode.RESOURCE_EXHAUSTED, f"the server's disk quota is used up: {_FREE_DISK}")
    if error.errno == errno.EFBIG:
        return Shortage(
            "disk",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "a file would grow beyond what the server's filesystem (or its file size limit) allows",
            retry_later=False,
        )
    if error.errno in (errno.EMFILE, errno.ENFILE):
        return Shortage("open_files", grpc.StatusCode.UNAVAILABLE, "the server has too many files open; try again")
    return None


def _database_shortage(error: BaseException) -> Shortage | None:
    if isinstance(error, sqlite3.Error):
        primary = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
        if primary == _SQLITE_FULL:
            return Shortage(
                "database",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the database's disk is full (SQLite: {error}): {_FREE_DISK}",
            )
        if primary == _SQLITE_BUSY:
            return Shortage("database", grpc.StatusCode.UNAVAILABLE, "the database is busy (locked); try again")
        return None
    sqlstate = getattr(error, "sqlstate", None)  # psycopg's errors carry the server's SQLSTATE
    if not isinstance(sqlstate, str) or not sqlstate.startswith("53"):
        return None
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else sqlstate
    if sqlstate == "53100":
        return Shortage(
            "database",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the PostgreSQL server's disk is full ({first_line}): free space on the database server, then try again",
        )
    if sqlstate in ("53200", "53300"):  # out of memory, too many connections: passing
        return Shortage(
            "database_connections",
            grpc.StatusCode.UNAVAILABLE,
            f"PostgreSQL is out of resources ({first_line}); try again",
        )
    return Shortage(
        "database",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"PostgreSQL refused the work: a configured limit was reached ({first_line})",
        retry_later=False,
    )


def _s3_shortage(error: BaseException) -> Shortage | None:
    response = getattr(error, "response", None)  # botocore's ClientError: the parsed error response
    if not isinstance(response, dict) or not isinstance(response.get("Error"), dict):
        return None
    code = str(response["Error"].get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    said = f"{code}: {response['Error'].get('Message', '')}".rstrip(": ")
    if code in _S3_FULL_CODES or status == 507:
        return Shortage(
            "object_store",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the object store is out of space ({said}): free space or raise the bucket's quota, then try again",
        )
    if code == "EntityTooLarge":
        return Shortage(
            "object_store",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the object store refuses objects this large ({said})",
            retry_later=False,
        )
    if code in _S3_SLOW_DOWN_CODES or status == 503:
        return Shortage("object_store", grpc.StatusCode.UNAVAILABLE, f"the object store is busy ({said}); try again")
    return None
