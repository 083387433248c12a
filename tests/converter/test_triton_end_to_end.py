"""From the trainer's format to a detector on Triton: converted, served by a real tritonserver, hot-swapped.

The converter writes its Triton entries into a repository folder; a real CPU ``tritonserver``
(``tests/detector/triton_server.py``) serves that folder with explicit model control, and a
detector on the Triton backend follows the hub's deployment and loads each version's entry
through Triton's repository API. With S3, the converter writes the entries into a bucket on the
tests' S3 server (radosgw) and a tritonserver started on the repository URL the converter states
in model.json reads them from there itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as aioclient

from tests.converter.conftest import HEIGHT, REF, WIDTH, HubClient, StartConverter, pytorch_zip
from tests.detector.triton_server import TritonServer, TritonStartError
from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as dpb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.loop.v1 import deployment_service_pb2
from visionloop.runtime.server import GrpcServer
from visionloop.server.converter.onnx_models import onnx_runner
from visionloop.server.converter.triton_s3 import triton_s3_url
from visionloop.server.detector import app as detector_app
from visionloop.server.detector.config import DetectorSettings
from visionloop.server.detector.service import DetectorServicer
from visionloop.testing.frames import frame, jpeg
from visionloop.testing.servers import S3UnderTest

pytestmark = pytest.mark.slow
IMAGE = image_pb2.Image(encoded=jpeg(frame(width=320, height=240, squares=((100, 80, 40, "green"),))))


@pytest.fixture
async def triton(tmp_path: Path) -> AsyncIterator[TritonServer]:
    server = TritonServer(tmp_path / "triton", tmp_path / "tritonserver")  # the converter's repository folder
    (tmp_path / "tritonserver").mkdir()
    try:
        await asyncio.to_thread(server.start)
    except TritonStartError as error:
        pytest.fail(str(error), pytrace=False)  # no Triton is a failure, never a skip
    yield server
    await asyncio.to_thread(server.stop)


async def pin(hub: HubClient, version: str) -> None:
    request = deployment_service_pb2.SetDeploymentRequest(
        ref=REF, policy=deployment_service_pb2.DEPLOYMENT_POLICY_PINNED, pinned_version=version
    )
    await hub.deployments.SetDeployment(request)


async def served_version(stub: detector_service_pb2_grpc.DetectorServiceStub, wanted: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with contextlib.suppress(grpc.aio.AioRpcError):  # UNAVAILABLE until the first model loads
            if (await stub.Detect(dpb.DetectRequest(image=IMAGE))).model_version == wanted:
                return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the detector did not serve {wanted} within 60 s")
        await asyncio.sleep(0.2)


async def test_trainer_model_is_converted_served_by_triton_and_hot_swapped(
    hub: HubClient, start_converter: StartConverter, triton: TritonServer, tmp_path: Path
) -> None:
    # triton_onnx too: this CPU-only Triton has no onnxruntime backend, so the detector must fall
    # back from the GPU entry to the python-backend one.
    await start_converter(target_formats="onnx,triton_python,triton_onnx", triton_onnx_gpu=False)
    first = await hub.upload(pytorch_zip(tmp_path / "first.zip", seed=1), "pytorch")
    await hub.wait_formats(first, {"onnx", "triton_python", "triton_onnx"})
    await pin(hub, first)

    settings = DetectorSettings(
        port=0,
        data_dir=tmp_path / "detector",
        loop_host=hub.address,
        loop_organization=REF.organization,
        loop_project=REF.project,
        backend="triton",
        triton_url=triton.grpc_url,
        triton_model_repository=triton.repository,
    )
    detector = GrpcServer(detector_app.create(settings), settings)
    port = await detector.start()
    servicer: DetectorServicer = detector.spec.context
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            await served_version(stub, first)
            # Served from the converter's entry, loaded by name from the repository Triton reads.
            first_entry = f"acme.weeds.{first}.triton_python"
            model = servicer.models.get()
            assert (model.backend.kind, model.backend.model_name) == ("triton", first_entry)
            assert not list(triton.repository.glob(f"{REF.project}.*"))  # the detector wrote no entry of its own

            # Triton answers like the hub's ONNX model on ONNX Runtime.
            onnx_folder = await hub.download(first, "onnx", tmp_path / "downloads")
            names = list(model.info.output.tensor_names)
            batch = np.random.default_rng(3).random((5, 3, HEIGHT, WIDTH), dtype=np.float32)
            served = await model.backend.infer(batch)
            for got, want in zip(served, onnx_runner(onnx_folder / "model.onnx", names)(batch), strict=True):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)

            # A new version: converted while the detector stays pinned, then deployed; requests keep
            # flowing through the swap and none fails.
            second = await hub.upload(pytorch_zip(tmp_path / "second.zip", seed=2), "pytorch")
            await hub.wait_formats(second, {"onnx", "triton_python", "triton_onnx"})
            answered: list[str] = []
            stop = asyncio.Event()

            async def keep_detecting() -> None:
                while not stop.is_set():
                    answered.append((await stub.Detect(dpb.DetectRequest(image=IMAGE))).model_version)

            traffic = asyncio.create_task(keep_detecting())
            await pin(hub, second)
            await served_version(stub, second)
            stop.set()
            await traffic  # raises if any request failed during the swap
            assert set(answered) <= {first, second}
            assert servicer.models.get().backend.model_name == f"acme.weeds.{second}.triton_python"

            async with aioclient.InferenceServerClient(triton.grpc_url) as client:
                assert await client.is_model_ready(f"acme.weeds.{second}.triton_python")
                deadline = asyncio.get_running_loop().time() + 20
                while await client.is_model_ready(first_entry):  # the retired version is unloaded
                    assert asyncio.get_running_loop().time() < deadline, "the old entry stayed loaded"
                    await asyncio.sleep(0.1)
    finally:
        await detector.stop(0)


SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's, where Triton's S3 client looks


class TritonTrustingCa(TritonServer):
    """A tritonserver that also trusts ``ca``: Triton's S3 client reads only the system's CA bundle, so
    it runs in a mount namespace of its own where that file has ``ca`` appended (root only; nothing
    outside the namespace changes)."""

    def __init__(self, repository: str, workdir: Path, environment: dict[str, str], ca: Path) -> None:
        super().__init__(repository, workdir, environment)
        self.ca = ca

    def command(self, distribution: Path) -> list[str]:
        bundle = self.workdir / "ca-bundle.pem"
        bundle.write_bytes(SYSTEM_CA_BUNDLE.read_bytes() + b"\n" + self.ca.read_bytes())
        mount = 'mount --bind "$0" "$1" && shift && exec "$@"'
        return [
            "unshare",
            "--mount",
            "sh",
            "-c",
            mount,
            str(bundle),
            str(SYSTEM_CA_BUNDLE),
            *super().command(distribution),
        ]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_triton_reads_the_converter_s_s3_repository_at_the_url_the_converter_states(
    hub: HubClient,
    start_converter: StartConverter,
    s3_under_test_server: S3UnderTest,
    tmp_path: Path,
    scheme: str,
) -> None:
    """The converter's repository path, spelled for Triton's S3 file system, read by a real tritonserver:
    ``s3://host:port/bucket/prefix`` over http, ``s3://https://host:port/bucket/prefix`` over https."""
    s3_settings, tls_endpoint = s3_under_test_server.settings, s3_under_test_server.tls_endpoint
    if scheme == "https" and (tls_endpoint is None or os.geteuid() != 0 or not shutil.which("unshare")):
        pytest.skip("https needs radosgw's TLS endpoint and root (Triton trusts only the system's CA bundle)")
    bucket = f"triton-{uuid.uuid4().hex[:12]}"
    endpoint = s3_settings["s3_endpoint"] if scheme == "http" else str(tls_endpoint)
    port = endpoint.rsplit(":", 1)[1]
    # The converter writes over http; the https one is the same gateway, so the same bucket.
    await start_converter(
        target_formats="onnx,triton_python", triton_prefix="models/triton", **{**s3_settings, "s3_bucket": bucket}
    )
    version = await hub.upload(pytorch_zip(tmp_path / "model.zip", seed=3), "pytorch")
    await hub.wait_formats(version, {"onnx", "triton_python"})
    doc = json.loads((await hub.download(version, "triton_python", tmp_path / "d") / "model.json").read_text())
    repository = triton_s3_url(endpoint, bucket, "models/triton")
    if scheme == "http":
        assert doc["triton"]["repository"] == repository == f"s3://127.0.0.1:{port}/{bucket}/models/triton"
    else:
        assert repository == f"s3://https://127.0.0.1:{port}/{bucket}/models/triton"

    credentials = {
        "AWS_ACCESS_KEY_ID": s3_settings["s3_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_settings["s3_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    (tmp_path / "tritonserver").mkdir()
    server = (
        TritonServer(repository, tmp_path / "tritonserver", environment=credentials)
        if scheme == "http"
        else TritonTrustingCa(repository, tmp_path / "tritonserver", credentials, s3_under_test_server.ca)  # type: ignore[arg-type]
    )
    try:
        await asyncio.to_thread(server.start)
    except TritonStartError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        name = doc["triton"]["model_name"]
        async with aioclient.InferenceServerClient(server.grpc_url) as client:
            await client.load_model(name)  # explicit model control: Triton lists and fetches the entry from S3
            assert await client.is_model_ready(name)
            metadata = await client.get_model_metadata(name)
            batch = np.random.default_rng(4).random((2, 3, HEIGHT, WIDTH), dtype=np.float32)
            request = aioclient.InferInput(metadata.inputs[0].name, list(batch.shape), "FP32")
            request.set_data_from_numpy(batch)
            names = [output.name for output in metadata.outputs]
            result = await client.infer(name, [request])
        onnx_folder = await hub.download(version, "onnx", tmp_path / "downloads")
        for got, want in zip(
            [result.as_numpy(n) for n in names], onnx_runner(onnx_folder / "model.onnx", names)(batch), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    finally:
        await asyncio.to_thread(server.stop)
