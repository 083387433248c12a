"""Several replicas convert each model once; a broken model fails with its reason, boundedly, and blocks nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf import duration_pb2
from sqlalchemy import select

from tests.cancellation import answer_swallowing_cancel
from tests.converter.conftest import HubClient, StartConverter, broken_pytorch_zip, onnx_stub_zip, pytorch_zip
from visionloop.common.v1 import node_pb2
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.loop.v1 import model_service_pb2, node_service_pb2
from visionloop.server.converter.hub_client import ConverterHub
from visionloop.server.hub.db import schema

TARGETS = {"onnx", "triton_python"}


async def conversion_rows(hub: HubClient) -> list[schema.Conversion]:
    return await hub.hub.db.read(lambda s: list(s.scalars(select(schema.Conversion))))


async def wait_settled(hub: HubClient, count: int, seconds: float = 60.0) -> list[schema.Conversion]:
    """The conversion rows once ``count`` of them exist and none is pending or running."""
    deadline = asyncio.get_running_loop().time() + seconds
    settled = {pb.CONVERSION_STATE_SUCCEEDED, pb.CONVERSION_STATE_FAILED}
    while True:
        rows = await conversion_rows(hub)
        if len(rows) >= count and all(r.state in settled for r in rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"conversions did not settle: {[(r.target_format, r.state) for r in rows]}")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("hub_stack", ["sqlite", "postgres"], indirect=True)
async def test_two_replicas_convert_every_model_once(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path
) -> None:
    replicas = [await start_converter(f"replica-{i}", target_formats="onnx,triton_python") for i in range(2)]
    versions = [await hub.upload(pytorch_zip(tmp_path / f"m{i}.zip", seed=i), "pytorch") for i in range(3)]
    for version in versions:
        await hub.wait_formats(version, TARGETS)

    rows = await wait_settled(hub, len(versions) * len(TARGETS))
    assert len(rows) == len(versions) * len(TARGETS)
    assert all((r.state, r.attempts) == (pb.CONVERSION_STATE_SUCCEEDED, 1) for r in rows)
    done = [
        (c.version, c.target_format)
        for replica in replicas
        for c in (await replica.stub.ListConversions(pb.ListConversionsRequest())).conversions
    ]
    # Every (version, format) ran on exactly one replica, once.
    assert Counter(done) == Counter({(v, t): 1 for v in versions for t in TARGETS})
    assert {r.node_id for r in rows} <= {replica.servicer.converter.hub.node_id for replica in replicas}


async def test_broken_model_fails_with_its_reason_and_blocks_nothing(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path
) -> None:
    converter = await start_converter(target_formats="onnx", max_attempts=2)
    broken = await hub.upload(broken_pytorch_zip(tmp_path / "broken.zip"), "pytorch")
    unknown = await hub.upload(pytorch_zip(tmp_path / "alien.zip", variant="alien_net"), "pytorch")
    good = await hub.upload(pytorch_zip(tmp_path / "good.zip"), "pytorch")

    await hub.wait_formats(good, {"onnx"})  # the broken ones before it did not hold it up
    rows = {r.model_pk: r for r in await wait_settled(hub, 3)}
    by_version = await hub.hub.db.read(
        lambda s: {m.version: rows[m.pk] for m in s.scalars(select(schema.Model)) if m.pk in rows}
    )
    failed = by_version[broken]
    assert failed.state == pb.CONVERSION_STATE_FAILED
    assert failed.attempts == 2  # CONVERTER_MAX_ATTEMPTS, below the hub's own limit of 3
    assert failed.reason.startswith("the PyTorch model does not load: ")
    alien = by_version[unknown]
    assert (alien.state, alien.attempts) == (pb.CONVERSION_STATE_FAILED, 1)  # can never convert: not retried
    assert "no PyTorch exporter for model variant 'alien_net'" in alien.reason
    assert (by_version[good].state, by_version[good].attempts) == (pb.CONVERSION_STATE_SUCCEEDED, 1)
    assert await hub.formats(broken) == ["pytorch"]

    expected = Counter(
        {
            (broken, pb.CONVERSION_STATE_FAILED): 2,
            (unknown, pb.CONVERSION_STATE_FAILED): 1,
            (good, pb.CONVERSION_STATE_SUCCEEDED): 1,
        }
    )
    # The hub records the upload a moment before the converter notes its own success.
    for _ in range(100):
        listed = (await converter.stub.ListConversions(pb.ListConversionsRequest())).conversions
        if Counter((c.version, c.state) for c in listed) == expected:
            break
        await asyncio.sleep(0.1)
    assert Counter((c.version, c.state) for c in listed) == expected
    assert all(c.reason for c in listed if c.state == pb.CONVERSION_STATE_FAILED)


async def test_a_dead_replicas_conversion_is_taken_over_after_its_lease(
    hub: HubClient, start_converter: StartConverter, tmp_path: Path
) -> None:
    version = await hub.upload(onnx_stub_zip(tmp_path / "stub.zip"), "onnx")
    lease = duration_pb2.Duration(seconds=60)
    claim = model_service_pb2.ClaimConversionRequest(node_id="crashed", target_formats=["triton_python"], lease=lease)
    taken = await hub.models.ClaimConversion(claim)  # ...and the replica that took it dies
    converter = await start_converter(target_formats="triton_python", sweep_seconds=0.2)
    await asyncio.sleep(0.5)
    assert await hub.formats(version) == ["onnx"]  # leased: nobody else may take it yet

    hub.hub.clock_offset = timedelta(seconds=61)  # the lease runs out; the hub sends no event for that
    await hub.wait_formats(version, {"triton_python"}, seconds=20)
    (row,) = await conversion_rows(hub)
    assert (row.id, row.attempts, row.node_id) == (taken.conversion_id, 2, converter.servicer.converter.hub.node_id)

    # The converter registered as a node (shown offline here only because the hub's clock jumped).
    listing = node_service_pb2.ListNodesRequest(type=node_pb2.NODE_TYPE_CONVERTER, include_offline=True)
    nodes = (await hub.nodes.ListNodes(listing)).nodes
    assert [(n.node_id, list(n.capabilities)) for n in nodes] == [(row.node_id, ["triton_python"])]


async def test_a_converter_stops_even_when_grpc_loses_the_cancellation(
    hub: HubClient, start_converter: StartConverter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """grpc.aio can answer a cancelled claim with the status that had just arrived ("no conversion
    pending"); the converter must still stop instead of claiming once a minute forever."""
    claiming = asyncio.Event()
    lost: list[int] = []

    async def claim_losing_the_cancel(self: ConverterHub, *args: object, **kwargs: object) -> None:
        claiming.set()
        await answer_swallowing_cancel(lost)
        return None  # as ConverterHub.claim returns for NOT_FOUND "no conversion pending"

    monkeypatch.setattr(ConverterHub, "claim", claim_losing_the_cancel)
    converter = await start_converter(target_formats="onnx", sweep_seconds=3600)
    await asyncio.wait_for(claiming.wait(), 30)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(converter.server.stop(0), 30)  # a swallowed stop would end only here, cancelled
    assert asyncio.get_running_loop().time() - started < 10
    assert lost == [1]  # the first cancellation was lost, and the converter stopped all the same
