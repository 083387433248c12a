"""``AsyncDetectorClient``: the ``DetectorClient`` surface on ``grpc.aio`` for asyncio robot code.

Create it inside the event loop that uses it (grpc.aio channels belong to one loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

import grpc

from visionloop.client.channel import create_aio_channel
from visionloop.client.detector import (
    Frame,
    _DetectorClientBase,
    batch_request,
    detect_options,
    detect_request,
    upload_request,
)
from visionloop.client.images import PixelOrder, to_image
from visionloop.client.streaming import FrameStream, ResultCallback
from visionloop.common.v1 import model_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.ops.v1 import ops_service_pb2

# ``timeout`` below is a gRPC deadline passed to the call, not a wait of our own (hence the noqa).


class AsyncDetectorClient(_DetectorClientBase):
    """Asyncio client of a VisionLoop detector; arguments as ``DetectorClient``.

    ``async with AsyncDetectorClient("robot-detector:50052") as client:
    response = await client.detect(frame, camera_id="front")``
    """

    _open_channel = staticmethod(create_aio_channel)

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def detect(
        self,
        frame: Frame,
        *,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,  # noqa: ASYNC109
        wait_for_ready: bool | None = None,
        **options: Any,
    ) -> pb.DetectResponse:
        """Detect objects in one frame (numpy array or JPEG/PNG bytes). Options as in ``detect_options``."""
        request = detect_request(frame, pixel_order, options)
        return await self._stub.Detect(request, **self._call(timeout, wait_for_ready))

    async def detect_batch(
        self,
        frames: Iterable[Frame],
        *,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,  # noqa: ASYNC109
        wait_for_ready: bool | None = None,
        **options: Any,
    ) -> list[pb.DetectResponse]:
        """Detect objects in several frames with the same options in one call; results in frame order."""
        request = batch_request(frames, pixel_order, options)
        response = await self._stub.DetectBatch(request, **self._call(timeout, wait_for_ready))
        return list(response.results)

    async def detect_stream(
        self,
        frames: Iterable[Frame] | AsyncIterable[Frame],
        *,
        pixel_order: PixelOrder = "bgr",
        **options: Any,
    ) -> AsyncIterator[pb.DetectStreamResponse]:
        """Send every frame on one stream; answers in order with the frame's index as ``frame_id``.

        For a live camera that may outrun the link use ``stream`` (drops, reconnects).
        """
        opts = detect_options(**options)

        async def requests() -> AsyncIterator[pb.DetectStreamRequest]:
            frame_id = 0
            source = frames if isinstance(frames, AsyncIterable) else _aiter(frames)
            async for frame in source:
                yield pb.DetectStreamRequest(
                    frame_id=frame_id, image=to_image(frame, pixel_order), options=opts if frame_id == 0 else None
                )
                frame_id += 1

        async for response in self._stub.DetectStream(requests(), wait_for_ready=self.wait_for_ready):
            yield response

    def stream(self, *, on_result: ResultCallback | None = None, **kwargs: Any) -> FrameStream:
        """A camera-rate ``FrameStream`` on this client's channel; use it with ``async with``."""
        return FrameStream(self._channel, on_result=on_result, **kwargs)

    async def upload(
        self,
        frame: Frame,
        *,
        tags: Sequence[str] = (),
        camera_id: str = "",
        high_priority: bool = False,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,  # noqa: ASYNC109
        wait_for_ready: bool | None = None,
    ) -> pb.UploadResponse:
        """Queue a frame for the hub in the detector's durable outbox (not retried: it would queue twice)."""
        request = upload_request(frame, pixel_order, tags, camera_id, high_priority)
        return await self._stub.Upload(request, **self._call(timeout, wait_for_ready))

    async def about(self, timeout: float | None = None) -> pb.GetAboutResponse:  # noqa: ASYNC109
        """Detector version, mode, loaded models and outbox state."""
        return await self._stub.GetAbout(pb.GetAboutRequest(), **self._call(timeout))

    async def model_info(self, model: str = "", timeout: float | None = None) -> model_pb2.ModelInfo:  # noqa: ASYNC109
        """``model.json`` of a loaded model; empty name: the default."""
        response = await self._stub.GetModelInfo(pb.GetModelInfoRequest(model=model), **self._call(timeout))
        return response.info

    async def loaded_models(self, timeout: float | None = None) -> pb.ListLoadedModelsResponse:  # noqa: ASYNC109
        """The models loaded side by side (``.models``) and the default one (``.default_model``)."""
        return await self._stub.ListLoadedModels(pb.ListLoadedModelsRequest(), **self._call(timeout))

    async def build_info(self, timeout: float | None = None) -> ops_service_pb2.GetBuildInfoResponse:  # noqa: ASYNC109
        """Which VisionLoop service and version answers at this address."""
        return await self._ops.GetBuildInfo(ops_service_pb2.GetBuildInfoRequest(), **self._call(timeout))

    async def wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until the channel connects (raises ``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            await self._channel.channel_ready()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncDetectorClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _aiter(frames: Iterable[Frame]) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame
