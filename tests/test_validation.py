"""The request checks at the edge (runtime/validation.py, fastcheck.py, limits.py), without servers.

The servers' side is in tests/test_fuzz.py; here: the limits the contracts declare, the two
checks agreeing, the guarded deserializer, and the bounds on echoed text and log lines.
"""

from __future__ import annotations

import io
import json
import random

import grpc
import pytest
import structlog
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from tests import fuzzing
from visionloop.common.v1 import limits_pb2, node_pb2, training_pb2
from visionloop.loop.v1 import image_service_pb2, node_service_pb2
from visionloop.runtime import fastcheck, validation
from visionloop.runtime import limits as L
from visionloop.runtime.config import LogFormat
from visionloop.runtime.logging import configure_logging
from visionloop.runtime.text import clip, quoted


def _request_types() -> list[Descriptor]:
    pool = descriptor_pool.Default()
    return [
        method.input_type
        for service in sorted(fuzzing.contract_services())
        for method in pool.FindServiceByName(service).methods
    ]


def _reachable(descriptor: Descriptor, seen: set[str]) -> list[FieldDescriptor]:
    if descriptor.full_name in seen:
        return []
    seen.add(descriptor.full_name)
    fields = list(descriptor.fields)
    for described in descriptor.fields:
        if described.message_type is not None:
            fields += _reachable(described.message_type, seen)
    return fields


def test_every_bytes_field_of_a_request_declares_its_limit() -> None:
    """Bytes carry bulk data (pictures, chunks): the 1 KiB default would refuse them, so each says how much."""
    seen: set[str] = set()
    fields = [f for d in _request_types() for f in _reachable(d, seen) if f.type == FieldDescriptor.TYPE_BYTES]
    assert fields
    undeclared = [f.full_name for f in fields if not L.of(f).max_length]
    assert undeclared == []


@pytest.mark.parametrize("descriptor", _request_types(), ids=lambda d: d.name)
def test_the_fast_check_and_the_explaining_check_agree(descriptor: Descriptor) -> None:
    cls = message_factory.GetMessageClass(descriptor)
    fast = fastcheck.predicate(descriptor)
    refused = 0
    for index in range(40):
        generator = fuzzing.Generator(random.Random(f"agree/{descriptor.full_name}/{index}"), fuzzing.Pool())
        generator.reset(extreme=index % 2 == 0)
        message = generator.message(descriptor)
        data = message.SerializeToString()
        try:
            parsed = cls.FromString(data)
        except DecodeError:  # nested deeper than the parser goes: the guard refuses it before any check
            continue
        explained = validation.problem(parsed, len(data))
        ok = fast is None or fast(parsed, len(data))
        assert ok == (explained is None), (index, explained)
        assert ok == (validation.problem(parsed) is None), index  # the same without the size hint
        refused += not ok
    if fast is not None and any(_limits_matter(f) for f in descriptor.fields):
        assert refused, "no generated message broke a limit: the generator does not reach this type"


def _limits_matter(described: FieldDescriptor) -> bool:
    return described.type != FieldDescriptor.TYPE_BOOL


def test_defaults_and_declared_limits() -> None:
    def problem(message: object) -> str | None:
        return validation.problem(message)  # type: ignore[arg-type]

    assert problem(node_pb2.NodeError(key="k" * 128, message="m" * 1024)) is None
    assert problem(node_pb2.NodeError(key="k" * 129)) == "key: 129 characters, at most 128 allowed"
    assert problem(node_pb2.NodeError(message="m" * 1025)) == "message: 1025 characters, at most 1024 allowed"
    assert problem(node_pb2.NodeError(message="a\x00b")) == "message: contains a NUL character"
    assert problem(node_pb2.NodeStatus(type=9)) == "type: 9 is not a value of NodeType"  # type: ignore[arg-type]
    assert problem(node_pb2.NodeStatus(capabilities=["c"] * 65)) == "capabilities: 65 entries, at most 64 allowed"
    assert problem(node_pb2.NodeStatus(uptime={"seconds": -1})) == (
        "uptime: -1 s is out of range: must be between 0 s and 3.1536e+08 s"
    )
    assert problem(node_pb2.NodeStatus(uptime={"seconds": 5, "nanos": -1})) == (
        "uptime: (seconds=5, nanos=-1) is not a valid duration"
    )
    stamp = node_pb2.NodeError(first_seen_time={"seconds": L.MAX_TIMESTAMP_SECONDS + 1})
    assert problem(stamp) is not None
    assert problem(stamp).startswith("first_seen_time: timestamp")
    assert problem(node_pb2.NodeError(first_seen_time={"seconds": L.MAX_TIMESTAMP_SECONDS})) is None
    errors = node_pb2.NodeStatus(errors=[node_pb2.NodeError(), node_pb2.NodeError(key="k" * 200)])
    assert problem(errors) == "errors[1].key: 200 characters, at most 128 allowed"


def test_the_option_is_read_from_the_contract() -> None:
    status = node_service_pb2.RegisterNodeRequest.DESCRIPTOR.fields_by_name["status"]
    assert L.of(status).max_length == 65536
    loss = descriptor_pool.Default().FindFieldByName("visionloop.common.v1.TrainingStatus.loss")
    assert L.of(loss).allow_non_finite
    assert L.of(loss) != limits_pb2.Limits()


def test_the_guarded_deserializer_never_raises_and_drops_unknown_fields() -> None:
    handler = validation.guard(
        grpc.unary_unary_rpc_method_handler(
            lambda request, context: request,
            request_deserializer=node_service_pb2.GetNodeRequest.FromString,
        )
    )
    decode = handler.request_deserializer
    assert decode(b"\xff\xff") == validation.Rejected(
        "the GetNodeRequest does not parse (corrupt wire format or nested too deeply)"
    )
    assert decode(fuzzing._nested(200)) == decode(b"\xff\xff")
    refused = decode(node_service_pb2.GetNodeRequest(node_id="x" * 2000).SerializeToString())
    assert refused == validation.Rejected("GetNodeRequest.node_id: 2000 characters, at most 1024 allowed")
    with_unknown = node_service_pb2.GetNodeRequest(node_id="n").SerializeToString() + b"\xfa\x3e\x03abc"
    request = decode(with_unknown)
    assert request.node_id == "n"
    assert request.SerializeToString() == b"\x0a\x01n"
    with pytest.raises(validation.InvalidArgument, match="does not parse"):
        handler.unary_unary(decode(b"\xff\xff"), None)


async def test_a_stream_is_checked_message_by_message() -> None:
    seen: list[object] = []

    async def consume(requests: object, context: object) -> None:
        async for request in requests:  # type: ignore[attr-defined]
            seen.append(request)

    handler = validation.guard(
        grpc.stream_unary_rpc_method_handler(
            consume, request_deserializer=image_service_pb2.UploadImagesRequest.FromString
        )
    )
    decode = handler.request_deserializer

    async def requests() -> object:
        yield decode(image_service_pb2.UploadImagesRequest(ref={"organization": "a"}).SerializeToString())
        yield decode(b"\x0a\xff")

    with pytest.raises(validation.InvalidArgument, match=r"^stream message 2: the UploadImagesRequest does not parse"):
        await handler.stream_unary(requests(), None)
    assert len(seen) == 1


def test_echoed_text_is_bounded() -> None:
    assert clip("abc", 5) == "abc"
    clipped = clip("x" * 1_000_000, 40)
    assert clipped == "x" * 13 + "… (999987 more characters)"
    assert len(clipped) <= 40
    assert quoted("node-1") == "'node-1'"
    assert quoted("n" * 1_000_000, 8) == "'nnnnnnnn'… (1000000 long)"
    assert len(quoted(["x" * 500] * 5, 80)) < 120


def test_a_log_line_stays_bounded_whatever_it_carries() -> None:
    out = io.StringIO()
    configure_logging(LogFormat.JSON, "info", stream=out)
    try:
        structlog.stdlib.get_logger("test").warning("echo", value="v" * 3_000_000)
        try:
            raise ValueError("e" * 3_000_000)
        except ValueError:
            structlog.stdlib.get_logger("test").exception("failed")
    finally:
        configure_logging(LogFormat.JSON, "info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert max(map(len, lines)) < 70_000
    assert json.loads(lines[0])["value"].endswith("more characters)")


def test_model_json_keeps_to_the_contract() -> None:
    """The hub stores a model's model.json and lists it back: it gets the limits of a request."""
    from visionloop.lib.model_format.model_json import model_info_from_json
    from visionloop.runtime.errors import InvalidArgument

    categories = [{"name": f"c{index}", "type": "box"} for index in range(10_001)]
    with pytest.raises(InvalidArgument, match=r"^model.json categories: 10001 entries, at most 10000 allowed$"):
        model_info_from_json({"categories": categories})
    with pytest.raises(InvalidArgument, match=r"^model.json comment: 5000 characters, at most 4096 allowed$"):
        model_info_from_json({"comment": "x" * 5000})
    assert len(model_info_from_json({"categories": categories[:10_000]}).categories) == 10_000


def test_a_trainer_step_error_fits_the_contract() -> None:
    from visionloop.server.trainer.machine import _describe

    message = _describe(RuntimeError("x" * 100_000))
    assert message.startswith("RuntimeError: xxx")
    assert validation.problem(training_pb2.StepError(message=message)) is None
