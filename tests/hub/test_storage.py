"""The object stores: listing on both; the S3 store against the tests' S3 server (radosgw): the small
put it signs itself, its errors and retries."""

from __future__ import annotations

import http.client
import http.server
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.hub.conftest import partial_writes, start_partial_write
from visionloop.lib import storage
from visionloop.lib.storage import BlobNotFound, LocalObjectStore, ObjectStore, S3ObjectStore
from visionloop.testing.ports import free_port
from visionloop.testing.servers import s3_server, s3_server_kind

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


def store_for(
    endpoint: str, s3_settings: dict[str, str], bucket: str = "store-tests", prefix: str = ""
) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint, bucket, s3_settings["s3_access_key_id"], s3_settings["s3_secret_access_key"], prefix=prefix
    )


@pytest.fixture
def store(s3_settings: dict[str, str]) -> S3ObjectStore:
    made = store_for(s3_settings["s3_endpoint"], s3_settings)
    made.ensure_bucket()
    return made


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_list_keys_names_a_folder_s_blobs_and_when_they_were_written(
    kind: str, tmp_path: Path, s3_settings: dict[str, str]
) -> None:
    made: ObjectStore
    if kind == "s3":  # under a store prefix, which the listed keys leave out
        s3 = store_for(s3_settings["s3_endpoint"], s3_settings, "list-tests", prefix="tenant-a")
        s3.ensure_bucket()
        made = s3
    else:
        made = LocalObjectStore(tmp_path / "blobs")
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 keeps whole seconds
    for key in ("images/ab/one", "images/cd/two", "images-old/x", "models/m.zip"):
        made.put_bytes(key, b"data")
    if kind == "folder":  # a write a crash interrupted is not a blob
        (tmp_path / "blobs" / "images" / "ab" / ".three.0badf00d.tmp").write_bytes(b"half writ")
    listed = dict(made.list_keys("images/"))
    assert sorted(listed) == ["images/ab/one", "images/cd/two"]
    for key, modified in listed.items():
        assert before <= modified <= datetime.now(UTC) + timedelta(seconds=1)
        assert abs(made.last_modified(key) - modified) < timedelta(seconds=2)
    assert list(made.list_keys("nothing/")) == []
    with pytest.raises(BlobNotFound):
        made.last_modified("images/ab/none")
    with pytest.raises(ValueError, match="a folder ending in '/'"):
        list(made.list_keys("images"))


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_discard_partial_writes_removes_the_unfinished_writes_a_crash_left(
    kind: str, tmp_path: Path, s3_settings: dict[str, str]
) -> None:
    made: ObjectStore
    if kind == "s3":
        s3 = store_for(s3_settings["s3_endpoint"], s3_settings, "partial-tests", prefix="tenant-a")
        s3.ensure_bucket()
        other = store_for(s3_settings["s3_endpoint"], s3_settings, "partial-tests", prefix="tenant-b")
        start_partial_write(other, "models/elsewhere.zip")  # another store's prefix: not ours to abort
        made = s3
    else:
        made = LocalObjectStore(tmp_path / "blobs")
    made.put_bytes("images/ab/done", b"complete")
    start_partial_write(made, "images/ab/cut")
    start_partial_write(made, "models/acme/weeds/1.0/onnx.zip")
    before = partial_writes(made)
    assert made.discard_partial_writes(datetime.now(UTC) - timedelta(minutes=10)) == 0  # may still be under way
    assert partial_writes(made) == before
    assert made.discard_partial_writes(datetime.now(UTC) + timedelta(seconds=2)) == 2
    assert partial_writes(made) == before - 2
    assert made.read_bytes("images/ab/done") == b"complete"
    assert sorted(key for key, _ in made.list_keys("images/")) == ["images/ab/done"]
    assert made.discard_partial_writes(datetime.now(UTC) + timedelta(seconds=2)) == 0


class BusyStore(http.server.BaseHTTPRequestHandler):
    """Answers the first ``refuse`` PUTs with 503 SlowDown, then relays every request to ``upstream``."""

    refuse: ClassVar[int] = 0
    upstream: ClassVar[str] = ""
    puts: ClassVar[int] = 0

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).puts += 1
        if type(self).puts <= type(self).refuse:
            self.send_response(503)
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        target = urlsplit(type(self).upstream)
        relay = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        relay.request("PUT", self.path, body=body, headers=dict(self.headers.items()))
        answer = relay.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        relay.close()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def busy_store(s3_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[type[BusyStore]]:
    """A busy S3 endpoint in front of the S3 server on loopback; back-off shortened to keep the test quick."""
    monkeypatch.setattr(storage, "MAX_BACKOFF_SECONDS", 0.01)
    handler = type("Busy", (BusyStore,), {"upstream": s3_settings["s3_endpoint"], "puts": 0, "refuse": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_put_bytes_round_trip_and_put_again(store: S3ObjectStore) -> None:
    data = os.urandom(100_000)
    store.put_bytes("images/ab/abc", data)
    store.put_bytes("images/ab/abc", data)  # content-addressed: putting the same bytes again is harmless
    assert store.read_bytes("images/ab/abc") == data
    assert store.size("images/ab/abc") == len(data)
    assert b"".join(store.read_chunks("images/ab/abc", offset=10, chunk_bytes=4096)) == data[10:]


def test_a_refused_put_raises_the_client_error_put_object_raises(s3_settings: dict[str, str]) -> None:
    missing = store_for(s3_settings["s3_endpoint"], s3_settings, bucket="no-such-bucket")
    with pytest.raises(ClientError) as caught:
        missing.put_bytes("images/ab/abc", b"bytes")
    assert caught.value.operation_name == "PutObject"
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_busy_store_is_retried(store: S3ObjectStore, s3_settings: dict[str, str], busy_store) -> None:
    busy_store.refuse = 2
    data = os.urandom(5_000)
    store_for(busy_store.endpoint, s3_settings).put_bytes("images/cd/cde", data)
    assert busy_store.puts == 3
    assert store.read_bytes("images/cd/cde") == data


def test_a_store_that_stays_busy_fails_after_the_last_attempt(
    store: S3ObjectStore, s3_settings: dict[str, str], busy_store
) -> None:
    busy_store.refuse = 100
    with pytest.raises(ClientError) as caught:
        store_for(busy_store.endpoint, s3_settings).put_bytes("images/ef/efg", b"bytes")
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert busy_store.puts == storage.PUT_ATTEMPTS
    assert not store.exists("images/ef/efg")


def test_an_unreachable_store_fails_after_the_last_attempt(
    s3_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "MAX_BACKOFF_SECONDS", 0.01)
    with pytest.raises(EndpointConnectionError):
        store_for(f"http://127.0.0.1:{free_port()}", s3_settings).put_bytes("images/gh/ghi", b"bytes")


@pytest.fixture(scope="module")
def signed_s3(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """An S3 server checking every request's SigV4 signature, with an access key it issued: radosgw
    always does; moto when told to."""
    if s3_server_kind() == "radosgw":
        yield request.getfixturevalue("s3_settings")
        return
    with s3_server(check_signatures=True) as settings:
        yield settings


def test_put_bytes_signs_as_s3_checks_it(signed_s3: dict[str, str]) -> None:
    """The server recomputes each signature: keys with spaces, non-ASCII and reserved characters (under a
    prefix) go up, are listed under their own name and read back; boto3 reads them with its own
    signing, so a put under a differently encoded name would not be found."""
    store = store_for(signed_s3["s3_endpoint"], signed_s3, "signed", prefix="team a/ü+x=1")
    store.ensure_bucket()
    for key in ["images/ab/abc", "models/v 1.2/model (1).zip", "exports/ümlaut&co;=x/a+b.zip"]:
        data = os.urandom(3_000)
        store.put_bytes(key, data)
        assert store.read_bytes(key) == data
    listed = store._client.list_objects_v2(Bucket="signed")["Contents"]
    assert "team a/ü+x=1/exports/ümlaut&co;=x/a+b.zip" in {item["Key"] for item in listed}


def test_a_wrong_secret_is_refused_without_retries(signed_s3: dict[str, str], busy_store) -> None:
    busy_store.upstream = signed_s3["s3_endpoint"]  # counts the attempts on their way to the server
    wrong = S3ObjectStore(busy_store.endpoint, "signed", signed_s3["s3_access_key_id"], "not the secret")
    with pytest.raises(ClientError) as caught:
        wrong.put_bytes("images/ab/abc", b"bytes")
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert busy_store.puts == 1
