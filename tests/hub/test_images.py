"""Images through the hub: validation by decoding, dedupe, metadata, queries, download, batch upload."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import pytest
from PIL import Image

from tests.hub.conftest import HubClient, upload_takes_its_turn_after
from tests.hub.pictures import picture
from visionloop.common.v1 import annotation_pb2, category_pb2, detection_pb2, geometry_pb2, image_pb2, transfer_pb2
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2
from visionloop.server.hub.images import image_key

# A box annotation the hub refuses (INVALID_ARGUMENT, "negative size"): an upload that fails late.
NEGATIVE_BOX = annotation_pb2.Annotation(
    category_name="weed",
    shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=2, width=-3, height=4)),
    creator=annotation_pb2.Creator(person="anna"),
)


async def upload(hub: HubClient, ref, data: bytes, **metadata) -> pb.UploadImageResponse:
    return await hub.images.UploadImage(
        pb.UploadImageRequest(ref=ref, image=pb.ImageUpload(data=data, metadata=image_pb2.ImageMetadata(**metadata)))
    )


async def test_same_bytes_twice_is_one_image_with_merged_tags(hub: HubClient, project) -> None:
    data = picture(1)
    first = await upload(hub, project, data, tags=["field-a", "robot-7"], camera_id="front")
    second = await upload(hub, project, data, tags=["robot-7", "dusk"], camera_id="rear")
    assert not first.duplicate
    assert second.duplicate
    assert first.metadata.id == second.metadata.id == hashlib.sha256(data).hexdigest()
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert len(listed.images) == 1
    assert list(listed.images[0].tags) == ["dusk", "field-a", "robot-7"]
    assert listed.images[0].camera_id == "front"  # metadata of the first upload is kept
    assert (listed.images[0].width, listed.images[0].height) == (64, 48)
    assert listed.images[0].content_type == "image/jpeg"
    assert listed.images[0].state == image_pb2.IMAGE_STATE_INBOX


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        (b"definitely not an image", grpc.StatusCode.INVALID_ARGUMENT, "neither JPEG nor PNG"),
        (b"", grpc.StatusCode.INVALID_ARGUMENT, "empty"),
        (picture(2)[:-400], grpc.StatusCode.INVALID_ARGUMENT, "does not decode"),
        (picture(3, fmt="GIF"), grpc.StatusCode.INVALID_ARGUMENT, "GIF is not accepted"),
    ],
)
async def test_bad_images_are_refused(hub: HubClient, project, data: bytes, code, fragment: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, project, data)
    assert caught.value.code() is code
    assert fragment in caught.value.details()
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=project))).images
    assert (await upload(hub, project, picture(4))).metadata.id  # still serving


async def test_size_limits(hub: HubClient, project) -> None:
    hub.hub.max_image_bytes = 2000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, project, picture(5, 256, 256))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit is 2000 bytes" in caught.value.details()
    hub.hub.max_image_bytes = 50 * 1024 * 1024
    hub.hub.max_image_pixels = 1000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, project, picture(6, 64, 48))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "64x48 pixels" in caught.value.details()


async def test_unknown_project(hub: HubClient) -> None:
    ref = project_service_pb2.ProjectRef(organization="acme", project="nope")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, ref, picture(7))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "acme/nope does not exist" in caught.value.details()


async def _category(hub: HubClient, project, name: str, type_: int) -> category_pb2.Category:
    request = project_service_pb2.CreateCategoryRequest(
        ref=project, category=category_pb2.Category(name=name, type=type_)
    )
    return (await hub.projects.CreateCategory(request)).category


async def test_upload_with_annotations_and_detections(hub: HubClient, project) -> None:
    weed = await _category(hub, project, "weed", category_pb2.CATEGORY_TYPE_BOX)
    annotation = annotation_pb2.Annotation(
        category_name="weed",
        shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=2, width=10, height=12)),
        creator=annotation_pb2.Creator(person="anna"),
    )
    detections = detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_id=weed.id,
                category_name="weed",
                confidence=0.42,
                model_version="1.0",
                box=geometry_pb2.Box(x=3, y=4, width=5, height=6),
            )
        ]
    )
    response = await hub.images.UploadImage(
        pb.UploadImageRequest(
            ref=project,
            image=pb.ImageUpload(data=picture(8), annotations=[annotation], detections=detections),
        )
    )
    assert response.metadata.annotation_count == 1
    assert response.metadata.detection_count == 1
    got = await hub.images.GetImage(pb.GetImageRequest(ref=project, image_id=response.metadata.id, include_labels=True))
    assert got.annotations[0].category_id == weed.id
    assert got.annotations[0].shape.box.height == 12
    assert got.annotations[0].creator.person == "anna"
    assert got.detections.boxes[0].confidence == pytest.approx(0.42)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.UploadImage(
            pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=picture(9), annotations=[NEGATIVE_BOX]))
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "negative size" in caught.value.details()
    # Nothing of the refused upload stays: no row and no blob.
    sha = hashlib.sha256(picture(9)).hexdigest()
    assert not hub.hub.store.exists(image_key(sha))
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert sha not in {i.id for i in listed.images}

    unknown = annotation_pb2.Annotation(
        category_name="tree",
        shape=geometry_pb2.Shape(box=geometry_pb2.Box(x=1, y=2, width=3, height=4)),
        creator=annotation_pb2.Creator(person="anna"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.UploadImage(
            pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=picture(10), annotations=[unknown]))
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "'tree' does not exist" in caught.value.details()


async def test_queries_filters_order_and_pagination(hub: HubClient, project) -> None:
    ids = []
    for i in range(7):
        response = await upload(
            hub,
            project,
            picture(100 + i),
            tags=["even" if i % 2 == 0 else "odd", "all"],
            camera_id="front" if i < 4 else "rear",
            priority=float(i % 3),
        )
        ids.append(response.metadata.id)

    async def collect(**kwargs) -> list[str]:
        seen, token = [], ""
        while True:
            page = await hub.images.ListImages(
                pb.ListImagesRequest(ref=project, page_size=3, page_token=token, **kwargs)
            )
            assert len(page.images) <= 3
            seen += [image.id for image in page.images]
            token = page.next_page_token
            if not token:
                return seen

    assert await collect() == list(reversed(ids))
    assert await collect(order=pb.IMAGE_ORDER_OLDEST) == ids
    by_priority = await collect(order=pb.IMAGE_ORDER_PRIORITY)
    assert by_priority == sorted(ids, key=lambda i: (-(ids.index(i) % 3), -ids.index(i)))
    assert await collect(filter=pb.ImageFilter(tags=["even"])) == [ids[6], ids[4], ids[2], ids[0]]
    assert await collect(filter=pb.ImageFilter(tags=["even", "all"], camera_id="rear")) == [ids[6], ids[4]]
    assert await collect(filter=pb.ImageFilter(has_annotations=True)) == []
    assert len(await collect(filter=pb.ImageFilter(has_annotations=False))) == 7

    await hub.images.UpdateImage(
        pb.UpdateImageRequest(ref=project, image_id=ids[1], state=image_pb2.IMAGE_STATE_ANNOTATE, priority=9.5)
    )
    await hub.images.UpdateImage(
        pb.UpdateImageRequest(ref=project, image_id=ids[3], state=image_pb2.IMAGE_STATE_ANNOTATE)
    )
    queue = await hub.images.ListAnnotationQueue(pb.ListAnnotationQueueRequest(ref=project))
    assert [i.id for i in queue.images] == [ids[1], ids[3]]
    assert await collect(filter=pb.ImageFilter(states=[image_pb2.IMAGE_STATE_ANNOTATE])) == [ids[3], ids[1]]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.ListImages(pb.ListImagesRequest(ref=project, page_token="garbage!"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.ListImages(pb.ListImagesRequest(ref=project, page_size=5000))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_download_returns_the_exact_bytes(hub: HubClient, project) -> None:
    datas = [picture(200, 1200, 900, fmt="PNG"), picture(201)]  # the PNG spans several chunks
    ids = [(await upload(hub, project, d)).metadata.id for d in datas]
    received: dict[str, bytearray] = {}
    current = ""
    async for message in hub.images.DownloadImages(pb.DownloadImagesRequest(ref=project, image_ids=ids)):
        if message.HasField("header"):
            current = message.header.name
            received[current] = bytearray()
        else:
            assert message.chunk.offset == len(received[current])
            received[current] += message.chunk.data
    assert [bytes(received[i]) for i in ids] == datas
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in hub.images.DownloadImages(pb.DownloadImagesRequest(ref=project, image_ids=["0" * 64])):
            pass
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_batch_upload_answers_per_image(hub: HubClient, project) -> None:
    good, bad = picture(300), b"not an image at all"

    async def stream() -> AsyncIterator[pb.UploadImagesRequest]:
        yield pb.UploadImagesRequest(ref=project)
        for sequence, data in enumerate([good, bad, good]):
            blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            yield pb.UploadImagesRequest(
                header=pb.ImageHeader(
                    sequence=sequence, blob=blob, metadata=image_pb2.ImageMetadata(tags=[f"s{sequence}"])
                )
            )
            for offset in range(0, len(data), 1000):
                yield pb.UploadImagesRequest(
                    chunk=transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + 1000])
                )

    results = [r async for r in hub.images.UploadImages(stream())]
    assert [r.sequence for r in results] == [0, 1, 2]
    assert results[0].error_code == 0
    assert not results[0].duplicate
    assert results[1].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "neither JPEG nor PNG" in results[1].error_message
    assert results[2].duplicate
    assert list(results[2].metadata.tags) == ["s0", "s2"]


async def test_batch_upload_with_a_corrupted_chunk(hub: HubClient, project) -> None:
    data = picture(301)

    async def stream() -> AsyncIterator[pb.UploadImagesRequest]:
        blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        yield pb.UploadImagesRequest(ref=project, header=pb.ImageHeader(sequence=1, blob=blob))
        corrupted = bytes([data[0] ^ 0xFF]) + data[1:]
        yield pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=corrupted))

    results = [r async for r in hub.images.UploadImages(stream())]
    assert results[0].error_code == grpc.StatusCode.DATA_LOSS.value[0]
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=project))).images


def _camera_frame(seed: int, progressive: bool = False) -> bytes:
    """A 640x480 JPEG that compresses like a camera frame (the hub decodes JPEGs at reduced scale)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((640, 480))
    out = io.BytesIO()
    coarse.save(out, format="JPEG", quality=90, progressive=progressive)
    return out.getvalue()


def _damaged(data: bytes, kind: str) -> bytes:
    if kind == "cut":  # the scan ends half-way
        return data[: len(data) // 2]
    if kind == "no-eoi":  # only the end-of-image marker is missing
        return data[:-2]
    if kind == "zeros":  # the second half overwritten
        return data[: len(data) // 2] + bytes(len(data) - len(data) // 2)
    raise AssertionError(kind)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("kind", ["cut", "no-eoi", "zeros"])
async def test_damaged_camera_jpegs_are_refused(hub: HubClient, project, progressive: bool, kind: str) -> None:
    """Reduced-scale decoding still reads every byte of the scan, so damage is still refused."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, project, _damaged(_camera_frame(7, progressive), kind))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in caught.value.details()
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=project))).images


async def test_corrupted_png_is_refused(hub: HubClient, project) -> None:
    data = bytearray(picture(8, 640, 480, fmt="PNG"))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros in the compressed image data
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(hub, project, bytes(data))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in caught.value.details()


async def test_camera_jpegs_keep_their_full_size(hub: HubClient, project) -> None:
    for seed, progressive in [(9, False), (10, True)]:
        metadata = (await upload(hub, project, _camera_frame(seed, progressive))).metadata
        assert (metadata.width, metadata.height, metadata.content_type) == (640, 480, "image/jpeg")


async def test_damaged_jpeg_in_a_batch_is_refused_alone(hub: HubClient, project) -> None:
    images = [_camera_frame(11), _damaged(_camera_frame(12), "cut"), _camera_frame(13)]

    async def stream() -> AsyncIterator[pb.UploadImagesRequest]:
        yield pb.UploadImagesRequest(ref=project)
        for sequence, data in enumerate(images):
            blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            yield pb.UploadImagesRequest(header=pb.ImageHeader(sequence=sequence, blob=blob))
            yield pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data))

    results = [r async for r in hub.images.UploadImages(stream())]
    assert [r.error_code for r in results] == [0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]
    assert "does not decode" in results[1].error_message
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert len(listed.images) == 2


async def test_concurrent_uploads_share_transactions_and_fail_alone(hub: HubClient, project) -> None:
    """Group commit: concurrent uploads of new, duplicate and undecodable images each get their own answer."""
    good = [picture(400 + i) for i in range(12)]
    bad = [b"not an image %d" % i for i in range(3)]
    answers = await asyncio.gather(
        *(upload(hub, project, data, tags=[f"t{i}"]) for i, data in enumerate(good + good[:4])),
        *(upload(hub, project, data) for data in bad),
        return_exceptions=True,
    )
    uploaded, refused = answers[: len(good) + 4], answers[len(good) + 4 :]
    assert all(isinstance(a, pb.UploadImageResponse) for a in uploaded)
    assert sum(not a.duplicate for a in uploaded) == len(good)  # type: ignore[union-attr]
    assert all(isinstance(a, grpc.aio.AioRpcError) for a in refused)
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert {i.id for i in listed.images} == {hashlib.sha256(d).hexdigest() for d in good}
    for data in good:
        read = b"".join(
            [
                r.chunk.data
                async for r in hub.images.DownloadImages(
                    pb.DownloadImagesRequest(ref=project, image_ids=[hashlib.sha256(data).hexdigest()])
                )
                if r.WhichOneof("part") == "chunk"
            ]
        )
        assert read == data


async def test_a_group_of_new_images_is_recorded_together(hub: HubClient, project) -> None:
    """Group commit's set-based path (``NewImage.run_together``): new images, the same bytes twice in
    one group, bytes stored before and an unknown project, each with its own answer."""
    from sqlalchemy import select

    from visionloop.runtime.errors import NotFound
    from visionloop.server.hub.db import schema
    from visionloop.server.hub.images import NewImage, decode_image

    before = await upload(hub, project, picture(500), tags=["old"])

    def new(seed: int, *tags: str, ref: project_service_pb2.ProjectRef = project) -> NewImage:
        image = decode_image(picture(seed), 1 << 30, 1 << 30)
        return NewImage(ref, image, image_pb2.ImageMetadata(tags=tags, camera_id="cam-7"))

    unknown = project_service_pb2.ProjectRef(organization="acme", project="nope")
    db = hub.hub.db
    seq = db.read_sync(lambda s: s.scalar(select(schema.Event.seq).order_by(schema.Event.seq.desc()).limit(1)))
    together = [new(501, "a"), new(502, "b"), new(501, "c"), new(500, "d")]
    outcomes = await asyncio.to_thread(db.write_many_sync, together)
    assert all(ok for ok, _ in outcomes)
    first, second, again, old = (value for _, value in outcomes)
    assert [first.duplicate, second.duplicate, again.duplicate, old.duplicate] == [False, False, True, True]
    assert again.metadata.id == first.metadata.id
    assert list(again.metadata.tags) == ["a", "c"]
    assert old.metadata.id == before.metadata.id
    assert list(old.metadata.tags) == ["d", "old"]
    assert first.metadata.camera_id == "cam-7"
    assert first.metadata.width == 64

    # A member that fails (unknown project) fails alone; the rest of its group commits.
    [(failed, error), (ok, last)] = await asyncio.to_thread(db.write_many_sync, [new(503, ref=unknown), new(504)])
    assert not failed
    assert isinstance(error, NotFound)
    assert ok
    assert not last.duplicate
    added = db.read_sync(
        lambda s: s.scalars(select(schema.Event.subject).where(schema.Event.seq > seq).order_by(schema.Event.seq)).all()
    )
    assert added == [first.metadata.id, second.metadata.id, last.metadata.id]  # one event per new image
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    by_id = {i.id: list(i.tags) for i in listed.images}
    assert by_id == {
        before.metadata.id: ["d", "old"],
        first.metadata.id: ["a", "c"],
        second.metadata.id: ["b"],
        last.metadata.id: [],
    }


async def test_a_failed_upload_keeps_the_blob_a_concurrent_upload_of_the_same_bytes_needs(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads of the same new bytes at once: both store the blob; one then fails (a negative box),
    while the other's row is not committed yet. The failure must not delete the blob under it."""
    data = picture(600)
    failed = asyncio.Event()
    write_grouped = hub.hub.db.write_grouped

    async def held_back(fn):  # the good upload's row waits until the bad one has failed (or 1 s, if it cannot)
        if not getattr(fn, "keywords", {}).get("annotations"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failed.wait(), 1.0)
        return await write_grouped(fn)

    monkeypatch.setattr(hub.hub.db, "write_grouped", held_back)
    await _category(hub, project, "weed", category_pb2.CATEGORY_TYPE_BOX)

    async def bad() -> None:
        try:
            await hub.images.UploadImage(
                pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=data, annotations=[NEGATIVE_BOX]))
            )
        finally:
            failed.set()

    good, refused = await asyncio.gather(upload(hub, project, data, tags=["good"]), bad(), return_exceptions=True)
    assert isinstance(refused, grpc.aio.AioRpcError)
    assert refused.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(good, pb.UploadImageResponse)
    assert hub.hub.store.exists(image_key(good.metadata.id))  # the row that was kept has its blob
    assert len(hub.hub.blob_locks) == 0  # no lock outlives its uploads


async def test_an_upload_puts_its_bytes_again_if_a_failed_upload_deleted_them_before_its_turn(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads put their bytes before taking their turn on them. Here a good upload's put has landed;
    then an upload of the same bytes takes its turn, fails (a negative box) and deletes the blob, which
    no row references yet. The good upload, taking its turn after, must store the bytes again."""
    data = picture(650)
    await _category(hub, project, "weed", category_pb2.CATEGORY_TYPE_BOX)
    failed = asyncio.Event()
    put_done = upload_takes_its_turn_after(hub, failed, monkeypatch)
    good = asyncio.create_task(upload(hub, project, data, tags=["good"]))
    await asyncio.wait_for(put_done.wait(), 10)
    assert hub.hub.store.exists(image_key(hashlib.sha256(data).hexdigest()))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await hub.images.UploadImage(
            pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=data, annotations=[NEGATIVE_BOX]))
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not hub.hub.store.exists(image_key(hashlib.sha256(data).hexdigest()))  # the failure deleted it
    failed.set()
    stored = await good
    assert not stored.duplicate
    assert hub.hub.store.exists(image_key(stored.metadata.id))
    download = hub.images.DownloadImages(pb.DownloadImagesRequest(ref=project, image_ids=[stored.metadata.id]))
    assert b"".join([r.chunk.data async for r in download if r.WhichOneof("part") == "chunk"]) == data


async def test_an_upload_cancelled_while_its_row_commits_keeps_its_blob(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client gives up (deadline) while its row waits in a group commit that then succeeds: the row
    must find its blob, so a cancelled upload does not remove it."""
    import time

    from sqlalchemy import func, select

    from visionloop.server.hub.db import schema

    data = picture(700)
    sha = hashlib.sha256(data).hexdigest()
    write_many = hub.hub.db.write_many_sync

    def slow(fns):  # the group's transaction outlasts the client's deadline
        time.sleep(1.0)
        return write_many(fns)

    monkeypatch.setattr(hub.hub.db, "write_many_sync", slow)
    request = pb.UploadImageRequest(ref=project, image=pb.ImageUpload(data=data))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.UploadImage(request, timeout=0.5)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(1.5)  # the group commits after the client left
    count = select(func.count()).select_from(schema.Image).where(schema.Image.sha256 == sha)
    assert hub.hub.db.read_sync(lambda s: s.scalar(count)) == 1
    assert hub.hub.store.exists(image_key(sha))


async def test_a_failed_upload_of_stored_bytes_keeps_their_blob(hub: HubClient, project) -> None:
    """Uploads put their bytes even when the hub has them already; one that then fails (a negative box,
    in another project) must not remove the blob the stored image's row references."""
    data = picture(800)
    stored = await upload(hub, project, data)
    other = project_service_pb2.ProjectRef(organization=project.organization, project="rows")
    await hub.projects.CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=other, display_name="Rows"))
    )
    await _category(hub, other, "weed", category_pb2.CATEGORY_TYPE_BOX)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await hub.images.UploadImage(
            pb.UploadImageRequest(ref=other, image=pb.ImageUpload(data=data, annotations=[NEGATIVE_BOX]))
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=other))).images
    download = hub.images.DownloadImages(pb.DownloadImagesRequest(ref=project, image_ids=[stored.metadata.id]))
    assert b"".join([r.chunk.data async for r in download if r.WhichOneof("part") == "chunk"]) == data


def _stream_of(
    project, images: list[bytes], tail: Sequence[pb.UploadImagesRequest] = ()
) -> AsyncIterator[pb.UploadImagesRequest]:
    """An UploadImages stream: per image a header (tag ``s<sequence>``) and one chunk, then ``tail``."""

    async def stream() -> AsyncIterator[pb.UploadImagesRequest]:
        yield pb.UploadImagesRequest(ref=project)
        for sequence, data in enumerate(images):
            blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            metadata = image_pb2.ImageMetadata(tags=[f"s{sequence}"])
            yield pb.UploadImagesRequest(header=pb.ImageHeader(sequence=sequence, blob=blob, metadata=metadata))
            yield pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data))
        for message in tail:
            yield message

    return stream()


async def test_a_stream_stores_its_images_together_and_answers_in_order(
    hub: HubClient, project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Later images of a stream are stored while earlier ones are still being put; the answers
    still come in order, and of two copies in one stream the first is stored, the second merged."""
    import threading
    import time

    lock, busy, most = threading.Lock(), 0, 0
    put_bytes = hub.hub.store.put_bytes

    def slow_put(key: str, data: bytes) -> None:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        time.sleep(0.2)  # a slow store: what a stream waited for before its next image
        try:
            put_bytes(key, data)
        finally:
            with lock:
                busy -= 1

    monkeypatch.setattr(hub.hub.store, "put_bytes", slow_put)
    images = [picture(900), picture(901), picture(902), picture(901), picture(903), picture(904)]
    results = [r async for r in hub.images.UploadImages(_stream_of(project, images))]
    assert [r.sequence for r in results] == list(range(len(images)))
    assert [r.error_code for r in results] == [0] * len(images)
    assert [r.duplicate for r in results] == [False, False, False, True, False, False]
    assert list(results[3].metadata.tags) == ["s1", "s3"]
    assert most >= 3  # one at a time before
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert len(listed.images) == 5


async def test_a_malformed_stream_first_answers_the_images_it_delivered(hub: HubClient, project) -> None:
    images = [picture(910), picture(911), picture(912)]
    stray = pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=5, data=b"stray"))
    answers: list[pb.UploadImagesResponse] = []

    async def read_all() -> None:
        async for answer in hub.images.UploadImages(_stream_of(project, images, [stray])):
            answers.append(answer)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk offset 5" in caught.value.details()
    assert [(a.sequence, a.error_code) for a in answers] == [(0, 0), (1, 0)]  # the third was still arriving
    listed = await hub.images.ListImages(pb.ListImagesRequest(ref=project))
    assert {i.id for i in listed.images} == {hashlib.sha256(d).hexdigest() for d in images[:2]}
