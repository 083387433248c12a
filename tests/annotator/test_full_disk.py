"""The annotator's priority watcher on a full disk (a real one: a small tmpfs of the process's own, see
``tests.full_disk``): it keeps ranking new images, and saves its cursor again once there is space."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc

from tests.annotator import shapes
from tests.annotator.test_ranking import _box, _detections
from tests.detector.conftest import REF, Hub
from tests.full_disk import MiB, SmallDisk, small_disks
from tests.harness import serve
from visionloop.loop.v1 import image_service_pb2, image_service_pb2_grpc, project_service_pb2
from visionloop.loop.v1 import project_service_pb2_grpc as project_grpc
from visionloop.testing.ports import free_port

CURSOR = "annotator-events.cursor"


async def ranked(images: image_service_pb2_grpc.ImageServiceStub, seed: int, within: float = 30) -> None:
    """Upload a scene with a detection of confidence 0.7; wait until the watcher gave it priority 0.3."""
    upload = image_service_pb2.ImageUpload(data=shapes.scene(seed).png(), detections=_detections(_box(0.7)))
    image_id = (await images.UploadImage(image_service_pb2.UploadImageRequest(ref=REF, image=upload))).metadata.id
    deadline = asyncio.get_running_loop().time() + within
    request = image_service_pb2.GetImageRequest(ref=REF, image_id=image_id)
    while abs((await images.GetImage(request)).metadata.priority - 0.3) > 1e-6:
        assert asyncio.get_running_loop().time() < deadline, f"scene {seed} was not ranked"
        await asyncio.sleep(0.05)


async def test_the_watcher_keeps_ranking_on_a_full_disk(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "hub", free_port())
    await hub.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as channel:
            await project_grpc.ProjectServiceStub(channel).CreateProject(
                project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=REF))
            )
            images = image_service_pb2_grpc.ImageServiceStub(channel)
            data = tmp_path / "data"
            env = {"LOOP_HOST": f"127.0.0.1:{hub.settings.port}", "LOOP_ORGANIZATION": "acme", "LOOP_PROJECT": "weeds"}
            # A cursor from the hub's first event: the watcher sees every upload of the test.
            prefix = small_disks({data: 4 * MiB}, files={data / CURSOR: "0"})
            with serve("annotator", tmp_path, env, prefix=prefix) as annotator:
                disk = SmallDisk(annotator, data)
                disk.fill()
                await ranked(images, 20)  # ranked, but its cursor cannot be saved
                disk.free()
                await ranked(images, 21)
                deadline = asyncio.get_running_loop().time() + 30
                while (disk.root / CURSOR).read_text() == "0":  # saved again, after the ranking
                    assert asyncio.get_running_loop().time() < deadline, "the cursor was never saved"
                    await asyncio.sleep(0.05)
                shortages = [r["resource"] for r in annotator.lines if r.get("event") == "out of a resource"]
                assert set(shortages) == {"disk"}
                assert annotator.proc.poll() is None
    finally:
        await hub.stop()
