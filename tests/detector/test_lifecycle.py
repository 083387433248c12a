"""The detector follows the hub's deployment: download, swap, offline start, pinning, broken models."""

from __future__ import annotations

import asyncio
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import onnx

from tests.detector.conftest import IMAGE, Hub, settings_for, start_detector, upload, version_served
from visionloop.common.v1 import node_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc
from visionloop.testing.synthetic.models import model_zip


def broken_zip(path: Path, good: Path) -> bytes:
    """A zip the hub accepts (a model.json that fits the graph's inputs and outputs) whose graph
    ONNX Runtime cannot load: an operator that does not exist."""
    with zipfile.ZipFile(good) as source:
        manifest = source.read("model.json")
        graph = onnx.load_from_string(source.read("model.onnx"))
    graph.graph.node[0].op_type = "NoSuchOperator"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model.json", manifest)
        archive.writestr("model.onnx", graph.SerializeToString())
    return path.read_bytes()


async def test_follow_swap_offline_start_pin_and_broken_model(hub: Hub, tmp_path: Path) -> None:
    good = model_zip(tmp_path / "model.zip").read_bytes()
    assert await upload(hub.settings.port, good) == "1.0"
    settings = settings_for(hub, tmp_path / "detector")
    server, port = await start_detector(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
        await version_served(stub, "1.0")

        # A new version follows the deployment (follow latest): swapped while serving.
        assert await upload(hub.settings.port, good) == "1.1"
        await version_served(stub, "1.1")

        # A broken model is retried a bounded number of times; the detector keeps serving 1.1.
        assert await upload(hub.settings.port, broken_zip(tmp_path / "broken.zip", tmp_path / "model.zip")) == "1.2"
        updater = server.spec.context.updater
        updater.backoff = 0.05
        for _ in range(200):
            failure = updater.failures.get("1.2")
            if failure is not None and failure.attempts >= updater.max_attempts:
                break
            await asyncio.sleep(0.05)
        assert updater.failures["1.2"].attempts == updater.max_attempts
        assert "cannot load" in updater.failures["1.2"].reason
        assert (await stub.Detect(pb.DetectRequest(image=IMAGE))).model_version == "1.1"

        # Pinning goes back to 1.0; about reports it.
        await stub.SetVersionControl(
            pb.SetVersionControlRequest(version_control=pb.VERSION_CONTROL_PIN, pinned_version="1.0")
        )
        await version_served(stub, "1.0")
        about = await stub.GetAbout(pb.GetAboutRequest())
        assert (about.version_control, about.pinned_version) == (pb.VERSION_CONTROL_PIN, "1.0")
    await server.stop(0)

    # Offline start: the hub is gone, the detector starts from its last model and serves.
    await hub.stop()
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            response = await stub.Detect(pb.DetectRequest(image=IMAGE))
            assert response.model_version == "1.0"
            assert response.detections.boxes
    finally:
        await server.stop(0)


async def test_swap_during_four_streams_has_zero_failures(hub: Hub, tmp_path: Path) -> None:
    good = model_zip(tmp_path / "model.zip").read_bytes()
    await upload(hub.settings.port, good)
    server, port = await start_detector(settings_for(hub, tmp_path / "detector"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
        await version_served(stub, "1.0")

        async def stream() -> list[pb.DetectStreamResponse]:
            async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
                for i in range(120):
                    await asyncio.sleep(1 / 30)
                    yield pb.DetectStreamRequest(frame_id=i, image=IMAGE)

            return [r async for r in stub.DetectStream(requests())]

        streams = [asyncio.create_task(stream()) for _ in range(4)]
        await asyncio.sleep(0.8)
        await upload(hub.settings.port, good)  # the deployment target moves to 1.1
        answers = await asyncio.gather(*streams)
    await server.stop(0)
    for responses in answers:
        assert [r.frame_id for r in responses] == list(range(120))
        assert all(r.error_code == 0 for r in responses)
        versions = [r.result.model_version for r in responses]
        assert set(versions) == {"1.0", "1.1"}
        assert versions == sorted(versions)


async def test_model_json_on_disk_is_what_the_hub_completed(hub: Hub, tmp_path: Path) -> None:
    await upload(hub.settings.port, model_zip(tmp_path / "model.zip").read_bytes())
    settings = settings_for(hub, tmp_path / "detector")
    server, port = await start_detector(settings)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await version_served(detector_service_pb2_grpc.DetectorServiceStub(channel), "1.0")
        manifest = json.loads((settings.data_dir / "models" / "weeds" / "1.0" / "model.json").read_text())
        assert (manifest["organization"], manifest["project"], manifest["version"]) == ("acme", "weeds", "1.0")
        assert (settings.data_dir / "models" / "weeds" / "current").read_text() == "1.0"
    finally:
        await server.stop(0)


async def test_a_new_version_is_taken_once_its_format_arrives(hub: Hub, tmp_path: Path) -> None:
    """Trainers publish pytorch first and the onnx a moment later (or a converter makes it):
    the detector keeps serving and swaps when its format lands, without counting a failure."""
    good = model_zip(tmp_path / "model.zip").read_bytes()
    assert await upload(hub.settings.port, good) == "1.0"
    server, port = await start_detector(settings_for(hub, tmp_path / "detector"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await version_served(stub, "1.0")
            assert await upload(hub.settings.port, good, fmt="pytorch") == "1.1"  # the target moves to 1.1
            await asyncio.sleep(1.0)
            response = await stub.Detect(pb.DetectRequest(image=IMAGE))
            assert response.model_version == "1.0"
            updater = server.spec.context.updater
            assert updater.target == "1.1"
            assert updater.failures == {}
            assert await upload(hub.settings.port, good, fmt="onnx", version="1.1") == "1.1"
            await version_served(stub, "1.1")
    finally:
        await server.stop(0)


async def test_the_detector_shows_in_the_hubs_node_registry_with_the_model_it_serves(hub: Hub, tmp_path: Path) -> None:
    good = model_zip(tmp_path / "model.zip").read_bytes()
    assert await upload(hub.settings.port, good) == "1.0"
    server, port = await start_detector(settings_for(hub, tmp_path / "detector"))
    servicer = server.spec.context
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{hub.settings.port}") as hub_channel,
        ):
            await version_served(detector_service_pb2_grpc.DetectorServiceStub(channel), "1.0")
            nodes = node_service_pb2_grpc.NodeServiceStub(hub_channel)
            listing = node_service_pb2.ListNodesRequest(type=node_pb2.NODE_TYPE_DETECTOR)
            shown = None
            for _ in range(100):
                servicer.presence.poke()  # report the swap now rather than at the next beat
                await asyncio.sleep(0.05)
                found = [n for n in (await nodes.ListNodes(listing)).nodes if n.node_id == servicer.node_id]
                if found and found[0].model_version == "1.0":
                    shown = found[0]
                    break
            assert shown is not None, "the detector never showed in ListNodes with model 1.0"
            assert shown.state == node_pb2.NODE_STATE_BUSY
            assert (shown.organization, shown.project) == ("acme", "weeds")
            assert "onnxruntime" in shown.capabilities
            assert shown.software_version
            assert not shown.errors
    finally:
        await server.stop(0)
