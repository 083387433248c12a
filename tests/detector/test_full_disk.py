"""Full disks on the way to the hub (real ones: small tmpfs disks of a process's own, see ``tests.full_disk``).

The detector's own disk full: ``Upload`` answers RESOURCE_EXHAUSTED and leaves no partial outbox
item; once there is space, uploads are taken and delivered again. The hub's disk full: the
detector keeps the frames in its outbox (the hub marks the refusal ``retry_later``) and delivers
them once the hub has space again, neither process restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.detector.conftest import REF, Hub, start_detector, upload, version_served
from tests.detector.test_uploads import hub_images
from tests.full_disk import MiB, SmallDisk, small_disks
from tests.harness import serve
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import image_service_pb2, image_service_pb2_grpc
from visionloop.server.detector.config import DetectorSettings
from visionloop.testing.frames import frame, jpeg
from visionloop.testing.synthetic.models import model_zip


def picture(x: int) -> image_pb2.Image:
    """A distinct frame per ``x`` (the hub keeps one image per distinct bytes)."""
    return image_pb2.Image(encoded=jpeg(frame(squares=((x, 120, 96, "red"),))))


async def hub_has_images(channel: grpc.aio.Channel) -> bool:
    answer = await image_service_pb2_grpc.ImageServiceStub(channel).ListImages(
        image_service_pb2.ListImagesRequest(ref=REF), timeout=30
    )
    return bool(answer.images)


async def until(check: Callable[[], object], what: str, within: float = 60.0) -> None:
    """Wait for ``check()`` to hold (it may be a coroutine function); fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


async def test_upload_on_a_full_detector_disk_is_refused_and_taken_again_once_there_is_space(
    hub: Hub, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {"LOOP_HOST": f"127.0.0.1:{hub.settings.port}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"}
    with serve("detector", tmp_path, env, prefix=small_disks({data: 8 * MiB})) as detector:
        disk = SmallDisk(detector, data)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{detector.ports()['detector']}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await stub.Upload(pb.UploadRequest(image=picture(40)), timeout=30)
            await hub_images(hub, 1)
            disk.fill()

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Upload(pb.UploadRequest(image=picture(80)), timeout=30)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, caught.value.details()
            assert "no space left" in caught.value.details()
            assert disk.files("outbox/high") == disk.files("outbox/normal") == []  # no partial item
            assert (await stub.GetAbout(pb.GetAboutRequest(), timeout=30)).outbox.depth == 0

            disk.free()
            await stub.Upload(pb.UploadRequest(image=picture(120)), timeout=30)
            assert len(await hub_images(hub, 2)) == 2
            assert detector.proc.poll() is None


async def test_frames_wait_in_the_outbox_while_the_hub_disk_is_full(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    env = {"VISIONLOOP_DATA_DIR": str(data), "VISIONLOOP_BOOTSTRAP_PROJECT": "acme/weeds"}
    with serve("loop", tmp_path, env, prefix=small_disks({data: 16 * MiB})) as hub:
        disk = SmallDisk(hub, data)
        port = hub.ports()["loop"]
        settings = DetectorSettings(
            port=0,
            data_dir=tmp_path / "detector",
            loop_host=f"127.0.0.1:{port}",
            loop_organization=REF.organization,
            loop_project=REF.project,
        )
        server, detector_port = await start_detector(settings)
        outbox = server.spec.context.outbox
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{detector_port}") as channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as hub_channel,
            ):
                stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
                disk.fill()
                await stub.Upload(pb.UploadRequest(image=picture(60)), timeout=30)

                def answered() -> bool:  # refused for now (and kept) or for good (and dropped)
                    state = outbox.status()
                    return bool(state.last_error or state.rejected)

                await until(answered, "the hub answering for the frame")
                state = outbox.status()
                assert (state.depth, state.rejected, state.uploaded) == (1, 0, 0)  # kept, not dropped
                assert "no space left" in state.last_error

                disk.free()
                await until(lambda: hub_has_images(hub_channel), "the frame reaching the hub once it has space")
                assert outbox.status().depth == 0
                assert hub.proc.poll() is None
        finally:
            await server.stop(0)


async def test_a_model_that_does_not_fit_is_fetched_once_there_is_space(hub: Hub, tmp_path: Path) -> None:
    """A full disk is not the version's fault: tries past the bound for broken versions go on."""
    data = tmp_path / "data"
    env = {"LOOP_HOST": f"127.0.0.1:{hub.settings.port}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"}
    with serve("detector", tmp_path, env, prefix=small_disks({data: 8 * MiB})) as detector:
        disk = SmallDisk(detector, data)
        disk.fill()
        assert await upload(hub.settings.port, model_zip(tmp_path / "model.zip").read_bytes()) == "1.0"
        # Three tries: where a broken version is given up (about 12 s of backoff).
        tries = await asyncio.to_thread(detector.wait_for, "model update failed", 3, 90)
        assert not any(record["gives_up"] for record in tries)
        assert all("no space left" in record["reason"] for record in tries)
        assert disk.files("models") == []  # no partial download, no half-unpacked folder

        disk.free()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{detector.ports()['detector']}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await version_served(stub, "1.0", within=60)  # the next try comes 16 s after the third
        assert disk.files("models/weeds/1.0")
        assert not [name for name in disk.files("models") if "partial" in name or "unpacking" in name]
