"""The interceptor chain in-process: domain errors keep their code and message, surprises become INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc as pb_grpc
from visionloop.runtime import errors
from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.server import GrpcServer, Mount, ServiceSpec


class Faulty(pb_grpc.DetectorServiceServicer):
    async def Detect(self, request: pb.DetectRequest, context: grpc.aio.ServicerContext) -> pb.DetectResponse:
        if request.options.camera_id == "missing":
            raise errors.NotFound("model 'weeds' is not loaded; loaded models: plants")
        if request.options.camera_id == "crash":
            raise RuntimeError("database password is hunter2")  # must never reach the client
        return pb.DetectResponse(model="plants")

    async def DetectStream(
        self, request_iterator: AsyncIterator[pb.DetectStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DetectStreamResponse]:
        async for request in request_iterator:
            if request.frame_id == 2:
                raise errors.InvalidArgument("frame 2: image does not decode")
            yield pb.DetectStreamResponse(frame_id=request.frame_id)


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    settings = ServiceSettings(port=0, data_dir=tmp_path)
    spec = ServiceSpec(name="detector", mounts=[Mount.generated(Faulty(), pb_grpc, pb, "DetectorService")])
    server = GrpcServer(spec, settings)
    port = await server.start()
    assert port > 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)


async def test_domain_error_keeps_code_and_message(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Detect(pb.DetectRequest(options=pb.DetectOptions(camera_id="missing")))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "model 'weeds' is not loaded; loaded models: plants"


async def test_unexpected_error_is_internal_without_details(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)
    call = stub.Detect(
        pb.DetectRequest(options=pb.DetectOptions(camera_id="crash")), metadata=[("x-request-id", "r-7")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error (request id r-7)"
    assert "hunter2" not in caught.value.details()
    # The server keeps serving.
    assert (await stub.Detect(pb.DetectRequest())).model == "plants"


async def test_streaming_error_after_messages(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)

    async def frames() -> AsyncIterator[pb.DetectStreamRequest]:
        for frame_id in range(5):
            yield pb.DetectStreamRequest(frame_id=frame_id)

    received: list[int] = []

    async def consume() -> None:
        async for response in stub.DetectStream(frames()):
            received.append(response.frame_id)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consume()
    assert received == [0, 1]
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "frame 2" in caught.value.details()


async def test_request_id_returned_in_trailers(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)
    call = stub.Detect(pb.DetectRequest(), metadata=[("x-request-id", "abc-123")])
    await call
    assert ("x-request-id", "abc-123") in tuple(await call.trailing_metadata())
    call = stub.Detect(pb.DetectRequest(), metadata=[("x-request-id", "bad id with spaces")])
    await call
    generated = dict(await call.trailing_metadata())["x-request-id"]
    assert generated != "bad id with spaces"
    assert len(generated) == 32


async def test_unimplemented_rpc(channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.DetectorServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetAbout(pb.GetAboutRequest())
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_message_size_limit_is_enforced(tmp_path: Path) -> None:
    settings = ServiceSettings(port=0, data_dir=tmp_path, max_message_bytes=1024 * 1024)
    spec = ServiceSpec(name="detector", mounts=[Mount.generated(Faulty(), pb_grpc, pb, "DetectorService")])
    server = GrpcServer(spec, settings)
    port = await server.start()
    try:
        options = [("grpc.max_send_message_length", 8 * 1024 * 1024)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as chan:
            stub = pb_grpc.DetectorServiceStub(chan)
            small = pb.DetectRequest(image={"encoded": b"x" * 1000})
            assert (await stub.Detect(small)).model == "plants"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Detect(pb.DetectRequest(image={"encoded": b"x" * (2 * 1024 * 1024)}))
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await stub.Detect(small)).model == "plants"  # still serving
    finally:
        await server.stop(0)
