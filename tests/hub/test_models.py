"""ModelService: uploads, zip checks, versions, formats, downloads, lineage, metrics, conversions."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from sqlalchemy import select

from tests.hub.conftest import HubClient
from visionloop.common.v1 import model_pb2, transfer_pb2
from visionloop.lib.storage import LocalObjectStore
from visionloop.loop.v1 import event_service_pb2 as events_pb
from visionloop.loop.v1 import model_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2 as project_pb
from visionloop.server.hub.db import schema

MIB = 1024 * 1024
MODEL_JSON: dict[str, Any] = {
    "resolution": 512,
    "categories": [{"id": "c1", "name": "weed", "type": "box"}, {"id": "c2", "name": "stem", "type": "point"}],
    "variant": "centernet_small",
}


def make_zip(
    model_json: dict[str, Any] | bytes | None = None,
    files: dict[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if model_json is not None:
            raw = model_json if isinstance(model_json, bytes) else json.dumps(model_json).encode()
            archive.writestr("model.json", raw)
        for name, data in (files if files is not None else {"weights.bin": b"\x01\x02" * 64}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload_messages(
    header: pb.UploadModelHeader, data: bytes, chunk_bytes: int = MIB, corrupt: int | None = None
) -> list[pb.UploadModelRequest]:
    messages = [pb.UploadModelRequest(header=header)]
    for index, offset in enumerate(range(0, len(data), chunk_bytes)):
        piece = data[offset : offset + chunk_bytes]
        if index == corrupt:
            piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
        messages.append(pb.UploadModelRequest(chunk=transfer_pb2.BlobChunk(offset=offset, data=piece)))
    return messages


async def stream(messages: list[pb.UploadModelRequest]) -> AsyncIterator[pb.UploadModelRequest]:
    for message in messages:
        yield message


def header_for(
    ref: project_pb.ProjectRef, data: bytes, fmt: str = "onnx", version: str = "", new_major: bool = False
) -> pb.UploadModelHeader:
    blob = transfer_pb2.BlobHeader(name="model.zip", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return pb.UploadModelHeader(ref=ref, format=fmt, version=version, new_major=new_major, blob=blob)


async def upload(
    hub: HubClient,
    ref: project_pb.ProjectRef,
    data: bytes,
    fmt: str = "onnx",
    version: str = "",
    new_major: bool = False,
    corrupt: int | None = None,
) -> model_pb2.ModelInfo:
    header = header_for(ref, data, fmt, version, new_major)
    response = await hub.models.UploadModel(stream(upload_messages(header, data, corrupt=corrupt)))
    return response.model


async def download(
    hub: HubClient, ref: project_pb.ProjectRef, version: str, fmt: str = "onnx", offset: int = 0
) -> tuple[transfer_pb2.BlobHeader, bytes, list[transfer_pb2.BlobChunk]]:
    key = pb.ModelKey(ref=ref, version=version)
    parts = [m async for m in hub.models.DownloadModel(pb.DownloadModelRequest(key=key, format=fmt, offset=offset))]
    assert parts[0].WhichOneof("part") == "header"
    chunks = [p.chunk for p in parts[1:]]
    return parts[0].header, b"".join(c.data for c in chunks), chunks


async def expect_error(code: grpc.StatusCode, call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


def model_blobs(hub: HubClient) -> list[str]:
    """Every object under models/ in the hub's store, on either stack."""
    store = hub.hub.store
    if isinstance(store, LocalObjectStore):
        root = store.root / "models"
        return [str(p.relative_to(store.root)) for p in root.rglob("*") if p.is_file()] if root.exists() else []
    listing = store._client.list_objects_v2(Bucket=store.bucket, Prefix="models/")  # type: ignore[attr-defined]
    return [item["Key"] for item in listing.get("Contents", [])]


async def versions(hub: HubClient, ref: project_pb.ProjectRef, fmt: str = "") -> list[str]:
    response = await hub.models.ListModels(pb.ListModelsRequest(ref=ref, format=fmt))
    return [m.version for m in response.models]


async def test_large_model_round_trip_in_chunks(hub: HubClient, project: project_pb.ProjectRef) -> None:
    weights = os.urandom(50 * MIB)
    data = make_zip(MODEL_JSON, {"weights.bin": weights}, zipfile.ZIP_STORED)

    model = await upload(hub, project, data)

    header, body, chunks = await download(hub, project, model.version)
    assert header.size_bytes == len(body) == model.size_bytes
    assert header.sha256 == hashlib.sha256(body).hexdigest() == model.sha256
    assert len(chunks) == -(-len(body) // MIB)
    assert all(len(c.data) <= MIB for c in chunks)
    assert [c.offset for c in chunks] == [i * MIB for i in range(len(chunks))]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("weights.bin") == weights
    assert list((hub.hub.spool).iterdir()) == []


async def test_corrupted_chunk_is_data_loss_and_leaves_nothing(hub: HubClient, project: project_pb.ProjectRef) -> None:
    data = make_zip(MODEL_JSON, {"weights.bin": os.urandom(3 * MIB)}, zipfile.ZIP_STORED)

    details = await expect_error(grpc.StatusCode.DATA_LOSS, upload(hub, project, data, corrupt=1))

    assert "sha256 mismatch" in details
    assert f"expected {hashlib.sha256(data).hexdigest()}" in details
    assert await versions(hub, project) == []
    assert not hub.hub.store.exists("models/acme/weeds/1.0/onnx.zip")
    assert model_blobs(hub) == []
    assert list(hub.hub.spool.iterdir()) == []
    # The hub still serves, and the failed upload did not use up a version.
    assert (await upload(hub, project, make_zip(MODEL_JSON))).version == "1.0"
    assert len(model_blobs(hub)) == 1


async def test_stream_protocol_errors(hub: HubClient, project: project_pb.ProjectRef) -> None:
    data = make_zip(MODEL_JSON, {"weights.bin": os.urandom(2 * MIB)}, zipfile.ZIP_STORED)
    header = header_for(project, data)
    messages = upload_messages(header, data)

    details = await expect_error(grpc.StatusCode.INVALID_ARGUMENT, hub.models.UploadModel(stream(messages[1:])))
    assert "first UploadModel message must be the header" in details
    details = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, hub.models.UploadModel(stream([messages[0], messages[2]]))
    )
    assert f"chunk offset {MIB} does not match the 0 bytes" in details
    short = pb.UploadModelHeader()
    short.CopyFrom(header)
    short.blob.size_bytes = len(data) - 10
    details = await expect_error(
        grpc.StatusCode.DATA_LOSS, hub.models.UploadModel(stream(upload_messages(short, data)))
    )
    assert f"expected {len(data) - 10} bytes (header.blob.size_bytes) but received at least" in details
    details = await expect_error(grpc.StatusCode.DATA_LOSS, hub.models.UploadModel(stream(messages[:-1])))
    assert f"expected {len(data)} bytes but received" in details
    huge = pb.UploadModelHeader()
    huge.CopyFrom(header)
    huge.blob.size_bytes = 3 * 1024**3
    details = await expect_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, hub.models.UploadModel(stream([pb.UploadModelRequest(header=huge)]))
    )
    assert "at most 2147483648 (2 GiB)" in details
    assert model_blobs(hub) == []
    assert list(hub.hub.spool.iterdir()) == []


async def test_version_sequence_and_events(hub: HubClient, project: project_pb.ProjectRef) -> None:
    data = make_zip(MODEL_JSON)
    assert (await upload(hub, project, data)).version == "1.0"
    assert (await upload(hub, project, data)).version == "1.1"
    assert (await upload(hub, project, data, new_major=True)).version == "2.0"
    assert (await upload(hub, project, data)).version == "2.1"
    assert await versions(hub, project) == ["2.1", "2.0", "1.1", "1.0"]

    rows = await hub.hub.db.read(lambda s: list(s.scalars(select(schema.Event).order_by(schema.Event.seq))))
    published = [r.subject for r in rows if r.type == events_pb.EVENT_TYPE_MODEL_PUBLISHED]
    added = [(r.subject, r.detail) for r in rows if r.type == events_pb.EVENT_TYPE_FORMAT_ADDED]
    assert published == ["1.0", "1.1", "2.0", "2.1"]
    assert added == [(v, "onnx") for v in published]


async def test_concurrent_uploads_get_distinct_versions(hub: HubClient, project: project_pb.ProjectRef) -> None:
    data = make_zip(MODEL_JSON)
    models = await asyncio.gather(*(upload(hub, project, data) for _ in range(4)))
    assert sorted(m.version for m in models) == ["1.0", "1.1", "1.2", "1.3"]
    assert len(model_blobs(hub)) == 4


async def test_second_format_of_a_version(hub: HubClient, project: project_pb.ProjectRef) -> None:
    first = await upload(hub, project, make_zip(MODEL_JSON))
    second = await upload(hub, project, make_zip(MODEL_JSON, {"model.pt": b"torch"}), fmt="pytorch", version="1.0")

    assert second.version == "1.0"
    assert second.id == first.id
    assert second.format == "pytorch"
    assert list(second.formats) == ["onnx", "pytorch"]
    assert await versions(hub, project) == ["1.0"]
    got = await hub.models.GetModel(pb.GetModelRequest(key=pb.ModelKey(ref=project, version="1.0")))
    assert got.model.format == "onnx"  # the first format uploaded
    got = await hub.models.GetModel(pb.GetModelRequest(key=pb.ModelKey(ref=project, version="1.0"), format="pytorch"))
    assert (got.model.format, got.model.sha256) == ("pytorch", second.sha256)

    details = await expect_error(
        grpc.StatusCode.ALREADY_EXISTS, upload(hub, project, make_zip(MODEL_JSON), fmt="pytorch", version="1.0")
    )
    assert "already has format 'pytorch'" in details
    details = await expect_error(
        grpc.StatusCode.NOT_FOUND, upload(hub, project, make_zip(MODEL_JSON), fmt="pytorch", version="7.0")
    )
    assert "model version 7.0 does not exist" in details
    assert len(model_blobs(hub)) == 2


async def test_model_json_is_completed_in_the_stored_zip(hub: HubClient, project: project_pb.ProjectRef) -> None:
    given = {**MODEL_JSON, "host": "evil", "version": 99.0, "id": 5, "format": "tflite", "custom": {"a": 1}}
    model = await upload(hub, project, make_zip(given), fmt="onnx")

    header, body, _ = await download(hub, project, "1.0")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        stored = json.loads(archive.read("model.json"))
        assert archive.read("weights.bin") == b"\x01\x02" * 64
    assert stored["host"] == hub.hub.host
    assert (stored["organization"], stored["project"]) == ("acme", "weeds")
    assert (stored["version"], stored["format"]) == ("1.0", "onnx")
    assert stored["id"] == model.id
    assert len(model.id) == 36
    assert stored["custom"] == {"a": 1}  # fields nodes add survive
    assert stored["categories"] == MODEL_JSON["categories"]
    assert header.sha256 == model.sha256 == hashlib.sha256(body).hexdigest()
    assert model.resolution == 512
    assert [(c.id, c.name, c.type) for c in model.categories] == [("c1", "weed", 1), ("c2", "stem", 2)]
    assert model.create_time.seconds > 0


async def test_malformed_zips_are_invalid_argument(hub: HubClient, project: project_pb.ProjectRef) -> None:
    symlink = io.BytesIO()
    with zipfile.ZipFile(symlink, "w") as archive:
        archive.writestr("model.json", json.dumps(MODEL_JSON))
        link = zipfile.ZipInfo("weights.bin")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    cases = {
        "the upload is not a zip file": b"this is not a zip" * 10,
        "the zip has no model.json at its top level": make_zip(None),
        "zip entry '../evil' escapes the archive with '..'": make_zip(MODEL_JSON, {"../evil": b"x"}),
        "zip entry '/etc/cron.d/evil' has an absolute path": make_zip(MODEL_JSON, {"/etc/cron.d/evil": b"x"}),
        "zip entry 'weights.bin' is a symbolic link": symlink.getvalue(),
        "model.json is not valid JSON": make_zip(b"{not json"),
        "model.json must be a JSON object, got list": make_zip(b"[1, 2]"),
        "model.json categories[0].type 'cube' is unknown": make_zip({"categories": [{"name": "a", "type": "cube"}]}),
        "model.json resolution must be a non-negative integer": make_zip({"resolution": "big"}),
        "a zip bomb?": make_zip(MODEL_JSON, {"zeros.bin": bytes(8 * MIB)}),
    }
    for expected, data in cases.items():
        details = await expect_error(grpc.StatusCode.INVALID_ARGUMENT, upload(hub, project, data))
        assert expected in details, (expected, details)
    assert await versions(hub, project) == []
    assert model_blobs(hub) == []
    assert list(hub.hub.spool.iterdir()) == []


async def test_unknown_project_is_not_found(hub: HubClient, project: project_pb.ProjectRef) -> None:
    other = project_pb.ProjectRef(organization="acme", project="nope")
    details = await expect_error(grpc.StatusCode.NOT_FOUND, upload(hub, other, make_zip(MODEL_JSON)))
    assert "project acme/nope does not exist" in details
    await expect_error(grpc.StatusCode.NOT_FOUND, hub.models.ListModels(pb.ListModelsRequest(ref=other)))
    key = pb.ModelKey(ref=other, version="1.0")
    await expect_error(grpc.StatusCode.NOT_FOUND, hub.models.GetModel(pb.GetModelRequest(key=key)))
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        hub.models.GetModel(pb.GetModelRequest(key=pb.ModelKey(ref=project, version="1.0"))),
    )


async def test_list_models_format_filter(hub: HubClient, project: project_pb.ProjectRef) -> None:
    data = make_zip(MODEL_JSON)
    await upload(hub, project, data, fmt="onnx")  # 1.0
    await upload(hub, project, data, fmt="pytorch")  # 1.1
    await upload(hub, project, data, fmt="onnx")  # 1.2
    await upload(hub, project, data, fmt="onnx_fp16", version="1.0")

    assert await versions(hub, project) == ["1.2", "1.1", "1.0"]
    assert await versions(hub, project, "onnx") == ["1.2", "1.0"]
    assert await versions(hub, project, "pytorch") == ["1.1"]
    assert await versions(hub, project, "tensorrt") == []
    listed = await hub.models.ListModels(pb.ListModelsRequest(ref=project, format="onnx_fp16"))
    assert [(m.version, m.format, list(m.formats)) for m in listed.models] == [
        ("1.0", "onnx_fp16", ["onnx", "onnx_fp16"])
    ]


async def test_lineage_follows_base_models_and_stops_on_cycles(hub: HubClient, project: project_pb.ProjectRef) -> None:
    await upload(hub, project, make_zip({**MODEL_JSON, "base_model_version": "1.2"}))  # 1.0, forms a cycle
    await upload(hub, project, make_zip({**MODEL_JSON, "base_model_version": "1.0"}))  # 1.1
    await upload(hub, project, make_zip({**MODEL_JSON, "base_model_version": "1.1"}))  # 1.2
    await upload(hub, project, make_zip({**MODEL_JSON, "base_model_version": "0.9"}))  # 1.3, unknown base

    async def lineage(version: str) -> list[str]:
        key = pb.ModelKey(ref=project, version=version)
        return [m.version for m in (await hub.models.GetModelLineage(pb.GetModelLineageRequest(key=key))).models]

    assert await lineage("1.2") == ["1.2", "1.1", "1.0"]
    assert await lineage("1.0") == ["1.0", "1.2", "1.1"]
    assert await lineage("1.3") == ["1.3"]
    await expect_error(grpc.StatusCode.NOT_FOUND, lineage("4.0"))


async def test_metrics_round_trip(hub: HubClient, project: project_pb.ProjectRef) -> None:
    await upload(hub, project, make_zip(MODEL_JSON))
    key = pb.ModelKey(ref=project, version="1.0")
    metrics = model_pb2.ModelMetrics(
        map50=0.75,
        image_count=40,
        classes=[model_pb2.ClassMetrics(category_id="c1", category_name="weed", tp=9, fp=1, fn=2, ap50=0.75)],
    )

    await hub.models.SetModelMetrics(pb.SetModelMetricsRequest(key=key, metrics=metrics))

    assert (await hub.models.GetModel(pb.GetModelRequest(key=key))).model.metrics == metrics
    assert (await hub.models.ListModels(pb.ListModelsRequest(ref=project))).models[0].metrics == metrics
    bad = model_pb2.ModelMetrics(map50=1.5)
    await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, hub.models.SetModelMetrics(pb.SetModelMetricsRequest(key=key, metrics=bad))
    )
    missing = pb.ModelKey(ref=project, version="3.0")
    await expect_error(
        grpc.StatusCode.NOT_FOUND, hub.models.SetModelMetrics(pb.SetModelMetricsRequest(key=missing, metrics=metrics))
    )


async def test_download_with_offset_and_errors(hub: HubClient, project: project_pb.ProjectRef) -> None:
    model = await upload(hub, project, make_zip(MODEL_JSON, {"w.bin": os.urandom(MIB + 5000)}, zipfile.ZIP_STORED))
    _, full, _ = await download(hub, project, "1.0")

    header, rest, chunks = await download(hub, project, "1.0", offset=1000)
    assert (header.size_bytes, header.sha256) == (model.size_bytes, model.sha256)
    assert rest == full[1000:]
    assert chunks[0].offset == 1000
    header, rest, chunks = await download(hub, project, "1.0", offset=len(full))
    assert header.size_bytes == len(full)
    assert rest == b""
    assert chunks == []

    await expect_error(grpc.StatusCode.OUT_OF_RANGE, download(hub, project, "1.0", offset=len(full) + 1))
    await expect_error(grpc.StatusCode.NOT_FOUND, download(hub, project, "1.0", fmt="tensorrt"))
    await expect_error(grpc.StatusCode.NOT_FOUND, download(hub, project, "1.1"))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, download(hub, project, "one"))


async def test_conversion_claims(hub: HubClient, project: project_pb.ProjectRef) -> None:
    await upload(hub, project, make_zip(MODEL_JSON), fmt="onnx")  # 1.0
    await upload(hub, project, make_zip(MODEL_JSON), fmt="tflite")  # 1.1: nothing to convert from

    def claim(lease: duration_pb2.Duration | None = None) -> Any:
        request = pb.ClaimConversionRequest(node_id="conv-1", target_formats=["onnx_fp16"], ref=project, lease=lease)
        return hub.models.ClaimConversion(request)

    first = await claim()
    assert (first.key.version, first.source_format, first.target_format, first.attempt) == (
        "1.0",
        "onnx",
        "onnx_fp16",
        1,
    )
    assert first.lease_expire_time.seconds > 0
    await expect_error(grpc.StatusCode.NOT_FOUND, claim())  # leased to conv-1

    report = pb.ReportConversionFailureRequest(conversion_id=first.conversion_id, reason="parity check failed")
    assert (await hub.models.ReportConversionFailure(report)).will_retry
    second = await claim(duration_pb2.Duration(nanos=100_000_000))
    assert (second.conversion_id, second.attempt) == (first.conversion_id, 2)
    hub.hub.clock_offset += timedelta(seconds=1)
    third = await claim()  # the short lease expired
    assert third.attempt == 3

    await upload(hub, project, make_zip(MODEL_JSON), fmt="onnx_fp16", version="1.0")
    await expect_error(grpc.StatusCode.NOT_FOUND, claim())
    state = await hub.hub.db.read(lambda s: s.get(schema.Conversion, first.conversion_id).state)
    assert state == 3  # CONVERSION_STATE_SUCCEEDED
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, hub.models.ReportConversionFailure(report))


async def test_permanent_conversion_failure(hub: HubClient, project: project_pb.ProjectRef) -> None:
    await upload(hub, project, make_zip(MODEL_JSON), fmt="pytorch")
    request = pb.ClaimConversionRequest(node_id="conv-1", target_formats=["onnx"])
    claimed = await hub.models.ClaimConversion(request)
    assert (claimed.source_format, claimed.target_format) == ("pytorch", "onnx")

    report = pb.ReportConversionFailureRequest(conversion_id=claimed.conversion_id, reason="bad op", permanent=True)
    assert not (await hub.models.ReportConversionFailure(report)).will_retry
    await expect_error(grpc.StatusCode.NOT_FOUND, hub.models.ClaimConversion(request))


async def test_a_training_publishes_one_version_however_often_it_retries(
    hub: HubClient, project: project_pb.ProjectRef
) -> None:
    """A trainer killed mid-upload uploads again: same version, no duplicate, formats join it."""
    trained = {**MODEL_JSON, "training_id": "training-1"}
    first = await upload(hub, project, make_zip(trained), fmt="pytorch")
    again = await upload(hub, project, make_zip(trained), fmt="pytorch")  # the answer was lost
    onnx = await upload(hub, project, make_zip(trained), fmt="onnx")  # resumed without the version
    assert first.version == again.version == onnx.version == "1.0"
    assert again.sha256 == first.sha256
    other = await upload(hub, project, make_zip({**MODEL_JSON, "training_id": "training-2"}), fmt="pytorch")
    assert other.version == "1.1"
    listed = await hub.models.ListModels(pb.ListModelsRequest(ref=project))
    assert sorted((m.version, tuple(sorted(m.formats))) for m in listed.models) == [
        ("1.0", ("onnx", "pytorch")),
        ("1.1", ("pytorch",)),
    ]
