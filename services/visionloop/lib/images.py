"""JPEG and PNG images as every VisionLoop service sees them.

One decoder (Pillow) and one set of rules, so that whatever the hub accepts, the detector, the
trainer, the annotator and the converter decode to the same pixels of the same size:

- **Formats**: JPEG and PNG, recognised by their signature (not by a file name).
- **Limits before decoding**: the byte count is checked first, the pixel count comes from the
  header; a refused image costs no pixel buffer whatever its header claims
  (``RESOURCE_EXHAUSTED``: ``TooManyBytes``, ``TooManyPixels``).
- **Orientation**: the EXIF Orientation tag (JPEG's APP1 Exif block, PNG's ``eXIf`` chunk before
  the image data) is applied, as browsers, OpenCV and Ultralytics do: width, height and pixels
  are those of the upright picture, the one a person annotates. XMP orientation is ignored, and
  unreadable EXIF counts as none.
- **Integrity**: a truncated or damaged file is refused (``INVALID_ARGUMENT``: ``CorruptImage``),
  a PNG whose chunk checksums (CRC) are wrong included: libpng, and so OpenCV and most tools,
  refuse such files, while Pillow alone would not look at the image data's checksums.
- **Pixels**: HxWx3 uint8 in BGR order (OpenCV's convention, which every consumer here uses);
  grey and palette images are expanded, alpha is dropped (not composited), 16-bit samples keep
  their high byte.

``validate`` is the hub's check (JPEG decoded at 1/8 scale in grey: libjpeg still entropy-decodes
the whole scan, so truncated and corrupt files fail as in a full decode, for about half the CPU),
``decode`` and ``read_file`` give the pixels, ``inspect`` reads the header only. All of them block:
call them from a worker thread. Pillow was chosen by measurement (``benchmarks/README.md``): its
header is readable before decoding, it refuses truncated JPEGs that OpenCV fills with grey, and
its full decode costs about the same as OpenCV's.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from visionloop.runtime.errors import InvalidArgument, ResourceExhausted, ServiceError

JPEG = "image/jpeg"
PNG = "image/png"
ORIENTATION_TAG = 0x0112
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = 100_000_000

_JPEG_SIGNATURE = b"\xff\xd8\xff"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Other formats, named so the refusal says what arrived.
_OTHER_SIGNATURES = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP or another RIFF format"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)
# What a broken header or stream raises inside Pillow's parsers and decoders.
_PARSE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error)
# EXIF orientation -> the transposition that makes the stored picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_TO_BGR = {"L": cv2.COLOR_GRAY2BGR, "RGB": cv2.COLOR_RGB2BGR, "RGBA": cv2.COLOR_RGBA2BGR}


@dataclass(frozen=True)
class Limits:
    """The largest image accepted: bytes of the file and pixels (width x height) of the picture."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


DEFAULT_LIMITS = Limits()  # the hub's defaults (VISIONLOOP_MAX_IMAGE_BYTES, VISIONLOOP_MAX_IMAGE_PIXELS)


class ImageLimitSettings(BaseSettings):
    """The largest image accepted (hub) or decoded (nodes reading the hub's images).

    Nodes keep the hub's values or larger: an image the hub stored and a node refuses is left out
    of that node's work (training data, pre-annotation, calibration).
    """

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    max_image_bytes: int = Field(
        DEFAULT_MAX_BYTES,
        alias="VISIONLOOP_MAX_IMAGE_BYTES",
        ge=1024,
        le=1024**3,
        description="Largest image file, in bytes (JPEG or PNG).",
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        alias="VISIONLOOP_MAX_IMAGE_PIXELS",
        ge=1,
        le=1_000_000_000,
        description="Largest image, in pixels (width x height, read from the header before decoding).",
    )

    @property
    def image_limits(self) -> Limits:
        return Limits(self.max_image_bytes, self.max_image_pixels)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, with width and height of the upright picture (every consumer's size)."""

    content_type: str  # JPEG or PNG
    width: int
    height: int
    orientation: int = 1  # EXIF orientation, 1..8; 1: stored upright


class ImageError(ServiceError):
    """An image refused; the subclasses say why and carry the gRPC code."""


class TooManyBytes(ImageError, ResourceExhausted):
    pass


class TooManyPixels(ImageError, ResourceExhausted):
    pass


class NotAnImage(ImageError, InvalidArgument):
    """Empty, or not JPEG or PNG."""


class CorruptImage(ImageError, InvalidArgument):
    """A JPEG or PNG that is truncated or damaged."""


def inspect(data: bytes, limits: Limits) -> ImageInfo:
    """The header's facts, within ``limits``; decodes no pixel (a truncated body goes unnoticed)."""
    with _open(data, limits) as (_, info):
        return info


def validate(data: bytes, limits: Limits) -> ImageInfo:
    """``inspect``, and proof that the pixels decode (the hub's check before storing an image).

    A JPEG is decoded at 1/8 scale in grey; a PNG's checksums are verified and it is decoded in full.
    """
    with _open(data, limits) as (image, info):
        if info.content_type == JPEG:
            width, height = image.size
            image.draft("L", (max(1, width // 8), max(1, height // 8)))
        _load(image, data)
        return info


def decode(data: bytes, limits: Limits) -> np.ndarray:
    """The upright picture as a new HxWx3 uint8 BGR array (raises an ``ImageError`` subclass)."""
    with _open(data, limits) as (image, info):
        _load(image, data)
        upright = image.transpose(_UPRIGHT[info.orientation]) if info.orientation in _UPRIGHT else image
        return _bgr(upright)


def read_file(path: Path, limits: Limits) -> np.ndarray:
    """``decode`` of a file; its size is checked before it is read."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooManyBytes(_too_many_bytes(size, limits))
    return decode(path.read_bytes(), limits)


def _too_many_bytes(size: int, limits: Limits) -> str:
    return f"image is {size} bytes; the limit is {limits.max_bytes} bytes"


@contextlib.contextmanager
def _open(data: bytes, limits: Limits) -> Iterator[tuple[ImageFile.ImageFile, ImageInfo]]:
    """The image's parsed header and its facts, within the limits."""
    if not data:
        raise NotAnImage("image is empty")
    if len(data) > limits.max_bytes:
        raise TooManyBytes(_too_many_bytes(len(data), limits))
    with _parse_header(data) as image:
        info = _facts(image)
        _check_pixels(info, limits)
        yield image, info


def _parse_header(data: bytes) -> ImageFile.ImageFile:
    """Pillow's JPEG or PNG reader on the bytes, header read, nothing decoded.

    The plug-in classes rather than ``Image.open``: it would refuse large images with its own
    process-wide limit (``DecompressionBombError``) and try formats other than JPEG and PNG.
    """
    if data.startswith(_JPEG_SIGNATURE):
        reader: type[ImageFile.ImageFile] = JpegImagePlugin.JpegImageFile
    elif data.startswith(_PNG_SIGNATURE):
        reader = PngImagePlugin.PngImageFile
    else:
        for signature, name in _OTHER_SIGNATURES:
            if data.startswith(signature):
                raise NotAnImage(f"image format {name} is not accepted; send JPEG or PNG")
        raise NotAnImage("image is neither JPEG nor PNG (its bytes are not a recognised image)")
    try:
        return reader(io.BytesIO(data))
    except _PARSE_ERRORS as error:
        kind = "JPEG" if reader is JpegImagePlugin.JpegImageFile else "PNG"
        raise CorruptImage(f"image header is not a readable {kind} header: {error}") from None


def _facts(image: ImageFile.ImageFile) -> ImageInfo:
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage(f"image header declares {width}x{height} pixels")
    orientation = _orientation(image)
    if orientation >= 5:  # a quarter turn or a transposition: the upright picture is the other way round
        width, height = height, width
    content_type = JPEG if isinstance(image, JpegImagePlugin.JpegImageFile) else PNG
    return ImageInfo(content_type, width, height, orientation)


def _orientation(image: ImageFile.ImageFile) -> int:
    """The EXIF orientation from the header (1 when absent, out of range or unreadable).

    Only the EXIF read with the header: ``PngImageFile.getexif`` would decode the whole image to
    look for an ``eXIf`` chunk after the image data.
    """
    raw = image.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
        value = exif.get(ORIENTATION_TAG, 1)
    except Exception:  # any damage in a metadata block means no orientation, never a refusal
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_pixels(info: ImageInfo, limits: Limits) -> None:
    if info.width * info.height > limits.max_pixels:
        raise TooManyPixels(f"image is {info.width}x{info.height} pixels; the limit is {limits.max_pixels} pixels")


def _load(image: ImageFile.ImageFile, data: bytes) -> None:
    """Decode the pixels: truncated and damaged files raise ``CorruptImage``."""
    try:
        if isinstance(image, PngImagePlugin.PngImageFile):
            _verify_png_checksums(data)
        image.load()
    except _PARSE_ERRORS as error:
        raise CorruptImage(f"image does not decode (truncated or corrupt): {error}") from None


def _verify_png_checksums(data: bytes) -> None:
    """Every chunk's CRC, the image data's included (Pillow's own decode skips those)."""
    with PngImagePlugin.PngImageFile(io.BytesIO(data)) as png:
        png.verify()


def _bgr(image: Image.Image) -> np.ndarray:
    if image.mode in _SIXTEEN_BIT_GREY:  # Pillow's conversion to 8 bits would clip, not scale
        grey = np.right_shift(np.asarray(image), 8).clip(0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if image.mode not in _TO_BGR:
        image = image.convert("RGB")
    if image.mode == "RGB":
        # Pillow keeps RGB as 4 bytes a pixel: copied out as such (no per-pixel packing), the one
        # conversion to BGR drops the fourth byte. 0.2 ms less per 640x480 frame than via RGB.
        pixels = np.frombuffer(image.tobytes("raw", "RGBX"), np.uint8).reshape(image.height, image.width, 4)
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(np.asarray(image), _TO_BGR[image.mode])
