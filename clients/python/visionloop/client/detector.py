"""``DetectorClient``: what robot software calls, blocking and simple."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import grpc
import numpy as np

from visionloop.client.channel import ChannelConfig, create_channel
from visionloop.client.images import PixelOrder, to_image
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc as pb_grpc
from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc

AutoUploadMode = Literal["filtered", "all", "disabled"]

_AUTOUPLOAD = {
    "filtered": pb.AUTO_UPLOAD_FILTERED,
    "all": pb.AUTO_UPLOAD_ALL,
    "disabled": pb.AUTO_UPLOAD_DISABLED,
}


def detect_options(
    *,
    camera_id: str = "",
    autoupload: AutoUploadMode = "filtered",
    tags: Sequence[str] = (),
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    max_objects: int | None = None,
    class_agnostic_nms: bool = False,
    model: str = "",
) -> pb.DetectOptions:
    """Build ``DetectOptions``; unset thresholds keep the model's defaults."""
    options = pb.DetectOptions(
        autoupload=_AUTOUPLOAD[autoupload],
        camera_id=camera_id,
        tags=list(tags),
        class_agnostic_nms=class_agnostic_nms,
        model=model,
    )
    if score_threshold is not None:
        options.score_threshold = score_threshold
    if iou_threshold is not None:
        options.iou_threshold = iou_threshold
    if max_objects is not None:
        options.max_objects = max_objects
    return options


class DetectorClient:
    """Blocking client of a VisionLoop detector.

    ``timeout`` bounds every call so a robot's control loop never hangs on the network.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: str | Path | bytes | None = None,
        certificate_chain: str | Path | bytes | None = None,
        private_key: str | Path | bytes | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._config = ChannelConfig(
            target=target,
            token=token,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
        )
        self._channel = create_channel(self._config)
        self._stub = pb_grpc.DetectorServiceStub(self._channel)
        self._ops = ops_service_pb2_grpc.OpsServiceStub(self._channel)
        self.timeout = timeout

    def detect(
        self,
        frame: np.ndarray | bytes,
        *,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,
        **options: object,
    ) -> pb.DetectResponse:
        """Detect objects in one frame (numpy array or JPEG/PNG bytes). Options as in ``detect_options``."""
        request = pb.DetectRequest(image=to_image(frame, pixel_order), options=detect_options(**options))  # type: ignore[arg-type]
        return self._stub.Detect(request, timeout=timeout or self.timeout)

    def detect_stream(
        self,
        frames: Iterable[np.ndarray | bytes],
        *,
        pixel_order: PixelOrder = "bgr",
        **options: object,
    ) -> Iterator[pb.DetectStreamResponse]:
        """Stream frames; answers come in order, each with the ``frame_id`` it answers."""
        opts = detect_options(**options)  # type: ignore[arg-type]

        def requests() -> Iterator[pb.DetectStreamRequest]:
            for frame_id, frame in enumerate(frames):
                yield pb.DetectStreamRequest(
                    frame_id=frame_id,
                    image=to_image(frame, pixel_order),
                    options=opts if frame_id == 0 else None,
                )

        return self._stub.DetectStream(requests())

    def upload(
        self,
        frame: np.ndarray | bytes,
        *,
        tags: Sequence[str] = (),
        camera_id: str = "",
        high_priority: bool = False,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,
    ) -> pb.UploadResponse:
        """Queue a frame for the hub in the detector's durable outbox."""
        request = pb.UploadRequest(
            image=to_image(frame, pixel_order),
            tags=list(tags),
            camera_id=camera_id,
            priority=pb.UPLOAD_PRIORITY_HIGH if high_priority else pb.UPLOAD_PRIORITY_NORMAL,
        )
        return self._stub.Upload(request, timeout=timeout or self.timeout)

    def about(self, timeout: float | None = None) -> pb.GetAboutResponse:
        """Detector version, mode, loaded models and outbox state."""
        return self._stub.GetAbout(pb.GetAboutRequest(), timeout=timeout or self.timeout)

    def build_info(self, timeout: float | None = None) -> ops_service_pb2.GetBuildInfoResponse:
        """Which VisionLoop service and version answers at this address."""
        return self._ops.GetBuildInfo(ops_service_pb2.GetBuildInfoRequest(), timeout=timeout or self.timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (raises ``grpc.FutureTimeoutError`` otherwise)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
