"""The converter follows the hub: models lacking a target format are converted, checked and published."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tests.converter.conftest import (
    HEIGHT,
    REF,
    WIDTH,
    HubClient,
    StartConverter,
    onnx_stub_zip,
    pytorch_zip,
)
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.server.converter.exporters import load_source
from visionloop.server.converter.onnx_models import onnx_runner
from visionloop.server.hub.db import schema


async def test_pytorch_upload_gets_onnx_and_a_triton_entry(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path
) -> None:
    converter = await start_converter(target_formats="onnx,triton_python")
    version = await hub.upload(pytorch_zip(tmp_path / "model.zip"), "pytorch")

    formats = await hub.wait_formats(version, {"onnx", "triton_python"})
    assert formats[0] == "pytorch"

    # The ONNX export answers like the PyTorch model it came from, with any batch size.
    onnx_folder = await hub.download(version, "onnx", tmp_path / "downloads")
    doc = json.loads((onnx_folder / "model.json").read_text())
    assert (doc["format"], doc["version"], doc["variant"]) == ("onnx", version, "centernet_small")
    source = load_source("centernet_small", tmp_path / "model")
    export = onnx_runner(onnx_folder / "model.onnx", doc["output"]["tensor_names"])
    images = np.random.default_rng(1).random((3, 3, HEIGHT, WIDTH), dtype=np.float32)
    for want, got in zip(source(images), export(images), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)

    # The Triton entry sits in the repository folder and its zip on the hub says where.
    name = f"acme.weeds.{version}.triton_python"
    entry = tmp_path / "triton" / name
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()) == [
        "1/model.onnx",
        "1/model.py",
        "config.pbtxt",
    ]
    config = text_format.Parse((entry / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (config.name, config.backend, config.max_batch_size) == (name, "python", 16)
    assert [(i.name, list(i.dims)) for i in config.input] == [("images", [3, HEIGHT, WIDTH])]
    assert [o.name for o in config.output] == ["heatmap", "size", "offset"]
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    triton_doc = json.loads((await hub.download(version, "triton_python", tmp_path / "t") / "model.json").read_text())
    assert triton_doc["triton"] == {"model_name": name, "repository": str((tmp_path / "triton").resolve())}

    # Each conversion ran once, passed its parity check and is listed.
    listed = (await converter.stub.ListConversions(pb.ListConversionsRequest())).conversions
    assert sorted((c.target_format, c.source_format, c.state) for c in listed) == [
        ("onnx", "pytorch", pb.CONVERSION_STATE_SUCCEEDED),
        ("triton_python", "onnx", pb.CONVERSION_STATE_SUCCEEDED),  # one converter: onnx first, then from it
    ]
    for conversion in listed:
        assert conversion.parity.passed
        assert conversion.parity.max_abs_diff <= 1e-4
        assert conversion.parity.samples == 4
        assert conversion.end_time.ToDatetime() >= conversion.start_time.ToDatetime()
    rows = await hub.hub.db.read(lambda s: s.query(schema.Conversion).all())
    assert sorted((r.target_format, r.attempts) for r in rows) == [("onnx", 1), ("triton_python", 1)]


async def test_convert_on_demand_runs_once(hub: HubClient, start_converter: StartConverter, tmp_path: Path) -> None:
    converter = await start_converter(target_formats="onnx")  # follows the hub for onnx only
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")
    request = pb.ConvertRequest(
        organization=REF.organization,
        project=REF.project,
        version=version,
        target_format="triton_onnx",
        options=pb.ConversionOptions(max_batch_size=4, instance_count=2, tensorrt=True),
    )
    first = (await converter.stub.Convert(request)).conversion
    assert (first.state, first.source_format, first.target_format) == (
        pb.CONVERSION_STATE_SUCCEEDED,
        "onnx",
        "triton_onnx",
    )
    assert first.parity.passed
    assert first.parity.max_abs_diff == 0.0
    second = (await converter.stub.Convert(request)).conversion
    assert second.state == pb.CONVERSION_STATE_SUCCEEDED
    listed = (await converter.stub.ListConversions(pb.ListConversionsRequest())).conversions
    assert [c.target_format for c in listed] == ["triton_onnx"]  # the second call converted nothing

    # The GPU variant: onnxruntime platform, the request's batching and instances, TensorRT on.
    name = f"acme.weeds.{version}.triton_onnx"
    config = text_format.Parse((tmp_path / "triton" / name / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (config.platform, config.max_batch_size) == ("onnxruntime_onnx", 4)
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert not (tmp_path / "triton" / name / "1" / "model.py").exists()


async def test_convert_refuses_bad_requests(hub: HubClient, start_converter: StartConverter, tmp_path: Path) -> None:
    converter = await start_converter(target_formats="onnx")
    paths = (await converter.stub.ListConversionPaths(pb.ListConversionPathsRequest())).paths
    assert ("pytorch", "onnx") in {(p.source_format, p.target_format) for p in paths}
    assert ("onnx", "onnx_int8") in {(p.source_format, p.target_format) for p in paths}

    def convert(**fields: object) -> pb.ConvertRequest:
        values: dict[str, object] = {"organization": "acme", "project": "weeds", "version": "1.0"}
        values.update(fields)
        return pb.ConvertRequest(**values)  # type: ignore[arg-type]

    cases = [
        (convert(target_format="tflite"), grpc.StatusCode.INVALID_ARGUMENT, "not one this converter produces"),
        (convert(version="latest", target_format="onnx"), grpc.StatusCode.INVALID_ARGUMENT, "such as 1.3"),
        (convert(target_format="onnx_fp16", options=pb.ConversionOptions(max_map_drop=2)), None, "max_map_drop"),
        (convert(target_format="onnx"), grpc.StatusCode.NOT_FOUND, "1.0 of acme/weeds does not exist"),
    ]
    for request, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await converter.stub.Convert(request)
        assert caught.value.code() == (code or grpc.StatusCode.INVALID_ARGUMENT)
        assert message in (caught.value.details() or "")
