"""The Triton model repository in S3 (cluster mode), and the entries' config.pbtxt.

The converter writes each entry into the bucket through the S3 protocol: the keys and the
repository URL it states are checked here; a real tritonserver reads the repository from the
tests' S3 server at that URL in test_triton_end_to_end, as it serves the folder repository there.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import boto3
import pytest
from google.protobuf import text_format
from pydantic import ValidationError
from tritonclient.grpc import model_config_pb2 as mc

from tests.converter.conftest import HubClient, StartConverter, onnx_stub_zip
from visionloop.lib.model_format.triton import EntryOptions, TensorSpec, onnxruntime_config, python_config
from visionloop.server.converter.config import ConverterSettings
from visionloop.server.converter.repository import triton_s3_url


@pytest.fixture
def s3(s3_settings: dict[str, str]) -> dict[str, str]:
    """The S3 server, with a bucket of this test's own."""
    return {**s3_settings, "s3_bucket": f"triton-{uuid.uuid4().hex[:12]}"}


async def test_entry_is_written_to_the_s3_repository(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path, s3: dict[str, str]
) -> None:
    await start_converter(target_formats="triton_python", triton_prefix="models/triton", **s3)
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")
    await hub.wait_formats(version, {"triton_python"})

    client = boto3.client(
        "s3",
        endpoint_url=s3["s3_endpoint"],
        aws_access_key_id=s3["s3_access_key_id"],
        aws_secret_access_key=s3["s3_secret_access_key"],
        region_name="us-east-1",
    )
    listed = client.list_objects_v2(Bucket=s3["s3_bucket"], Prefix="models/triton/")
    name = f"acme.weeds.{version}.triton_python"
    assert sorted(item["Key"] for item in listed.get("Contents", [])) == [
        f"models/triton/{name}/1/model.onnx",
        f"models/triton/{name}/1/model.py",
        f"models/triton/{name}/config.pbtxt",
    ]
    body = client.get_object(Bucket=s3["s3_bucket"], Key=f"models/triton/{name}/config.pbtxt")["Body"].read()
    assert text_format.Parse(body.decode(), mc.ModelConfig()).name == name

    doc = json.loads((await hub.download(version, "triton_python", tmp_path / "d") / "model.json").read_text())
    port = s3["s3_endpoint"].rsplit(":", 1)[1]
    assert doc["triton"] == {
        "model_name": name,
        "repository": f"s3://127.0.0.1:{port}/{s3['s3_bucket']}/models/triton",  # Triton's --model-repository
    }


def test_triton_s3_urls() -> None:
    """The spellings Triton's S3 file system reads (a real tritonserver reads the http one from
    radosgw in test_triton_end_to_end): the port always written, https spelled out, AWS by bucket."""
    assert triton_s3_url("http://minio:9000", "vl", "triton") == "s3://minio:9000/vl/triton"
    assert triton_s3_url("http://rgw.storage.svc", "vl", "triton") == "s3://rgw.storage.svc:80/vl/triton"
    assert triton_s3_url("https://minio.example.com", "vl", "a/b") == "s3://https://minio.example.com:443/vl/a/b"
    assert triton_s3_url("https://minio.example.com:9443/", "vl", "a_b") == "s3://https://minio.example.com:9443/vl/a_b"
    assert triton_s3_url("https://s3.eu-west-1.amazonaws.com", "vl", "triton") == "s3://vl/triton"
    assert triton_s3_url("https://s3.amazonaws.com", "vl", "triton") == "s3://vl/triton"
    assert triton_s3_url("https://s3.cn-north-1.amazonaws.com.cn", "vl", "triton") == "s3://vl/triton"
    assert triton_s3_url("https://amazonaws.com.example.com", "vl", "triton") == (
        "s3://https://amazonaws.com.example.com:443/vl/triton"
    )


@pytest.mark.parametrize(
    ("endpoint", "bucket", "prefix", "refused"),
    [
        ("http://[::1]:9000", "vl", "triton", "no IPv6 addresses"),
        ("http://gateway:8080/s3", "vl", "triton", "has a path"),
        ("http://minio:9000", "VL_models", "triton", "bucket 'VL_models'"),
        ("http://minio:9000", "vl", "models/tri ton", "not 'tri ton'"),
        ("http://minio:9000", "vl", "modèles", "not 'modèles'"),
    ],
)
def test_what_triton_s_s3_path_cannot_hold_is_refused_at_start_up(
    endpoint: str, bucket: str, prefix: str, refused: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(refused)):
        triton_s3_url(endpoint, bucket, prefix)
    with pytest.raises(ValidationError, match=re.escape(refused)):
        ConverterSettings(s3_endpoint=endpoint, s3_bucket=bucket, triton_prefix=prefix)


def test_configs_are_valid_model_configs() -> None:
    inputs = [TensorSpec("images", (3, 96, 128))]
    outputs = [TensorSpec("heatmap", (2, 24, 32)), TensorSpec("size", (2, -1, -1))]
    options = EntryOptions(max_batch_size=8, instances=3, max_queue_delay_us=250, gpu=False, tensorrt=False)

    python = text_format.Parse(python_config("m", inputs, outputs, options), mc.ModelConfig())
    assert (python.backend, python.platform, python.max_batch_size) == ("python", "", 8)
    assert python.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.kind, g.count) for g in python.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 3)]
    assert [list(o.dims) for o in python.output] == [[2, 24, 32], [2, -1, -1]]
    assert python.parameters["intra_op_num_threads"].string_value == "0"

    cpu = text_format.Parse(onnxruntime_config("m", inputs, outputs, options), mc.ModelConfig())
    assert cpu.platform == "onnxruntime_onnx"
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 3)]
    assert not cpu.HasField("optimization")

    gpu_options = EntryOptions(tensorrt=True, tensorrt_precision="FP32")
    gpu = text_format.Parse(onnxruntime_config("m", inputs, outputs, gpu_options), mc.ModelConfig())
    assert [(g.kind, g.count) for g in gpu.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 1)]
    (accelerator,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert (accelerator.name, dict(accelerator.parameters)) == (
        "tensorrt",
        {"precision_mode": "FP32", "max_workspace_size_bytes": str(1 << 30)},
    )
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        python_config("m", inputs, outputs, EntryOptions(max_batch_size=0))
