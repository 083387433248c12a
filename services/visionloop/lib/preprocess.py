"""From what a robot sends (JPEG, PNG, raw RGB/BGR/gray pixels) to the model's input tensor.

Every transform is recorded so detections map back to the original image's pixels:
``x_original = (x_model - offset_x) / scale_x`` (and the same for y).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from visionloop.common.v1 import image_pb2, model_pb2
from visionloop.lib import images
from visionloop.runtime.errors import InvalidArgument, ResourceExhausted

PAD_VALUE = 114  # the grey Ultralytics letterboxes with
_CHANNELS = {image_pb2.PIXEL_FORMAT_RGB8: 3, image_pb2.PIXEL_FORMAT_BGR8: 3, image_pb2.PIXEL_FORMAT_GRAY8: 1}


@dataclass(frozen=True)
class Frame:
    """A decoded image: HxWx3 uint8 in ``order`` ("bgr" or "rgb")."""

    pixels: np.ndarray
    order: str

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class Transform:
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0
    input_width: int = 0  # the model input the frame was placed in (varies for models of any size)
    input_height: int = 0

    def to_original(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (xs - self.offset_x) / self.scale_x, (ys - self.offset_y) / self.scale_y


def decode(image: image_pb2.Image, max_bytes: int, max_pixels: int) -> Frame:
    """Decode or validate the image (blocking: call from a worker thread).

    Encoded frames follow ``visionloop.lib.images`` (limits from the header before decoding,
    EXIF orientation applied), so the detector sees the pixels the hub and the trainer see.
    """
    kind = image.WhichOneof("data")
    if kind is None:
        raise InvalidArgument("image is empty: set image.encoded (JPEG/PNG bytes) or image.raw (pixels)")
    if kind == "encoded":
        if not image.encoded:
            raise InvalidArgument("image.encoded is empty")
        return Frame(images.decode(image.encoded, images.Limits(max_bytes, max_pixels)), "bgr")
    return _raw(image.raw, max_bytes, max_pixels)


def _raw(raw: image_pb2.RawImage, max_bytes: int, max_pixels: int) -> Frame:
    if raw.pixel_format not in _CHANNELS:
        raise InvalidArgument(
            "image.raw.pixel_format must be PIXEL_FORMAT_RGB8, PIXEL_FORMAT_BGR8 or PIXEL_FORMAT_GRAY8"
        )
    if raw.width <= 0 or raw.height <= 0:
        raise InvalidArgument(f"image.raw is {raw.width}x{raw.height}; width and height must be positive")
    if raw.width * raw.height > max_pixels:
        raise ResourceExhausted(f"image is {raw.width}x{raw.height} pixels; the limit is {max_pixels} pixels")
    channels = _CHANNELS[raw.pixel_format]
    expected = raw.width * raw.height * channels
    if len(raw.pixels) != expected:
        name = image_pb2.PixelFormat.Name(raw.pixel_format).removeprefix("PIXEL_FORMAT_")
        raise InvalidArgument(
            f"image.raw has {len(raw.pixels)} bytes; a {raw.width}x{raw.height} {name} image needs {expected} "
            f"(width*height*{channels}, rows without padding)"
        )
    if len(raw.pixels) > max_bytes:
        raise ResourceExhausted(f"image is {len(raw.pixels)} bytes; the limit is {max_bytes} bytes")
    pixels = np.frombuffer(raw.pixels, dtype=np.uint8).reshape(raw.height, raw.width, channels)
    if channels == 1:
        return Frame(cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR), "bgr")
    return Frame(pixels, "rgb" if raw.pixel_format == image_pb2.PIXEL_FORMAT_RGB8 else "bgr")


def _resized(pixels: np.ndarray, width: int, height: int, interpolation: int | None = None) -> np.ndarray:
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    if interpolation is None:
        shrinking = width < pixels.shape[1] or height < pixels.shape[0]
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)


@dataclass(frozen=True)
class Placement:
    """Where the scaled image goes in the model input: the input's size, the image's, its offset."""

    width: int
    height: int
    scaled_width: int
    scaled_height: int
    left: int = 0
    top: int = 0


def letterbox(spec: model_pb2.ModelInput, w: int, h: int) -> Placement:
    """The letterbox of a ``w`` x ``h`` image for the model input ``spec``, with Ultralytics' rounding:
    scaled to fit, then padded to the input size, or for a graph of any size (``spec.stride``) only
    up to the next multiple of the stride (``LetterBox(auto=True)``), and centred or top-left."""
    width, height = spec.width, spec.height
    scale = min(width / w, height / h)
    new_w, new_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    if spec.stride > 0:
        width, height = new_w + (width - new_w) % spec.stride, new_h + (height - new_h) % spec.stride
    if spec.letterbox != model_pb2.LETTERBOX_CENTER:
        return Placement(width, height, new_w, new_h)
    return Placement(width, height, new_w, new_h, round((width - new_w) / 2 - 0.1), round((height - new_h) / 2 - 0.1))


def prepare(frame: Frame, spec: model_pb2.ModelInput, rescale: int) -> tuple[np.ndarray, Transform]:
    """The CHW float32 tensor for the model and the transform back to the frame's pixels."""
    width, height = spec.width, spec.height
    w, h = frame.width, frame.height
    if rescale == model_pb2.RESCALE_TYPE_WARP:
        placed = _resized(frame.pixels, width, height)
        return _normalised(placed, frame.order, spec, Placement(width, height, width, height)), Transform(
            width / w, height / h, 0.0, 0.0, width, height
        )
    if rescale == model_pb2.RESCALE_TYPE_CROP and spec.letterbox == model_pb2.LETTERBOX_CENTER:
        return _ultralytics_crop(frame, spec)
    if rescale == model_pb2.RESCALE_TYPE_CROP:
        scale = max(width / w, height / h)
        scaled = _resized(frame.pixels, max(width, round(w * scale)), max(height, round(h * scale)))
        left, top = (scaled.shape[1] - width) // 2, (scaled.shape[0] - height) // 2
        placed = scaled[top : top + height, left : left + width]
        return _normalised(placed, frame.order, spec, Placement(width, height, width, height)), Transform(
            scale, scale, -left, -top, width, height
        )
    # pad (letterbox), the default: nothing is cut off and the aspect ratio is kept. Centred
    # letterboxes are Ultralytics' and resize as its LetterBox does (bilinear), bit for bit.
    place = letterbox(spec, w, h)
    interpolation = cv2.INTER_LINEAR if spec.letterbox == model_pb2.LETTERBOX_CENTER else None
    placed = _resized(frame.pixels, place.scaled_width, place.scaled_height, interpolation)
    transform = Transform(
        place.scaled_width / w, place.scaled_height / h, place.left, place.top, place.width, place.height
    )
    return _normalised(placed, frame.order, spec, place), transform


def _ultralytics_crop(frame: Frame, spec: model_pb2.ModelInput) -> tuple[np.ndarray, Transform]:
    """Ultralytics' classifier input: torchvision's ``Resize(size)`` (the short side to ``size``,
    Pillow's bilinear resampling) then ``CenterCrop(size)``, pixel for pixel; a non-square input
    is resized to it exactly, as Ultralytics does."""
    width, height = spec.width, spec.height
    w, h = frame.width, frame.height
    if width != height:
        new_w, new_h = width, height
    elif w <= h:
        new_w, new_h = width, int(width * h / w)
    else:
        new_w, new_h = int(height * w / h), height
    resized = np.asarray(Image.fromarray(frame.pixels).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = round((new_h - height) / 2.0), round((new_w - width) / 2.0)  # torchvision CenterCrop
    placed = resized[top : top + height, left : left + width]
    tensor = _normalised(placed, frame.order, spec, Placement(width, height, width, height))
    return tensor, Transform(new_w / w, new_h / h, -left, -top, width, height)


def _normalised(placed: np.ndarray, order: str, spec: model_pb2.ModelInput, place: Placement) -> np.ndarray:
    """HWC uint8 (at ``place`` in the model input; the rest is letterbox grey) to normalised CHW float32.

    One plane at a time: HWC -> CHW with the colour order fixed by picking planes, and
    ``(value / 255 - mean) / std`` as one multiply-add writing straight into the tensor. About 3x
    faster than ``transpose().astype()`` and a colour conversion, which touch every byte twice more.
    """
    planes = cv2.split(placed)
    wanted = "bgr" if spec.color_order == model_pb2.COLOR_ORDER_BGR else "rgb"
    if order != wanted:
        planes = planes[::-1]
    mean, std = _per_channel(spec.mean, 0.0), _per_channel(spec.std, 1.0)
    rows, cols = placed.shape[:2]
    top, left = place.top, place.left
    bottom, right = top + rows, left + cols
    tensor = np.empty((3, place.height, place.width), dtype=np.float32)
    for channel, plane in enumerate(planes):
        gain = np.float32(1.0 / (255.0 * std[channel]))
        bias = np.float32(-mean[channel] / std[channel])
        target = tensor[channel]
        np.multiply(plane, gain, out=target[top:bottom, left:right])
        if bias:
            target[top:bottom, left:right] += bias
        grey = np.float32(PAD_VALUE) * gain + bias
        target[:top, :] = grey
        target[bottom:, :] = grey
        target[top:bottom, :left] = grey
        target[top:bottom, right:] = grey
    return tensor


def _per_channel(values: Sequence[float], default: float) -> list[float]:
    """One value per channel from model.json's list: empty means the default, one value means all three."""
    if not values:
        return [default] * 3
    return list(values) * 3 if len(values) == 1 else list(values)
