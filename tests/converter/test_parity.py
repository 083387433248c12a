"""The parity check: FP32 conversions must match within 1e-4, FP16/INT8 must keep mAP@0.5 on validation images."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.converter.conftest import (
    REF,
    HubClient,
    StartConverter,
    add_validation_images,
    corrupt_initializer,
    onnx_stub_zip,
)
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.server.converter import onnx_models, pipeline
from visionloop.server.hub.db import schema


def request(version: str, target: str, **options: object) -> pb.ConvertRequest:
    return pb.ConvertRequest(
        organization=REF.organization,
        project=REF.project,
        version=version,
        target_format=target,
        options=pb.ConversionOptions(**options),  # type: ignore[arg-type]
    )


async def refused(converter_stub: object, convert: pb.ConvertRequest) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await converter_stub.Convert(convert)  # type: ignore[attr-defined]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return caught.value.details() or ""


async def test_corrupted_fp32_conversion_is_refused(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupted(job: pipeline.Job, weights: Path, target: Path) -> None:
        shutil.copyfile(weights, target)
        corrupt_initializer(target, "sharpness", lambda value: value * 1.05)

    monkeypatch.setitem(pipeline.BUILDERS, "triton_python", corrupted)
    converter = await start_converter(target_formats="onnx", max_attempts=1)
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")

    reason = await refused(converter.stub, request(version, "triton_python"))
    assert reason.startswith("conversion to triton_python failed: parity check failed: max abs diff")
    assert "> 0.0001 on 4 samples" in reason
    assert await hub.formats(version) == ["onnx"]  # nothing published: no format, no repository entry
    assert not (tmp_path / "triton" / f"acme.weeds.{version}.triton_python").exists()
    (record,) = (await converter.stub.ListConversions(pb.ListConversionsRequest())).conversions
    assert record.state == pb.CONVERSION_STATE_FAILED
    assert not record.parity.passed
    assert record.parity.max_abs_diff > 1e-4
    (row,) = await hub.hub.db.read(lambda s: s.query(schema.Conversion).all())
    assert (row.state, row.reason) == (
        pb.CONVERSION_STATE_FAILED,
        reason.removeprefix("conversion to triton_python failed: "),
    )

    # Unless the caller insists.
    done = (await converter.stub.Convert(request(version, "onnx_fp16", skip_parity_check=True))).conversion
    assert (done.state, done.reason) == (pb.CONVERSION_STATE_SUCCEEDED, "parity check skipped on request")


async def test_reduced_precision_is_judged_by_map_on_validation_images(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converter = await start_converter(target_formats="onnx")
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")

    # No validation images yet: published, with the largest output difference and a note saying so.
    fp16 = (await converter.stub.Convert(request(version, "onnx_fp16"))).conversion
    assert fp16.state == pb.CONVERSION_STATE_SUCCEEDED
    assert fp16.reason.startswith("no validation images: mAP@0.5 change not measured")
    assert 0 < fp16.parity.max_abs_diff < 0.05
    assert fp16.parity.samples == 4

    images = await add_validation_images(hub)
    int8 = (await converter.stub.Convert(request(version, "onnx_int8"))).conversion
    assert int8.state == pb.CONVERSION_STATE_SUCCEEDED
    assert int8.reason == ""
    assert int8.parity.samples == images
    assert int8.parity.source_map50 == pytest.approx(1.0)  # the stub finds every square
    assert int8.parity.converted_map50 >= int8.parity.source_map50 - 0.03

    # A conversion that moves every box by two cells keeps its scores but loses the objects: refused.
    second = await hub.upload(onnx_stub_zip(tmp_path / "stub2.zip"), "onnx")

    def shifted(job: pipeline.Job, weights: Path, target: Path) -> None:
        onnx_models.to_fp16(weights, target)
        corrupt_initializer(target, "boxes", lambda boxes: boxes + np.array([16, 0, 0, 0], boxes.dtype)[None, :, None])

    monkeypatch.setitem(pipeline.BUILDERS, "onnx_fp16", shifted)
    reason = await refused(converter.stub, request(second, "onnx_fp16", max_map_drop=0.05))
    assert "parity check failed: mAP@0.5 dropped by 1.000 (1.000 -> 0.000)" in reason
    assert f"on {images} validation images, more than the allowed 0.05" in reason


async def test_static_int8_calibrates_on_project_images(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path
) -> None:
    converter = await start_converter(target_formats="onnx", int8_mode="static", calibration_images=3)
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")
    reason = await refused(converter.stub, request(version, "onnx_int8"))
    assert "static INT8 quantization needs calibration images; the project has none" in reason

    images = await add_validation_images(hub)
    second = await hub.upload(onnx_stub_zip(tmp_path / "stub2.zip"), "onnx")
    done = (await converter.stub.Convert(request(second, "onnx_int8"))).conversion
    assert done.state == pb.CONVERSION_STATE_SUCCEEDED
    assert done.parity.samples == images
    assert done.parity.converted_map50 >= done.parity.source_map50 - 0.03
    int8 = await hub.download(second, "onnx_int8", tmp_path / "downloads")
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # activations quantized ahead (QDQ)
