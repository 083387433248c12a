"""Frames on their way to the hub: the active-learning decision after a detection, and ``Upload``.

Both end in the durable outbox, so neither ever waits for the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import cv2
from google.protobuf import timestamp_pb2

from visionloop.common.v1 import image_pb2
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.lib.preprocess import Frame
from visionloop.loop.v1 import image_service_pb2
from visionloop.runtime.errors import InvalidArgument
from visionloop.runtime.logging import get_logger
from visionloop.server.detector.outbox import Outbox
from visionloop.server.detector.upload_filter import UploadFilter

log = get_logger(__name__)
JPEG_QUALITY = 95


def encode_jpeg(frame: Frame) -> bytes:
    """JPEG bytes of a decoded frame (raw pixels from the robot)."""
    pixels = frame.pixels if frame.order == "bgr" else frame.pixels[..., ::-1]
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise InvalidArgument("the frame could not be encoded as JPEG")
    return data.tobytes()


def stored_bytes(image: image_pb2.Image, frame: Frame) -> bytes:
    """What the hub stores: the robot's own JPEG/PNG bytes when it sent them, else a JPEG."""
    return image.encoded if image.WhichOneof("data") == "encoded" else encode_jpeg(frame)


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class ActiveLearningUploads:
    """After each detection: ask the filter, and queue the frame with its reasons as tags.

    ``clock`` is the filter's time (monotonic seconds): a simulation (``visionloop demo``) replaces
    it to move its robots hours on between rounds without waiting for the rate limits to reset.
    """

    def __init__(
        self, upload_filter: UploadFilter, outbox: Outbox, source: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.filter = upload_filter
        self.outbox = outbox
        self.source = source
        self.clock = clock

    async def after_detection(
        self, image: image_pb2.Image, frame: Frame, options: pb.DetectOptions, response: pb.DetectResponse
    ) -> None:
        camera = options.camera_id or "default"
        reasons = self.filter.decide(camera, response.detections, options.autoupload, self.clock())
        if not reasons:
            return
        try:
            data = await asyncio.to_thread(stored_bytes, image, frame)
            metadata = image_pb2.ImageMetadata(
                tags=[*options.tags, *reasons], camera_id=options.camera_id, source=self.source, create_time=_now()
            )
            await self.outbox.put(
                image_service_pb2.ImageUpload(data=data, metadata=metadata, detections=response.detections)
            )
        except Exception as error:  # the robot got its detections; a full disk must not fail them
            log.warning("frame not queued for upload", camera=camera, reason=str(error))
            return
        response.uploaded = True
        response.upload_reason = ",".join(reasons)
