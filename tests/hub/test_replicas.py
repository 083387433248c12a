"""Two hub replicas on one PostgreSQL database and one S3 bucket, as the Helm chart runs them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.harness import eventually
from tests.hub.conftest import REF, HubClient, cluster_storage, running_hub, upload_takes_its_turn_after
from tests.hub.pictures import picture
from tests.hub.test_datasets import generated_coco, import_zip
from visionloop.common.v1 import annotation_pb2, geometry_pb2
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2
from visionloop.server.hub import blob_fence, datasets
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.images import image_key
from visionloop.server.hub.sweeper import sweep_images

# Refused inside the row's transaction, after the blob was put: the project has no such category.
UNKNOWN_CATEGORY = annotation_pb2.Annotation(
    category_name="no-such-category",
    shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=2, width=3, height=4)),
    creator=annotation_pb2.Creator(person="anna"),
)


@pytest.fixture
async def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[HubClient, HubClient]]:
    storage = cluster_storage(request)
    settings = [
        LoopSettings(port=0, host="127.0.0.1", data_dir=tmp_path / name, hub_replicas=2, **storage)
        for name in ("a", "b")
    ]
    async with running_hub(settings[0]) as first, running_hub(settings[1]) as second:
        await first.projects.CreateProject(
            project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
        )
        yield first, second


def upload_request(data: bytes, *annotations: annotation_pb2.Annotation) -> pb.UploadImageRequest:
    return pb.UploadImageRequest(ref=REF, image=pb.ImageUpload(data=data, annotations=annotations))


async def test_a_failed_upload_on_one_replica_keeps_the_blob_another_replica_is_storing(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica B has put the bytes and waits to commit its row while replica A's upload of the same
    bytes fails: A's per-hash lock does not cover B, so A must not delete the blob."""
    a, b = replicas
    data = picture(60)
    failed = asyncio.Event()
    write_grouped = b.hub.db.write_grouped

    async def held_back(fn):  # B's row waits until A's upload has failed (or 5 s, if it cannot)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(failed.wait(), 5.0)
        return await write_grouped(fn)

    monkeypatch.setattr(b.hub.db, "write_grouped", held_back)

    async def refused_by_a() -> None:
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await a.images.UploadImage(upload_request(data, UNKNOWN_CATEGORY))
            assert "no-such-category" in (caught.value.details() or "")
        finally:
            failed.set()

    stored_by_b, _ = await asyncio.gather(b.images.UploadImage(upload_request(data)), refused_by_a())
    assert not stored_by_b.duplicate
    assert await asyncio.to_thread(b.hub.store.read_bytes, image_key(stored_by_b.metadata.id)) == data


async def test_with_several_replicas_a_failed_upload_leaves_its_blob_to_the_sweep(
    replicas: tuple[HubClient, HubClient],
) -> None:
    a, _ = replicas
    data = picture(61)
    key = image_key(hashlib.sha256(data).hexdigest())
    with pytest.raises(grpc.aio.AioRpcError):
        await a.images.UploadImage(upload_request(data, UNKNOWN_CATEGORY))
    assert await asyncio.to_thread(a.hub.store.exists, key)  # another replica might have needed it

    a.hub.clock_offset = timedelta(hours=2)
    assert (await sweep_images(a.hub, timedelta(hours=1))).deleted == 1
    assert not await asyncio.to_thread(a.hub.store.exists, key)


async def test_one_replica_sweeps_at_a_time(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sweep lists the whole store: while replica A sweeps, replica B's sweep stands aside."""
    a, b = replicas
    listing = threading.Event()
    go_on = threading.Event()
    list_keys = a.hub.store.list_keys

    def slow_listing(prefix: str):
        listing.set()
        go_on.wait(10)
        yield from list_keys(prefix)

    monkeypatch.setattr(a.hub.store, "list_keys", slow_listing)
    sweeping = asyncio.create_task(sweep_images(a.hub, timedelta(hours=1)))
    await eventually(listing.is_set, what="A's listing")
    assert not (await sweep_images(b.hub, timedelta(hours=1))).swept
    go_on.set()
    assert (await sweeping).swept
    assert (await sweep_images(b.hub, timedelta(hours=1))).swept  # A is done: B's turn


async def test_a_failed_sweep_lets_the_next_one_run(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's lock lives on a connection that is closed however the sweep ends."""
    a, b = replicas

    def unreachable(prefix: str):
        raise ConnectionError("the store is away")
        yield  # a generator, as list_keys is

    monkeypatch.setattr(a.hub.store, "list_keys", unreachable)
    with pytest.raises(ConnectionError):
        await sweep_images(a.hub, timedelta(hours=1))
    assert (await sweep_images(b.hub, timedelta(hours=1))).swept


# --- the sweep of one replica and the uploads of another -------------------------------------

GRACE = timedelta(hours=1)


async def upload(hub: HubClient, data: bytes) -> pb.UploadImageResponse:
    return await hub.images.UploadImage(upload_request(data))


async def stored_bytes(hub: HubClient, data: bytes) -> bytes | None:
    key = image_key(hashlib.sha256(data).hexdigest())
    return (
        await asyncio.to_thread(hub.hub.store.read_bytes, key)
        if await asyncio.to_thread(hub.hub.store.exists, key)
        else None
    )


async def swept_before_its_commit(
    a: HubClient, b: HubClient, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> asyncio.Task[pb.UploadImageResponse]:
    """B's upload of ``data``, let go after A's sweep (to which every blob looks old) deleted the
    bytes between B's put and B's commit."""
    swept = asyncio.Event()
    put_done = upload_takes_its_turn_after(b, swept, monkeypatch)
    a.hub.clock_offset = timedelta(hours=2)
    uploading = asyncio.create_task(upload(b, data))
    await asyncio.wait_for(put_done.wait(), 10)
    assert (await sweep_images(a.hub, GRACE)).deleted == 1
    assert await stored_bytes(b, data) is None
    swept.set()
    return uploading


async def test_an_upload_whose_bytes_another_replica_swept_after_its_put_stores_them_again(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """B has put the bytes and not committed its row when A's sweep deletes them (to A every blob
    looks old, as an orphan's would if B's put landed just after A's last look). B's per-process
    deletion count does not see A's sweep; the sweep's log does, and B puts the bytes again."""
    a, b = replicas
    data = picture(70)
    response = await (await swept_before_its_commit(a, b, data, monkeypatch))
    assert not response.duplicate
    assert await stored_bytes(b, data) == data
    assert b.hub.swept_seq >= 1  # what B learnt fences its next uploads


async def test_an_upload_that_cannot_outrun_the_sweep_is_aborted_with_nothing_recorded(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the sweep to delete the bytes again after every new put (here: no new put is allowed),
    the upload gives up with ABORTED, records nothing, and says to upload again."""
    a, b = replicas
    monkeypatch.setattr(blob_fence, "ATTEMPTS", 1)
    data = picture(74)
    uploading = await swept_before_its_commit(a, b, data, monkeypatch)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await uploading
    assert caught.value.code() is grpc.StatusCode.ABORTED
    assert hashlib.sha256(data).hexdigest() in (caught.value.details() or "")
    assert "upload it again" in (caught.value.details() or "")
    assert not (await b.images.ListImages(pb.ListImagesRequest(ref=REF))).images
    assert (await upload(b, data)).metadata.id == hashlib.sha256(data).hexdigest()  # and it still can
    assert await stored_bytes(b, data) == data


async def test_an_upload_whose_put_lands_while_another_replica_sweeps_the_bytes_stores_them_again(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A's sweep has found an old orphan unreferenced and looked at its time when B puts the same
    bytes (a robot sending the frame again) and commits: B's row waits for A's delete, then finds it
    in the sweep's log and puts the bytes again."""
    a, b = replicas
    data = picture(71)
    key = image_key(hashlib.sha256(data).hexdigest())
    await asyncio.to_thread(a.hub.store.put_bytes, key, data)  # the orphan of an earlier attempt
    a.hub.clock_offset = timedelta(hours=2)
    loop = asyncio.get_running_loop()
    put_by_b = threading.Event()
    b_put = b.hub.store.put_bytes

    def watched_put(key: str, data: bytes) -> None:
        b_put(key, data)
        put_by_b.set()

    monkeypatch.setattr(b.hub.store, "put_bytes", watched_put)
    uploads: list[asyncio.Future[pb.UploadImageResponse]] = []
    a_last_modified = a.hub.store.last_modified

    def b_uploads_meanwhile(key: str):  # in A's database thread, between its look and its delete
        modified = a_last_modified(key)
        if not uploads:
            uploads.append(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(upload(b, data), loop), loop=loop))
            assert put_by_b.wait(10), "B's put"
        return modified

    monkeypatch.setattr(a.hub.store, "last_modified", b_uploads_meanwhile)
    assert (await sweep_images(a.hub, GRACE)).deleted == 1
    response = await asyncio.wait_for(uploads[0], 10)
    assert not response.duplicate
    assert await stored_bytes(b, data) == data


async def test_an_import_whose_bytes_another_replica_swept_after_its_put_stores_them_again(
    replicas: tuple[HubClient, HubClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an upload: B's import has put a batch's bytes and not committed its rows when A's sweep
    deletes them; B finds the deletions in the sweep's log and puts those bytes again."""
    a, b = replicas
    archive, _ = generated_coco(3, ["weed"])
    put_blobs = datasets.put_blobs
    put_done, swept = threading.Event(), threading.Event()

    def put_then_wait(*args, **kwargs):
        created = put_blobs(*args, **kwargs)
        if not put_done.is_set():
            put_done.set()
            assert swept.wait(10), "A's sweep"
        return created

    monkeypatch.setattr(datasets, "put_blobs", put_then_wait)
    a.hub.clock_offset = timedelta(hours=2)
    importing = asyncio.create_task(import_zip(b, REF, archive))
    await eventually(put_done.is_set, what="B's puts")
    assert (await sweep_images(a.hub, GRACE)).deleted == 3
    swept.set()
    response = await importing
    assert response.images_added == 3
    images = await b.images.ListImages(pb.ListImagesRequest(ref=REF))
    assert len(images.images) == 3
    for image in images.images:
        key = image_key(image.id)
        assert await asyncio.to_thread(b.hub.store.exists, key), f"{key} is gone"


async def test_the_sweep_forgets_its_deletions_once_no_upload_can_be_fenced_by_them(
    replicas: tuple[HubClient, HubClient],
) -> None:
    """An entry of the log can fence only an upload that put its bytes before the deletion: one a
    day old is dropped."""
    a, _ = replicas
    for seed in (72, 73):
        data = picture(seed)
        await asyncio.to_thread(a.hub.store.put_bytes, image_key(hashlib.sha256(data).hexdigest()), data)
    a.hub.clock_offset = timedelta(hours=2)
    assert (await sweep_images(a.hub, GRACE)).deleted == 2
    assert await a.hub.db.read(swept_blobs) == 2  # an upload that put the bytes before may still commit

    a.hub.clock_offset = blob_fence.KEEP_SWEPT + timedelta(hours=3)
    assert (await sweep_images(a.hub, GRACE)).deleted == 0
    assert await a.hub.db.read(swept_blobs) == 0


def swept_blobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(schema.SweptBlob)) or 0
