"""Running out of a resource: what each layer raises for it, and the status every RPC answers.

The errors are the ones the libraries raise: SQLite's from a database that reached its page limit,
psycopg's and botocore's exception types as they build them from a server's answer. The services'
real full disks are in ``test_full_disk.py`` of tests/hub, tests/detector, tests/trainer and
tests/annotator.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc as pb_grpc
from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.resources import shortage_of
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec

EXHAUSTED, UNAVAILABLE = grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE


def s3_error(code: str, status: int, message: str = "") -> ClientError:
    """What botocore raises for an S3 error answer."""
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


def full_sqlite(path: Path) -> None:
    """Write into a SQLite database that may not grow (its page limit reached): SQLITE_FULL."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE blobs (data BLOB)")
        connection.execute("PRAGMA max_page_count = 3")
        connection.execute("INSERT INTO blobs VALUES (?)", (b"x" * 100_000,))
    finally:
        connection.close()


def test_a_full_sqlite_database_is_resource_exhausted(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError) as caught:
        full_sqlite(tmp_path / "raw.db")
    shortage = shortage_of(caught.value)
    assert shortage is not None
    assert (shortage.code, shortage.resource, shortage.retry_later) == (EXHAUSTED, "database", True)
    assert "database or disk is full" in shortage.message
    assert "free space" in shortage.message

    engine = create_engine(f"sqlite:///{tmp_path / 'wrapped.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE blobs (data BLOB)"))
    with engine.begin() as connection:
        connection.execute(text("PRAGMA max_page_count = 3"))
        with pytest.raises(OperationalError) as wrapped:  # as the hub's engine wraps it
            connection.execute(text("INSERT INTO blobs VALUES (:data)"), {"data": b"x" * 100_000})
    assert shortage_of(wrapped.value) == shortage
    engine.dispose()


@pytest.mark.parametrize(
    ("error", "code", "retry_later", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), EXHAUSTED, True, "no space left on the server's disk"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), EXHAUSTED, True, "quota"),
        (OSError(errno.EFBIG, "File too large"), EXHAUSTED, False, "file would grow beyond"),
        (OSError(errno.EMFILE, "Too many open files"), UNAVAILABLE, True, "too many files open"),
        (
            psycopg.errors.DiskFull("could not extend file base/1/2: No space left on device"),
            EXHAUSTED,
            True,
            "PostgreSQL server's disk is full",
        ),
        (psycopg.errors.TooManyConnections("sorry, too many clients already"), UNAVAILABLE, True, "too many clients"),
        (
            s3_error("XMinioStorageFull", 507, "Storage backend has reached its minimum free drive threshold"),
            EXHAUSTED,
            True,
            "out of space",
        ),
        (s3_error("InsufficientStorage", 507), EXHAUSTED, True, "raise the bucket's quota"),
        (s3_error("XMinioAdminBucketQuotaExceeded", 400), EXHAUSTED, True, "out of space"),
        (
            s3_error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed size"),
            EXHAUSTED,
            False,
            "this large",
        ),
        (s3_error("SlowDown", 503, "Please reduce your request rate."), UNAVAILABLE, True, "busy"),
    ],
)
def test_each_layers_shortage(error: Exception, code: grpc.StatusCode, retry_later: bool, said: str) -> None:
    shortage = shortage_of(error)
    assert shortage is not None
    assert (shortage.code, shortage.retry_later) == (code, retry_later)
    assert said in shortage.message


def test_a_shortage_is_found_behind_the_error_it_caused() -> None:
    try:
        try:
            raise s3_error("XMinioStorageFull", 507)
        except ClientError as inner:
            raise S3UploadFailedError(f"Failed to upload model.zip to models/1.0: {inner}") from None
    except S3UploadFailedError as outer:  # boto3's upload_file, raised while handling botocore's error
        shortage = shortage_of(outer)
    assert shortage is not None
    assert shortage.resource == "object_store"

    def clean_up_after_a_full_disk() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("cleanup failed too") from None

    with pytest.raises(RuntimeError) as caught:
        clean_up_after_a_full_disk()
    assert shortage_of(caught.value) is not None


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        OSError(errno.ENOENT, "No such file or directory"),
        psycopg.errors.UniqueViolation("duplicate key"),
        s3_error("NoSuchKey", 404),
        sqlite3.IntegrityError("UNIQUE constraint failed"),
    ],
)
def test_other_errors_are_no_shortage(error: Exception) -> None:
    assert shortage_of(error) is None


class Full(pb_grpc.DetectorServiceServicer):
    async def Detect(self, request: pb.DetectRequest, context: grpc.aio.ServicerContext) -> pb.DetectResponse:
        if request.options.camera_id == "full":
            raise OSError(errno.ENOSPC, "No space left on device", "/data/outbox/normal/.1.item.tmp")
        raise OSError(errno.EACCES, "Permission denied", "/data/secret")


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    settings = ServiceSettings(port=0, data_dir=tmp_path)
    spec = ServiceSpec(name="detector", mounts=[Mount.generated(Full(), pb_grpc, pb, "DetectorService")])
    server = GrpcServer(spec, settings)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)


async def test_every_rpc_answers_a_full_disk_with_resource_exhausted(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)
    before = REGISTRY.get_sample_value("visionloop_resource_shortages_total", {"resource": "disk"}) or 0.0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Detect(pb.DetectRequest(options=pb.DetectOptions(camera_id="full")))
    assert caught.value.code() is EXHAUSTED
    assert caught.value.details() == (
        "no space left on the server's disk: free space on its data volume (or raise its quota), then try again"
    )
    assert REGISTRY.get_sample_value("visionloop_resource_shortages_total", {"resource": "disk"}) == before + 1

    with pytest.raises(grpc.aio.AioRpcError) as caught:  # any other OS error stays an internal one
        await stub.Detect(pb.DetectRequest())
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "/data/secret" not in caught.value.details()
