"""Every RPC of every service fuzzed over real gRPC, and the edge's promises one by one.

All five services run as ``visionloop up`` in one process (tests/fuzzing.py starts it), shared
by the tests of this module. ``VISIONLOOP_FUZZ_SEED`` and ``VISIONLOOP_FUZZ_CALLS`` change the
fuzz run (a finding names the seed and call index that reproduce it); ``scripts/fuzz`` runs
longer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from tests import fuzzing
from visionloop.common.v1 import image_pb2, node_pb2, transfer_pb2
from visionloop.detector.v1 import detector_service_pb2 as detector_pb
from visionloop.loop.v1 import (
    annotation_service_pb2,
    image_service_pb2,
    model_service_pb2,
    node_service_pb2,
    project_service_pb2,
    training_service_pb2,
)

SEED = int(os.environ.get("VISIONLOOP_FUZZ_SEED", "20261206"))
CALLS = int(os.environ.get("VISIONLOOP_FUZZ_CALLS", "40"))
MEMORY_GROWTH_MIB = 200  # from the first half of the run to the second (transient peaks aside)
REF = project_service_pb2.ProjectRef(organization=fuzzing.ORGANIZATION, project=fuzzing.PROJECT)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing.Stack]:
    with fuzzing.stack(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


def _call(
    stack: fuzzing.Stack, server: str, path: str, request: bytes | list[bytes], stream_out: bool = False
) -> list[bytes]:
    channel = stack.channels[server]
    if isinstance(request, list):
        if stream_out:
            return list(channel.stream_stream(path)(iter(request), timeout=60))
        return [channel.stream_unary(path)(iter(request), timeout=60)]
    return [channel.unary_unary(path)(request, timeout=60)]


def _refused(stack: fuzzing.Stack, server: str, path: str, request: bytes | list[bytes], **kwargs: bool) -> str:
    """The details of the INVALID_ARGUMENT the call must end with."""
    with pytest.raises(grpc.RpcError) as raised:
        _call(stack, server, path, request, **kwargs)
    error = raised.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()  # type: ignore[attr-defined]
    return error.details()  # type: ignore[attr-defined, no-any-return]


def _stack_traces(stack: fuzzing.Stack, since: int) -> list[str]:
    """The stack traces the servers logged after log record ``since``."""
    return [str(record.get("exception"))[-500:] for record in stack.process.lines[since:] if "exception" in record]


def test_reflection_lists_every_service_of_the_contracts(up: fuzzing.Stack) -> None:
    rpcs = fuzzing.discover(up)
    served = {rpc.service for rpc in rpcs}
    assert fuzzing.contract_services() <= served
    for server in fuzzing.SERVICES:  # every process serves these beside its own services
        mine = {rpc.service for rpc in rpcs if rpc.server == server}
        assert {"visionloop.ops.v1.OpsService", "grpc.health.v1.Health"} <= mine, server


GARBAGE = b"\xff\xff\xff"


def _first_messages() -> dict[str, tuple[str, bytes, bool]]:
    """For each client-streaming RPC of the issue: (server, a valid first message, responses streamed)."""
    blob = transfer_pb2.BlobHeader(size_bytes=10, sha256="0" * 64)
    return {
        "/visionloop.loop.v1.ImageService/UploadImages": (
            "loop",
            image_service_pb2.UploadImagesRequest(
                ref=REF, header=image_service_pb2.ImageHeader(sequence=1, blob=blob)
            ).SerializeToString(),
            True,
        ),
        "/visionloop.loop.v1.AnnotationService/ImportDataset": (
            "loop",
            annotation_service_pb2.ImportDatasetRequest(
                header=annotation_service_pb2.ImportDatasetHeader(ref=REF, format=1, blob=blob)
            ).SerializeToString(),
            False,
        ),
        "/visionloop.loop.v1.ModelService/UploadModel": (
            "loop",
            model_service_pb2.UploadModelRequest(
                header=model_service_pb2.UploadModelHeader(ref=REF, format="onnx", blob=blob)
            ).SerializeToString(),
            False,
        ),
        "/visionloop.detector.v1.DetectorService/DetectStream": (
            "detector",
            detector_pb.DetectStreamRequest(
                frame_id=1, image=image_pb2.Image(encoded=fuzzing.pictures()[0])
            ).SerializeToString(),
            True,
        ),
    }


@pytest.mark.parametrize("path", list(_first_messages()))
def test_a_malformed_stream_message_is_invalid_argument_without_a_stack_trace(up: fuzzing.Stack, path: str) -> None:
    server, first, stream_out = _first_messages()[path]
    since = len(up.process.lines)
    details = _refused(up, server, path, [first, GARBAGE], stream_out=stream_out)
    assert "stream message 2" in details
    assert "does not parse" in details
    assert _stack_traces(up, since) == []


def test_a_malformed_unary_request_is_invalid_argument(up: fuzzing.Stack) -> None:
    since = len(up.process.lines)
    details = _refused(up, "loop", "/visionloop.loop.v1.ProjectService/GetProject", GARBAGE)
    assert "GetProjectRequest does not parse" in details
    assert _stack_traces(up, since) == []


def _status(node_id: str, **fields: object) -> node_pb2.NodeStatus:
    return node_pb2.NodeStatus(node_id=node_id, name=node_id, type=node_pb2.NODE_TYPE_DETECTOR, **fields)  # type: ignore[arg-type]


def test_a_huge_node_status_is_refused_and_listing_keeps_working(up: fuzzing.Stack) -> None:
    register = "/visionloop.loop.v1.NodeService/RegisterNode"
    listing = "/visionloop.loop.v1.NodeService/ListNodes"
    _call(up, "loop", register, node_service_pb2.RegisterNodeRequest(status=_status("fine")).SerializeToString())
    nine_mb = _status("big", errors=[node_pb2.NodeError(key="x", message="m" * 9_000_000)])
    details = _refused(up, "loop", register, node_service_pb2.RegisterNodeRequest(status=nine_mb).SerializeToString())
    assert "status" in details
    assert len(details) < 1000
    many = _status(
        "many", capabilities=["c" * 1000] * 64, errors=[node_pb2.NodeError(key="k", message="m" * 1024)] * 32
    )
    details = _refused(up, "loop", register, node_service_pb2.RegisterNodeRequest(status=many).SerializeToString())
    assert "bytes serialized, at most 65536" in details
    # 9 MB the contract does not describe (unknown fields) are dropped at the edge, never stored
    unknown = b"\xfa\x3e" + fuzzing._varint(9_000_000) + b"u" * 9_000_000  # a length-delimited field no contract has
    for node_id in ("sneaky-1", "sneaky-2"):
        status = _status(node_id).SerializeToString() + unknown
        request = b"\x0a" + fuzzing._varint(len(status)) + status
        _call(up, "loop", register, request)
    (answer,) = _call(up, "loop", listing, node_service_pb2.ListNodesRequest(include_offline=True).SerializeToString())
    nodes = node_service_pb2.ListNodesResponse.FromString(answer).nodes
    assert {"fine", "sneaky-1", "sneaky-2"} <= {node.node_id for node in nodes}
    assert len(answer) < 100_000


def test_a_million_value_filter_is_refused_without_a_huge_log_line(up: fuzzing.Stack) -> None:
    since = len(up.process.raw)
    request = image_service_pb2.ListImagesRequest(ref=REF, filter=image_service_pb2.ImageFilter(tags=["t"] * 10**6))
    details = _refused(up, "loop", "/visionloop.loop.v1.ImageService/ListImages", request.SerializeToString())
    assert "filter.tags: 1000000 entries, at most 1000 allowed" in details
    assert max(map(len, up.process.raw[since:]), default=0) < 10_000


@pytest.mark.parametrize(
    ("path", "request_"),
    [
        ("/visionloop.loop.v1.NodeService/GetNode", node_service_pb2.GetNodeRequest(node_id="n" * 1_000_000)),
        (
            "/visionloop.loop.v1.ImageService/GetImage",
            image_service_pb2.GetImageRequest(ref=REF, image_id="i" * 1_000_000),
        ),
    ],
)
def test_a_megabyte_id_is_not_echoed(up: fuzzing.Stack, path: str, request_: object) -> None:
    details = _refused(up, "loop", path, request_.SerializeToString())  # type: ignore[attr-defined]
    assert len(details) < 1000
    assert "1000000 characters, at most 1024 allowed" in details


def _nan_hyperparameters() -> training_service_pb2.CreateTrainingRequest:
    values = struct_pb2.Struct()
    values.update({"epochs": 3, "schedule": {"lr": [0.1, float("nan")]}})
    request = training_service_pb2.CreateTrainingRequest(ref=REF)
    request.spec.hyperparameters.CopyFrom(values)
    return request


@pytest.mark.parametrize(
    ("path", "request_", "field"),
    [
        (
            "/visionloop.loop.v1.ImageService/ListImages",
            image_service_pb2.ListImagesRequest(
                ref=REF, filter=image_service_pb2.ImageFilter(upload_time_from={"seconds": -(10**12)})
            ),
            "filter.upload_time_from: timestamp",
        ),
        (
            "/visionloop.loop.v1.TrainingService/ClaimTraining",
            training_service_pb2.ClaimTrainingRequest(node_id="n", lease={"seconds": 10**11}),
            "lease: 1e+11 s is out of range",
        ),
        (
            "/visionloop.loop.v1.NodeService/ListNodes",
            node_service_pb2.ListNodesRequest(type=77),  # type: ignore[arg-type]
            "type: 77 is not a value of NodeType",
        ),
        (
            "/visionloop.loop.v1.TrainingService/CreateTraining",
            _nan_hyperparameters(),
            "spec.hyperparameters.fields['schedule'].struct_value.fields['lr'].list_value.values[1].number_value",
        ),
        (
            "/visionloop.loop.v1.ImageService/UpdateImage",
            image_service_pb2.UpdateImageRequest(ref=REF, image_id="x", priority=float("inf")),
            "priority: inf is not a finite number",
        ),
    ],
)
def test_values_out_of_range_are_refused_naming_the_field(
    up: fuzzing.Stack, path: str, request_: object, field: str
) -> None:
    details = _refused(up, "loop", path, request_.SerializeToString())  # type: ignore[attr-defined]
    assert field in details


def test_fuzz_every_rpc(up: fuzzing.Stack, tmp_path: Path) -> None:
    rpcs = fuzzing.discover(up)
    report = fuzzing.run(up, rpcs, seed=SEED, calls_per_rpc=CALLS)
    print(report.summary())  # the figures, with -s
    assert report.findings == [], report.summary()
    assert len(report.calls) == len(rpcs)
    assert min(report.calls.values()) == CALLS
    assert report.growth_mib < MEMORY_GROWTH_MIB, report.summary()
