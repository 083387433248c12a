"""Bytes damaged between the hub and its S3 store: the store (radosgw, which checks Content-MD5 as
every S3 server does) refuses them, the upload fails UNAVAILABLE (a retry is expected to succeed)
and nothing is recorded: no row, no blob, no multipart upload left open."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from tests.hub.conftest import REF, HubClient, cluster_storage, running_hub
from tests.hub.pictures import picture
from tests.hub.s3_relay import S3Relay
from tests.hub.test_models import MIB, MODEL_JSON, expect_error, make_zip, model_blobs, upload, versions
from visionloop.common.v1 import image_pb2, transfer_pb2
from visionloop.lib.storage import S3ObjectStore
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2 as project_pb
from visionloop.server.hub.config import LoopSettings
from visionloop.testing.servers import s3_server_kind

pytestmark = pytest.mark.skipif(
    s3_server_kind() == "moto", reason="moto checks no Content-MD5: these need radosgw (VISIONLOOP_TEST_S3)"
)


@pytest.fixture
def relay(s3_settings: dict[str, str]) -> Iterator[S3Relay]:
    with S3Relay(s3_settings["s3_endpoint"]).running() as running:
        yield running


@pytest.fixture
async def hub(request: pytest.FixtureRequest, tmp_path: Path, relay: S3Relay) -> AsyncIterator[HubClient]:
    """A hub on PostgreSQL + S3 whose store is reached through ``relay``, with project acme/weeds."""
    storage = {**cluster_storage(request), "s3_endpoint": relay.endpoint}
    settings = LoopSettings(port=0, data_dir=tmp_path / "hub", host="127.0.0.1", **storage)
    async with running_hub(settings) as client:
        await client.projects.CreateProject(
            project_pb.CreateProjectRequest(project=project_pb.Project(ref=REF, display_name="Weeds"))
        )
        yield client


def open_multipart_uploads(hub: HubClient) -> list[str]:
    store = hub.hub.store
    assert isinstance(store, S3ObjectStore)
    return [u["Key"] for u in store._client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])]


async def upload_image(hub: HubClient, data: bytes) -> pb.UploadImageResponse:
    metadata = image_pb2.ImageMetadata(state=image_pb2.IMAGE_STATE_COMPLETE)
    image = pb.ImageUpload(data=data, metadata=metadata)
    return await hub.images.UploadImage(pb.UploadImageRequest(ref=REF, image=image))


async def test_an_image_damaged_on_the_way_to_the_store_is_refused_and_not_recorded(
    hub: HubClient, relay: S3Relay
) -> None:
    data = picture(1)
    relay.damage = True

    details = await expect_error(grpc.StatusCode.UNAVAILABLE, upload_image(hub, data))

    assert relay.damaged == 1
    assert "damaged (BadDigest" in details
    assert "try again" in details
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=REF))).images
    assert list(hub.hub.store.list_keys("images/")) == []
    # Sent again over a sound path, the same image is stored.
    relay.damage = False
    stored = await upload_image(hub, data)
    assert not stored.duplicate
    listed = (await hub.images.ListImages(pb.ListImagesRequest(ref=REF))).images
    assert [image.id for image in listed] == [stored.metadata.id]


async def test_a_streamed_image_damaged_on_the_way_is_answered_unavailable_and_the_stream_goes_on(
    hub: HubClient, relay: S3Relay
) -> None:
    """A detector's outbox keeps an image answered UNAVAILABLE and sends it again."""
    images = [picture(2), picture(3)]

    async def stream() -> AsyncIterator[pb.UploadImagesRequest]:
        yield pb.UploadImagesRequest(ref=REF)
        for sequence, data in enumerate(images):
            blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            yield pb.UploadImagesRequest(header=pb.ImageHeader(sequence=sequence, blob=blob))
            yield pb.UploadImagesRequest(chunk=transfer_pb2.BlobChunk(offset=0, data=data))

    relay.damage = True
    answers = [answer async for answer in hub.images.UploadImages(stream())]

    assert [a.sequence for a in answers] == [0, 1]
    assert [a.error_code for a in answers] == [grpc.StatusCode.UNAVAILABLE.value[0]] * 2
    assert all("damaged (BadDigest" in a.error_message for a in answers)
    assert not (await hub.images.ListImages(pb.ListImagesRequest(ref=REF))).images
    assert list(hub.hub.store.list_keys("images/")) == []


@pytest.mark.parametrize("weights_mib", [0, 9], ids=["one-put", "multipart"])
async def test_a_model_damaged_on_the_way_to_the_store_is_refused_and_not_recorded(
    hub: HubClient, relay: S3Relay, weights_mib: int
) -> None:
    weights = os.urandom(weights_mib * MIB or 2_000)
    data = make_zip(MODEL_JSON, {"weights.bin": weights}, zipfile.ZIP_STORED)
    relay.damage = True

    details = await expect_error(grpc.StatusCode.UNAVAILABLE, upload(hub, REF, data))

    assert relay.damaged >= 1
    assert "damaged (BadDigest" in details
    assert await versions(hub, REF) == []
    assert model_blobs(hub) == []
    assert open_multipart_uploads(hub) == []  # a refused part aborts the upload
    assert list(hub.hub.spool.iterdir()) == []
    relay.damage = False
    assert (await upload(hub, REF, data)).version == "1.0"
    assert len(model_blobs(hub)) == 1
