"""``DetectorClient``: what robot software calls, blocking and simple.

Robots talk to detectors over wireless links that drop out for seconds at a time, so every call
has a deadline, channels ping while calls are open, and idempotent unary calls are retried on
UNAVAILABLE with jittered exponential backoff (gRPC's own retry machinery, configured through the
service config, so the sync and asyncio clients behave the same).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import grpc
import numpy as np

from visionloop.client.channel import DEFAULT_MAX_MESSAGE_BYTES, ChannelConfig, create_channel
from visionloop.client.images import PixelOrder, to_image
from visionloop.common.v1 import model_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc as pb_grpc
from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc

if TYPE_CHECKING:
    from visionloop.client.streaming import FrameResult, SyncFrameStream

AutoUploadMode = Literal["filtered", "all", "disabled"]
Frame = np.ndarray | bytes

_AUTOUPLOAD = {
    "filtered": pb.AUTO_UPLOAD_FILTERED,
    "all": pb.AUTO_UPLOAD_ALL,
    "disabled": pb.AUTO_UPLOAD_DISABLED,
}

DETECTOR_SERVICE = "visionloop.detector.v1.DetectorService"
OPS_SERVICE = "visionloop.ops.v1.OpsService"
# Calls that change nothing on the detector (Detect may queue an upload; a repeat at worst
# offers the same frame to the upload filter twice). Upload and the Set* calls are not retried.
IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    (DETECTOR_SERVICE, "Detect"),
    (DETECTOR_SERVICE, "DetectBatch"),
    (DETECTOR_SERVICE, "GetAbout"),
    (DETECTOR_SERVICE, "GetModelInfo"),
    (DETECTOR_SERVICE, "ListLoadedModels"),
    (OPS_SERVICE, "GetBuildInfo"),
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent unary calls, all within the call's deadline.

    gRPC waits a random time in ``[0, min(initial_backoff * multiplier**n, max_backoff)]`` before
    attempt ``n + 1`` and caps ``max_attempts`` at 5.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    codes: tuple[str, ...] = ("UNAVAILABLE",)

    def service_config(self, methods: Sequence[tuple[str, str]] = IDEMPOTENT_METHODS) -> str:
        """The ``grpc.service_config`` JSON applying this policy to ``methods``."""
        if not 2 <= self.max_attempts <= 5:
            raise ValueError(f"max_attempts must be 2..5 (gRPC's limit), got {self.max_attempts}")
        policy = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff:.3f}s",
            "maxBackoff": f"{self.max_backoff:.3f}s",
            "backoffMultiplier": self.multiplier,
            "retryableStatusCodes": list(self.codes),
        }
        names = [{"service": service, "method": method} for service, method in methods]
        return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


DEFAULT_RETRY = RetryPolicy()


def robot_channel_config(
    target: str,
    *,
    token: str | None = None,
    root_certificates: str | Path | bytes | None = None,
    certificate_chain: str | Path | bytes | None = None,
    private_key: str | Path | bytes | None = None,
    tls: bool = False,
    retry: RetryPolicy | None = DEFAULT_RETRY,
    max_reconnect_backoff_ms: int | None = 5_000,
    extra_options: Sequence[tuple[str, Any]] = (),
) -> ChannelConfig:
    """A ``ChannelConfig`` for robots: retries, and reconnects at most ``max_reconnect_backoff_ms`` apart."""
    options: list[tuple[str, Any]] = []
    if retry is not None:
        options += [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", retry.service_config()),
            # gRPC only retries calls whose request it kept; its default 256 KiB would exclude
            # every raw camera frame (640x480 BGR is 900 KiB).
            ("grpc.per_rpc_retry_buffer_size", DEFAULT_MAX_MESSAGE_BYTES),
        ]
    return ChannelConfig(
        target=target,
        token=token,
        root_certificates=root_certificates,
        certificate_chain=certificate_chain,
        private_key=private_key,
        tls=tls,
        max_reconnect_backoff_ms=max_reconnect_backoff_ms,
        extra_options=(*options, *extra_options),
    )


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


def detect_request(frame: Frame, pixel_order: PixelOrder, options: dict[str, Any]) -> pb.DetectRequest:
    return pb.DetectRequest(image=to_image(frame, pixel_order), options=detect_options(**options))


def batch_request(frames: Iterable[Frame], pixel_order: PixelOrder, options: dict[str, Any]) -> pb.DetectBatchRequest:
    images = [to_image(frame, pixel_order) for frame in frames]
    if not images:
        raise ValueError("detect_batch needs at least one frame")
    return pb.DetectBatchRequest(images=images, options=detect_options(**options))


def upload_request(
    frame: Frame, pixel_order: PixelOrder, tags: Sequence[str], camera_id: str, high_priority: bool
) -> pb.UploadRequest:
    return pb.UploadRequest(
        image=to_image(frame, pixel_order),
        tags=list(tags),
        camera_id=camera_id,
        priority=pb.UPLOAD_PRIORITY_HIGH if high_priority else pb.UPLOAD_PRIORITY_NORMAL,
    )


class _DetectorClientBase:
    """What the blocking and the asyncio client share: channel set-up and per-call options."""

    _open_channel: Any = staticmethod(create_channel)

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        root_certificates: str | Path | bytes | None = None,
        certificate_chain: str | Path | bytes | None = None,
        private_key: str | Path | bytes | None = None,
        tls: bool = False,
        timeout: float = 5.0,
        wait_for_ready: bool = False,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        max_reconnect_backoff_ms: int | None = 5_000,
        extra_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._config = robot_channel_config(
            target,
            token=token,
            root_certificates=root_certificates,
            certificate_chain=certificate_chain,
            private_key=private_key,
            tls=tls,
            retry=retry,
            max_reconnect_backoff_ms=max_reconnect_backoff_ms,
            extra_options=extra_options,
        )
        self._channel = self._open_channel(self._config)
        self._stub = pb_grpc.DetectorServiceStub(self._channel)
        self._ops = ops_service_pb2_grpc.OpsServiceStub(self._channel)
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready

    @property
    def config(self) -> ChannelConfig:
        return self._config

    def _call(self, timeout: float | None, wait_for_ready: bool | None = None) -> dict[str, Any]:
        return {
            "timeout": self.timeout if timeout is None else timeout,
            "wait_for_ready": self.wait_for_ready if wait_for_ready is None else wait_for_ready,
        }


class DetectorClient(_DetectorClientBase):
    """Blocking client of a VisionLoop detector.

    ``timeout`` bounds every call (overridable per call) so a robot's control loop never hangs on
    the network. ``wait_for_ready=True`` makes calls wait, within their deadline, for a link that is
    down instead of failing at once with UNAVAILABLE. ``retry=None`` turns retries off.
    """

    def detect(
        self,
        frame: Frame,
        *,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,
        wait_for_ready: bool | None = None,
        **options: Any,
    ) -> pb.DetectResponse:
        """Detect objects in one frame (numpy array or JPEG/PNG bytes). Options as in ``detect_options``."""
        return self._stub.Detect(detect_request(frame, pixel_order, options), **self._call(timeout, wait_for_ready))

    def detect_batch(
        self,
        frames: Iterable[Frame],
        *,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,
        wait_for_ready: bool | None = None,
        **options: Any,
    ) -> list[pb.DetectResponse]:
        """Detect objects in several frames with the same options in one call; results in frame order."""
        request = batch_request(frames, pixel_order, options)
        return list(self._stub.DetectBatch(request, **self._call(timeout, wait_for_ready)).results)

    def detect_stream(
        self,
        frames: Iterable[Frame],
        *,
        pixel_order: PixelOrder = "bgr",
        **options: Any,
    ) -> Iterator[pb.DetectStreamResponse]:
        """Stream frames; answers come in order, each with the ``frame_id`` (the frame's index) it answers.

        This sends every frame and blocks on a slow link; for a live camera use ``stream``.
        """
        opts = detect_options(**options)

        def requests() -> Iterator[pb.DetectStreamRequest]:
            for frame_id, frame in enumerate(frames):
                yield pb.DetectStreamRequest(
                    frame_id=frame_id,
                    image=to_image(frame, pixel_order),
                    options=opts if frame_id == 0 else None,
                )

        return self._stub.DetectStream(requests(), wait_for_ready=self.wait_for_ready)

    def stream(self, *, on_result: Callable[[FrameResult], None] | None = None, **kwargs: Any) -> SyncFrameStream:
        """A camera-rate ``SyncFrameStream`` to this detector (own background thread and channel)."""
        from visionloop.client.streaming import SyncFrameStream

        return SyncFrameStream(self._config, on_result=on_result, **kwargs)

    def upload(
        self,
        frame: Frame,
        *,
        tags: Sequence[str] = (),
        camera_id: str = "",
        high_priority: bool = False,
        pixel_order: PixelOrder = "bgr",
        timeout: float | None = None,
        wait_for_ready: bool | None = None,
    ) -> pb.UploadResponse:
        """Queue a frame for the hub in the detector's durable outbox (not retried: it would queue twice)."""
        request = upload_request(frame, pixel_order, tags, camera_id, high_priority)
        return self._stub.Upload(request, **self._call(timeout, wait_for_ready))

    def about(self, timeout: float | None = None) -> pb.GetAboutResponse:
        """Detector version, mode, loaded models and outbox state."""
        return self._stub.GetAbout(pb.GetAboutRequest(), **self._call(timeout))

    def model_info(self, model: str = "", timeout: float | None = None) -> model_pb2.ModelInfo:
        """``model.json`` of a loaded model; empty name: the default."""
        return self._stub.GetModelInfo(pb.GetModelInfoRequest(model=model), **self._call(timeout)).info

    def loaded_models(self, timeout: float | None = None) -> pb.ListLoadedModelsResponse:
        """The models loaded side by side (``.models``) and the default one (``.default_model``)."""
        return self._stub.ListLoadedModels(pb.ListLoadedModelsRequest(), **self._call(timeout))

    def build_info(self, timeout: float | None = None) -> ops_service_pb2.GetBuildInfoResponse:
        """Which VisionLoop service and version answers at this address."""
        return self._ops.GetBuildInfo(ops_service_pb2.GetBuildInfoRequest(), **self._call(timeout))

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


__all__ = [
    "AutoUploadMode",
    "DetectorClient",
    "RetryPolicy",
    "detect_options",
    "robot_channel_config",
]
