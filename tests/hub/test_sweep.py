"""The blob sweep: image blobs that no row references are deleted once old enough; nothing in use is."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import timedelta

import grpc
import pytest
from prometheus_client import REGISTRY

from tests.harness import eventually
from tests.hub.conftest import (
    HubClient,
    partial_writes,
    running_hub,
    start_partial_write,
    upload_takes_its_turn_after,
)
from tests.hub.pictures import picture
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.images import image_key
from visionloop.server.hub.sweeper import sweep_images

GRACE = timedelta(hours=1)


async def upload(hub: HubClient, ref: project_service_pb2.ProjectRef, data: bytes) -> pb.UploadImageResponse:
    return await hub.images.UploadImage(pb.UploadImageRequest(ref=ref, image=pb.ImageUpload(data=data)))


async def put_orphan(hub: HubClient, seed: int) -> str:
    """A blob stored the way an upload stores one, with no row (as a crash before the commit leaves it)."""
    data = picture(seed)
    key = image_key(hashlib.sha256(data).hexdigest())
    await asyncio.to_thread(hub.hub.store.put_bytes, key, data)
    return key


async def exists(hub: HubClient, key: str) -> bool:
    return await asyncio.to_thread(hub.hub.store.exists, key)


async def test_the_sweep_deletes_old_blobs_that_no_row_references(hub: HubClient, project) -> None:
    kept = image_key((await upload(hub, project, picture(10))).metadata.id)
    orphans = [await put_orphan(hub, seed) for seed in (11, 12)]
    others = ["images/notes.txt", "models/acme/weeds/1.0/onnx.zip"]  # not image blobs: never touched
    for key in others:
        await asyncio.to_thread(hub.hub.store.put_bytes, key, b"not an image")

    fresh = await sweep_images(hub.hub, GRACE)
    assert (fresh.listed, fresh.deleted) == (4, 0)  # everything was written just now

    hub.hub.clock_offset = timedelta(hours=2)
    swept = await sweep_images(hub.hub, GRACE)
    assert (swept.listed, swept.deleted) == (4, 2)
    assert [await exists(hub, key) for key in orphans] == [False, False]
    assert await exists(hub, kept)
    assert [await exists(hub, key) for key in others] == [True, True]
    image = await hub.images.GetImage(pb.GetImageRequest(ref=project, image_id=kept.rsplit("/", 1)[1]))
    assert image.metadata.size_bytes > 0
    assert (await sweep_images(hub.hub, GRACE)).deleted == 0  # nothing left to collect


async def test_a_cancelled_upload_leaves_a_blob_the_sweep_collects(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client gives up while the blob is being put: the put completes without a row to use it."""
    data = picture(20)
    key = image_key(hashlib.sha256(data).hexdigest())
    put = hub.hub.store.put_bytes

    def slow_put(key: str, data: bytes) -> None:
        time.sleep(0.6)
        put(key, data)

    monkeypatch.setattr(hub.hub.store, "put_bytes", slow_put)
    request = pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=data))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.UploadImage(request, timeout=0.2)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await eventually(lambda: hub.hub.store.exists(key), what="the put")
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert list(listed.images) == []

    hub.hub.clock_offset = timedelta(hours=2)
    assert (await sweep_images(hub.hub, GRACE)).deleted == 1
    assert not await exists(hub, key)


async def test_a_blob_whose_row_is_being_committed_survives_the_sweep(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep finds the blob of an upload whose row is not committed yet: it waits for the upload
    (its per-hash lock), looks again, and keeps the blob."""
    data = picture(30)
    sha256 = hashlib.sha256(data).hexdigest()
    release = asyncio.Event()
    write_grouped = hub.hub.db.write_grouped

    async def held_back(fn):
        await release.wait()
        return await write_grouped(fn)

    sweep_waits = asyncio.Event()
    hold = hub.hub.blob_locks.hold
    holders: list[str] = []

    def watched(key: str):
        holders.append(key)
        if holders.count(sha256) == 2:  # the upload took the lock first; this is the sweep
            sweep_waits.set()
        return hold(key)

    monkeypatch.setattr(hub.hub.db, "write_grouped", held_back)
    monkeypatch.setattr(hub.hub.blob_locks, "hold", watched)
    uploading = asyncio.create_task(upload(hub, project, data))
    await eventually(lambda: hub.hub.store.exists(image_key(sha256)), what="the put")  # its row waits

    hub.hub.clock_offset = timedelta(hours=2)
    sweeping = asyncio.create_task(sweep_images(hub.hub, GRACE))
    await asyncio.wait_for(sweep_waits.wait(), 10)
    release.set()
    response = await uploading
    assert (await sweeping).deleted == 0
    assert not response.duplicate
    assert await exists(hub, image_key(sha256))


async def test_an_upload_whose_put_landed_before_the_sweep_deleted_its_bytes_puts_them_again(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep deletes bytes an upload has put but not yet taken its turn on (here every blob looks
    old to it, as an orphan's would if the put landed just after the sweep's last look). The upload
    takes its turn after the sweep and stores the bytes again."""
    data = picture(35)
    key = image_key(hashlib.sha256(data).hexdigest())
    swept = asyncio.Event()
    put_done = upload_takes_its_turn_after(hub, swept, monkeypatch)
    hub.hub.clock_offset = timedelta(hours=2)  # every blob looks old to the sweep, the upload's too
    uploading = asyncio.create_task(upload(hub, project, data))
    await asyncio.wait_for(put_done.wait(), 10)
    assert (await sweep_images(hub.hub, GRACE)).deleted == 1
    assert not await exists(hub, key)
    swept.set()
    response = await uploading
    assert not response.duplicate
    assert await exists(hub, key)


async def test_a_blob_written_again_after_the_listing_survives_the_sweep(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload on another replica puts the same bytes again after the sweep listed them (old then):
    the sweep looks at the blob once more before deleting it, and keeps it."""
    key = await put_orphan(hub, 50)
    list_keys = hub.hub.store.list_keys

    def listed_earlier(prefix: str):
        for listed, modified in list_keys(prefix):
            yield listed, modified - timedelta(hours=2)

    monkeypatch.setattr(hub.hub.store, "list_keys", listed_earlier)
    assert (await sweep_images(hub.hub, GRACE)).deleted == 0
    assert await exists(hub, key)


async def test_the_sweep_discards_the_unfinished_writes_a_crash_left(hub: HubClient) -> None:
    """A partial file in the data folder, or an S3 multipart upload (a model zip) never completed."""
    await asyncio.to_thread(start_partial_write, hub.hub.store, "models/acme/weeds/1.0/onnx.zip")
    before = REGISTRY.get_sample_value("visionloop_hub_partial_writes_discarded_total") or 0.0

    assert (await sweep_images(hub.hub, GRACE)).partial == 0  # it may still be under way
    assert await asyncio.to_thread(partial_writes, hub.hub.store) == 1

    hub.hub.clock_offset = timedelta(hours=2)
    assert (await sweep_images(hub.hub, GRACE)).partial == 1
    assert await asyncio.to_thread(partial_writes, hub.hub.store) == 0
    assert REGISTRY.get_sample_value("visionloop_hub_partial_writes_discarded_total") == before + 1


def swept_total() -> float:
    return REGISTRY.get_sample_value("visionloop_hub_blobs_swept_total") or 0.0


@pytest.mark.parametrize("interval", [0.2, 0.0], ids=["every-0.2s", "off"])
async def test_the_hub_sweeps_on_its_schedule_unless_turned_off(hub_settings: LoopSettings, interval: float) -> None:
    settings = hub_settings.model_copy(update={"blob_sweep_seconds": interval, "blob_sweep_grace_seconds": 0.0})
    before = swept_total()
    async with running_hub(settings) as client:
        key = await put_orphan(client, 40)
        if interval:
            await eventually(lambda: not client.hub.store.exists(key), what="the sweep")
        else:
            await asyncio.sleep(1.0)
            assert await exists(client, key)
    assert swept_total() == before + (1 if interval else 0)


def test_a_negative_sweep_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        LoopSettings(VISIONLOOP_BLOB_SWEEP_GRACE_SECONDS="-1")
