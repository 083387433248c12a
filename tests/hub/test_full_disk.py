"""A full disk at the hub (a real one: a small tmpfs of the hub process's own, see ``tests.full_disk``).

Uploads are refused with RESOURCE_EXHAUSTED and a message a person can act on, nothing
half-written stays behind (no partial file, no blob without its row, no spooled upload), and the
same process takes uploads again once the space is back.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from tests.full_disk import MiB, SmallDisk, small_disks
from tests.harness import ServiceProcess, serve
from tests.hub.pictures import picture
from tests.hub.test_datasets import generated_coco, import_messages, stream
from visionloop.common.v1 import image_pb2, transfer_pb2
from visionloop.loop.v1 import annotation_service_pb2 as annotation_pb
from visionloop.loop.v1 import (
    annotation_service_pb2_grpc,
    image_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
    project_service_pb2,
)
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.runtime.files import is_temporary
from visionloop.testing.synthetic.models import model_zip

REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")
ENV = {"VISIONLOOP_BOOTSTRAP_PROJECT": "acme/weeds"}
SPACE = "no space left"


@asynccontextmanager
async def hub_on(
    tmp_path: Path, sizes: Mapping[Path, int], env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[ServiceProcess, grpc.aio.Channel]]:
    """A hub process whose folders in ``sizes`` are small disks of their own, and a channel to it."""
    with serve("loop", tmp_path, {**ENV, **(env or {})}, prefix=small_disks(sizes)) as hub:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.ports()['loop']}") as channel:
            yield hub, channel


async def upload(channel: grpc.aio.Channel, data: bytes) -> pb.UploadImageResponse:
    request = pb.UploadImageRequest(ref=REF, image=pb.ImageUpload(data=data, metadata=image_pb2.ImageMetadata()))
    return await image_service_pb2_grpc.ImageServiceStub(channel).UploadImage(request, timeout=60)


async def upload_stream(channel: grpc.aio.Channel, images: list[bytes]) -> list[pb.UploadImagesResponse]:
    async def requests() -> AsyncIterator[pb.UploadImagesRequest]:
        yield pb.UploadImagesRequest(ref=REF)
        for sequence, data in enumerate(images):
            blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            yield pb.UploadImagesRequest(header=pb.ImageHeader(sequence=sequence, blob=blob))
            yield pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data))

    call = image_service_pb2_grpc.ImageServiceStub(channel).UploadImages(requests(), timeout=60)
    return [answer async for answer in call]


async def upload_model(channel: grpc.aio.Channel, data: bytes) -> model_service_pb2.UploadModelResponse:
    blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    header = model_service_pb2.UploadModelHeader(ref=REF, format="onnx", blob=blob)

    async def requests() -> AsyncIterator[model_service_pb2.UploadModelRequest]:
        yield model_service_pb2.UploadModelRequest(header=header)
        for offset in range(0, len(data), MiB):
            chunk = transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + MiB])
            yield model_service_pb2.UploadModelRequest(chunk=chunk)

    return await model_service_pb2_grpc.ModelServiceStub(channel).UploadModel(requests(), timeout=60)


async def image_ids(channel: grpc.aio.Channel) -> set[str]:
    answer = await image_service_pb2_grpc.ImageServiceStub(channel).ListImages(
        pb.ListImagesRequest(ref=REF, page_size=1000), timeout=30
    )
    return {image.id for image in answer.images}


async def model_versions(channel: grpc.aio.Channel) -> list[str]:
    answer = await model_service_pb2_grpc.ModelServiceStub(channel).ListModels(
        model_service_pb2.ListModelsRequest(ref=REF), timeout=30
    )
    return [model.version for model in answer.models]


def blob_hashes(disk: SmallDisk, under: str = "blobs/images") -> set[str]:
    return {Path(name).name for name in disk.files(under)}


def leftovers(disk: SmallDisk) -> list[str]:
    """What a failed write could leave: partial files anywhere, spooled uploads."""
    return [name for name in disk.files() if is_temporary(Path(name).name) or name.startswith("spool/")]


def refused_for_space(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> None:
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
    assert SPACE in caught.value.details()
    assert "free space" in caught.value.details()


async def test_a_full_data_folder_refuses_uploads_and_takes_them_again_once_there_is_space(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with hub_on(tmp_path, {data: 16 * MiB}) as (hub, channel):
        disk = SmallDisk(hub, data)
        kept = await upload(channel, picture(1))
        model = model_zip(tmp_path / "model.zip").read_bytes()
        disk.fill()

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(channel, picture(2, 320, 240))
        refused_for_space(caught)
        answers = await upload_stream(channel, [picture(3, 320, 240), picture(4, 320, 240)])
        assert [a.error_code for a in answers] == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] * 2
        assert all(a.retry_later and SPACE in a.error_message for a in answers)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload_model(channel, model)
        refused_for_space(caught)
        coco, _ = generated_coco(5, ["weed"])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await annotation_service_pb2_grpc.AnnotationServiceStub(channel).ImportDataset(
                stream(import_messages(REF, annotation_pb.DATASET_FORMAT_COCO, coco)), timeout=60
            )
        refused_for_space(caught)

        assert await image_ids(channel) == {kept.metadata.id}
        assert blob_hashes(disk) == {kept.metadata.id}
        assert await model_versions(channel) == []
        assert disk.files("blobs/models") == []
        assert leftovers(disk) == []
        refusals = [r for r in hub.lines if r.get("event") == "out of a resource"]
        assert refusals
        assert all(r["resource"] == "disk" for r in refusals)

        disk.free()
        second = await upload(channel, picture(2, 320, 240))
        answers = await upload_stream(channel, [picture(3, 320, 240), picture(4, 320, 240)])
        assert [a.error_code for a in answers] == [0, 0]
        assert (await upload_model(channel, model)).model.version == "1.0"
        assert await image_ids(channel) == {kept.metadata.id, second.metadata.id, *(a.metadata.id for a in answers)}
        assert hub.proc.poll() is None  # the same process all along


async def test_a_full_database_disk_leaves_no_blob_without_its_row(tmp_path: Path) -> None:
    """The blob fits, the row does not: the blob is removed again, so no blob lacks its row."""
    data, database = tmp_path / "data", tmp_path / "database"
    env = {"DATABASE_URL": f"sqlite:///{database / 'loop.db'}"}
    async with hub_on(tmp_path, {data: 16 * MiB, database: 4 * MiB}, env) as (hub, channel):
        blobs, disk = SmallDisk(hub, data), SmallDisk(hub, database)
        kept = await upload(channel, picture(1))
        disk.fill()

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await upload(channel, picture(2, 320, 240))
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
        assert "database's disk is full" in caught.value.details()
        answers = await upload_stream(channel, [picture(3, 320, 240), picture(4, 320, 240)])
        assert [a.error_code for a in answers] == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] * 2
        assert all(a.retry_later for a in answers)
        assert blob_hashes(blobs) == {kept.metadata.id}
        assert leftovers(blobs) == []

        disk.free()
        second = await upload(channel, picture(2, 320, 240))
        answers = await upload_stream(channel, [picture(3, 320, 240), picture(4, 320, 240)])
        assert [a.error_code for a in answers] == [0, 0]
        stored = {kept.metadata.id, second.metadata.id, *(a.metadata.id for a in answers)}
        assert await image_ids(channel) == stored
        assert blob_hashes(blobs) == stored
        assert hub.proc.poll() is None


async def test_an_import_that_fills_the_disk_half_way_leaves_no_blob_without_its_row(tmp_path: Path) -> None:
    """The dataset's zip fits in the spool, only some of its images in the object store."""
    data, blobs = tmp_path / "data", tmp_path / "data" / "blobs"
    coco, doc = generated_coco(40, ["weed"], 320, 240)  # about 70 KB per image
    messages = import_messages(REF, annotation_pb.DATASET_FORMAT_COCO, coco)
    async with hub_on(tmp_path, {data: 16 * MiB, blobs: 4 * MiB}) as (hub, channel):
        disk = SmallDisk(hub, blobs)
        importer = annotation_service_pb2_grpc.AnnotationServiceStub(channel)
        disk.fill(leave=MiB)  # room for a dozen of the 40 images

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await importer.ImportDataset(stream(messages), timeout=60)
        refused_for_space(caught)
        assert await image_ids(channel) == set()
        assert disk.files() == []
        assert leftovers(SmallDisk(hub, data)) == []

        disk.free()
        answer = await importer.ImportDataset(stream(messages), timeout=60)
        assert answer.images_added == len(doc["images"])
        assert blob_hashes(disk, "images") == await image_ids(channel)
