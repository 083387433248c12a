"""Turn what a robot has (numpy frames, JPEG/PNG bytes) into the ``Image`` message."""

from __future__ import annotations

from typing import Literal

import numpy as np

from visionloop.common.v1 import image_pb2

PixelOrder = Literal["bgr", "rgb", "gray"]

_PIXEL_FORMATS = {
    "bgr": image_pb2.PIXEL_FORMAT_BGR8,
    "rgb": image_pb2.PIXEL_FORMAT_RGB8,
    "gray": image_pb2.PIXEL_FORMAT_GRAY8,
}


def to_image(frame: np.ndarray | bytes, pixel_order: PixelOrder = "bgr") -> image_pb2.Image:
    """Wrap encoded bytes, or an HxWx3 / HxW uint8 array, as an ``Image``.

    Arrays default to BGR because that is what OpenCV and most camera drivers produce.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        return image_pb2.Image(encoded=bytes(frame))
    array = np.asarray(frame)
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    if array.ndim == 2:
        pixel_order = "gray"
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"frames must be HxW or HxWx3, got shape {array.shape}")
    elif pixel_order == "gray":
        raise ValueError("a 3-channel frame cannot be 'gray'; use 'bgr' or 'rgb'")
    height, width = array.shape[:2]
    return image_pb2.Image(
        raw=image_pb2.RawImage(
            pixels=np.ascontiguousarray(array).tobytes(),
            width=width,
            height=height,
            pixel_format=_PIXEL_FORMATS[pixel_order],
        )
    )
