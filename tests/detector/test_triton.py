"""TritonBackend against a real CPU ``tritonserver`` serving the synthetic detector (python backend)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as aioclient

from tests.detector.triton_server import TritonServer, TritonStartError, free_port
from visionloop.server.detector.backends.base import BackendError
from visionloop.server.detector.backends.onnxruntime import OnnxRuntimeBackend
from visionloop.server.detector.backends.triton import TritonBackend
from visionloop.server.detector.triton_repository import write_python_backend_entry
from visionloop.testing.synthetic.models import CELL, yolov8_stub

WIDTH, HEIGHT = 64, 48
ANCHORS = (WIDTH // CELL) * (HEIGHT // CELL)
MODEL = "stub"


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return yolov8_stub(tmp_path_factory.mktemp("onnx") / "stub.onnx", WIDTH, HEIGHT)


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Iterator[TritonServer]:
    workdir = tmp_path_factory.mktemp("triton")
    repository = workdir / "models"
    write_python_backend_entry(
        repository, MODEL, onnx_model, "images", (3, HEIGHT, WIDTH), ["output0"], [(6, ANCHORS)], max_batch_size=8
    )
    server = TritonServer(repository, workdir)
    try:
        server.start()
    except TritonStartError as error:
        pytest.fail(str(error), pytrace=False)  # no Triton is a failure, never a skip
    yield server
    server.stop()


def batch(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, 3, HEIGHT, WIDTH), dtype=np.float32)


async def test_outputs_match_onnxruntime(triton: TritonServer, onnx_model: Path) -> None:
    images = batch(5)
    backend = await TritonBackend.load(triton.grpc_url, MODEL, input_name="images", output_names=["output0"])
    reference = await OnnxRuntimeBackend.load(onnx_model, "images", ["output0"])
    try:
        assert backend.kind == "triton"
        assert backend.max_batch_size == 8  # the served config caps the requested 16
        (served,) = await backend.infer(images)
        (expected,) = await reference.infer(images)
    finally:
        await backend.close()
        await reference.close()
    assert served.shape == (5, 6, ANCHORS)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-5)


async def test_concurrent_requests_are_batched_and_split_back(triton: TritonServer, onnx_model: Path) -> None:
    # Requests that arrive together reach model.py as one execute() call: one ORT run, split back.
    backend = await TritonBackend.load(triton.grpc_url, MODEL, output_names=["output0"])
    reference = await OnnxRuntimeBackend.load(onnx_model, "images", ["output0"])
    batches = [batch(size, seed) for seed, size in enumerate([1, 3, 2, 4, 1, 2])]
    try:
        served = await asyncio.gather(*(backend.infer(images) for images in batches))
        expected = [await reference.infer(images) for images in batches]
    finally:
        await backend.close()
        await reference.close()
    for (got,), (want,) in zip(served, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert "PyCapsule" not in triton.log()  # model.py's DLPack hand-over left no error reports


async def test_close_unloads_the_model(triton: TritonServer) -> None:
    backend = await TritonBackend.load(triton.grpc_url, MODEL, output_names=["output0"])
    async with aioclient.InferenceServerClient(triton.grpc_url) as client:
        assert await client.is_model_ready(MODEL)
        await backend.close()
        assert not await client.is_model_ready(MODEL)
    await backend.close()  # a second close is harmless
    with pytest.raises(BackendError, match="closed"):
        await backend.infer(batch(1))


async def test_unknown_model_reports_tritons_reason(triton: TritonServer) -> None:
    with pytest.raises(BackendError, match=r"failed to load 'no-such-model'.*model repository") as caught:
        await TritonBackend.load(triton.grpc_url, "no-such-model")
    assert "Triton failed to load model 'no-such-model'" in str(caught.value)


async def test_model_that_fails_to_load_reports_tritons_reason(triton: TritonServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    write_python_backend_entry(triton.repository, "broken", broken, "images", (3, HEIGHT, WIDTH), ["output0"], [(6, 1)])
    with pytest.raises(BackendError, match=r"Triton failed to load model 'broken': .*Protobuf parsing failed"):
        await TritonBackend.load(triton.grpc_url, "broken", load_timeout=60)


async def test_wrong_tensor_names_fail_and_unload(triton: TritonServer) -> None:
    with pytest.raises(BackendError, match=r"no output 'boxes' \(outputs: output0\)"):
        await TritonBackend.load(triton.grpc_url, MODEL, output_names=["boxes"])
    async with aioclient.InferenceServerClient(triton.grpc_url) as client:
        assert not await client.is_model_ready(MODEL)


async def test_shape_mismatch_is_a_backend_error(triton: TritonServer) -> None:
    backend = await TritonBackend.load(triton.grpc_url, MODEL, output_names=["output0"])
    try:
        with pytest.raises(BackendError, match=r"batch shape 2x3x32x32 does not match 'stub' input 'images'"):
            await backend.infer(np.zeros((2, 3, 32, 32), np.float32))
        with pytest.raises(BackendError, match="takes 1 to 8"):
            await backend.infer(batch(9))
    finally:
        await backend.close()


async def test_unreachable_server() -> None:
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(BackendError, match=f"Triton at {url} is unreachable"):
        await TritonBackend.load(url, MODEL)


@pytest.mark.parametrize("mode", ["auto", "on", "off"])
async def test_inputs_through_shared_memory_or_inside_requests_give_the_same_outputs(
    triton: TritonServer, onnx_model: Path, mode: str
) -> None:
    backend = await TritonBackend.load(triton.grpc_url, MODEL, output_names=["output0"], shared_memory=mode)
    reference = await OnnxRuntimeBackend.load(onnx_model, "images", ["output0"])
    client = aioclient.InferenceServerClient(triton.grpc_url)
    frames = list(batch(3, seed=7))
    try:
        registered = await client.get_system_shared_memory_status(as_json=True)
        names = {region["name"] for region in registered.get("regions", {}).values()}
        if mode == "off":
            assert backend.regions is None
        else:  # the server runs on this machine: one registered region per batch in flight
            assert backend.regions is not None
            assert {r.name for r in backend.regions.regions} <= names
            assert len(backend.regions.regions) == backend.max_in_flight
        # Per-frame tensors (as the micro-batcher hands them over) and a ready batch, concurrently.
        (from_frames,), (from_batch,) = await asyncio.gather(
            backend.infer_frames(frames), backend.infer(np.stack(frames[::-1]))
        )
        (expected,) = await reference.infer(np.stack(frames))
        keys = [f"/{r.name}" for r in backend.regions.regions] if backend.regions else []
    finally:
        await backend.close()
        await reference.close()
    np.testing.assert_allclose(from_frames, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(from_batch, expected[::-1], rtol=0, atol=1e-5)
    # Closing unregisters the regions and unlinks them from /dev/shm.
    after = await client.get_system_shared_memory_status(as_json=True)
    await client.close()
    assert not {region["name"] for region in after.get("regions", {}).values()} & {k.lstrip("/") for k in keys}
    left = await asyncio.to_thread(lambda: [key for key in keys if Path("/dev/shm", key.lstrip("/")).exists()])
    assert not left


def test_auto_shared_memory_is_only_for_a_triton_on_this_machine() -> None:
    from visionloop.server.detector.backends.triton_shm import is_loopback

    for local in ("127.0.0.1:8001", "localhost:8001", "[::1]:8001"):
        assert is_loopback(local), local
    for remote in ("triton.visionloop.svc:8001", "10.0.0.7:8001"):
        assert not is_loopback(remote), remote


async def test_a_batch_larger_than_the_region_is_refused_before_it_is_written(triton: TritonServer) -> None:
    backend = await TritonBackend.load(triton.grpc_url, MODEL, output_names=["output0"], shared_memory="on")
    try:
        with pytest.raises(BackendError, match="takes 1 to 8"):
            await backend.infer(batch(9))
        assert backend.regions is not None
        with pytest.raises(ValueError, match="does not fit region"):
            backend.regions.regions[0].write(list(np.zeros((9, 3, HEIGHT, WIDTH), np.float32)))
        (output,) = await backend.infer(batch(8))  # the pool still hands out every region
        assert output.shape == (8, 6, ANCHORS)
    finally:
        await backend.close()


LEAVER = """
import asyncio, sys
import tritonclient.grpc.aio as aioclient
from visionloop.server.detector.backends.triton_shm import InputRegions

async def main(url):
    client = aioclient.InferenceServerClient(url)
    regions = await InputRegions.register(client, 2, 4096, owner="detector-dead")
    print(" ".join(r.name for r in regions.regions), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""


async def test_regions_a_killed_detector_left_behind_are_swept_at_its_next_start(triton: TritonServer) -> None:
    from visionloop.server.detector.backends.triton_shm import InputRegions, owner_prefix, sweep

    # A detector registers its regions and is killed before it can close them.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LEAVER, triton.grpc_url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            dead = (await proc.stdout.readline()).decode().split()
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert len(dead) == 2
    assert all(name.startswith(owner_prefix("detector-dead")) for name in dead)

    client = aioclient.InferenceServerClient(triton.grpc_url)
    alive = await InputRegions.register(client, 1, 4096, owner="detector-alive")
    try:
        assert await sweep(triton.grpc_url, "detector-dead") == 2  # what its next start does
        status = await client.get_system_shared_memory_status(as_json=True)
        names = {region["name"] for region in status.get("regions", {}).values()}
        assert not set(dead) & names
        assert {r.name for r in alive.regions} <= names  # another detector's regions are left alone
        left = await asyncio.to_thread(lambda: [name for name in dead if Path("/dev/shm", name).exists()])
        assert left == []
        assert await sweep(triton.grpc_url, "detector-dead") == 0  # nothing left the second time
    finally:
        await alive.close(client)
        await client.close()
