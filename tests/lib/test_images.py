"""visionloop.lib.images: limits from the header, one orientation rule, precise refusals, and
pixels that agree with OpenCV's (libjpeg/libpng) reading of the same files."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests import crafted
from visionloop.lib import images

LIMITS = images.Limits()


def opencv(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (crafted.zero_png(), "12000x12000"),
        (crafted.declared_png(60000, 60000), "60000x60000"),
        (crafted.declared_jpeg(60000, 60000), "60000x60000"),
    ],
)
@pytest.mark.parametrize("read", [images.inspect, images.validate, images.decode])
def test_too_many_pixels_is_refused_from_the_header(data: bytes, declared: str, read) -> None:
    # The 60000x60000 files hold 8x8 pixels: had anything been decoded, they would fail as corrupt.
    with pytest.raises(images.TooManyPixels) as caught:
        read(data, LIMITS)
    assert caught.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.message == f"image is {declared} pixels; the limit is 100000000 pixels"


def test_limits_are_the_callers(tmp_path: Path) -> None:
    data = crafted.encode(crafted.scene(64, 48))
    with pytest.raises(images.TooManyBytes, match=f"image is {len(data)} bytes; the limit is 100 bytes"):
        images.decode(data, images.Limits(max_bytes=100))
    with pytest.raises(images.TooManyPixels, match="image is 64x48 pixels; the limit is 3071 pixels"):
        images.validate(data, images.Limits(max_pixels=64 * 48 - 1))
    assert images.validate(data, images.Limits(max_pixels=64 * 48)).width == 64
    path = tmp_path / "picture.jpg"
    path.write_bytes(data)
    with pytest.raises(images.TooManyBytes):
        images.read_file(path, images.Limits(max_bytes=100))
    assert images.read_file(path, LIMITS).shape == (48, 64, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_picture(orientation: int) -> None:
    stored = crafted.scene(200, 100)
    data = crafted.exif_jpeg(stored, orientation)
    info = images.inspect(data, LIMITS)
    pixels = images.decode(data, LIMITS)
    upright = (100, 200) if orientation >= 5 else (200, 100)
    assert (info.width, info.height, info.orientation) == (*upright, orientation)
    assert images.validate(data, LIMITS) == info
    assert pixels.shape == (upright[1], upright[0], 3)
    # The same picture as Pillow's own EXIF rule and as OpenCV's reading (libjpeg-turbo in both).
    with Image.open(io.BytesIO(data)) as reference:
        expected = cv2.cvtColor(np.asarray(ImageOps.exif_transpose(reference).convert("RGB")), cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(pixels, expected)
    assert np.abs(pixels.astype(int) - opencv(data).astype(int)).max() <= 1
    # The red corner is where the upright picture has it: for 1 it stays top left.
    if orientation == 1:
        assert tuple(pixels[5, 5]) == pytest.approx((20, 20, 250), abs=8)


def test_damaged_exif_counts_as_no_orientation() -> None:
    data = bytearray(crafted.exif_jpeg(crafted.scene(), 6))
    at = data.index(b"Exif\x00\x00") + 6
    data[at : at + 8] = b"XX\x00\x00\x00\x00\x00\x00"  # neither II nor MM: no TIFF structure
    assert images.inspect(bytes(data), LIMITS).orientation == 1
    assert images.decode(bytes(data), LIMITS).shape == (100, 200, 3)


@pytest.mark.parametrize(
    ("pixels", "mode"),
    [
        (crafted.scene(), "RGB"),
        (crafted.scene()[..., 0], "L"),
        (np.dstack([crafted.scene(), np.full((100, 200), 7, np.uint8)]), "RGBA"),
        ((np.arange(100 * 200, dtype=np.uint16) * 3).reshape(100, 200), "I;16"),
        (crafted.scene()[..., 1] > 128, "1"),
    ],
)
def test_png_pixels_match_libpng_through_opencv(pixels: np.ndarray, mode: str) -> None:
    data = crafted.encode(pixels, "PNG")
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.mode == mode
    np.testing.assert_array_equal(images.decode(data, LIMITS), opencv(data))


def test_palette_png_matches_libpng() -> None:
    image = Image.fromarray(crafted.scene()).quantize(16)
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=3)
    np.testing.assert_array_equal(images.decode(out.getvalue(), LIMITS), opencv(out.getvalue()))


def test_png_with_a_bad_checksum_is_refused_as_libpng_refuses_it() -> None:
    data = crafted.bad_crc_png()
    assert opencv(data) is None
    for read in (images.validate, images.decode):
        with pytest.raises(images.CorruptImage) as caught:
            read(data, LIMITS)
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "checksum in b'IDAT'" in caught.value.message


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_refused(fmt: str) -> None:
    data = crafted.encode(crafted.scene(), fmt)
    for cut in (len(data) // 2, len(data) - 30):
        with pytest.raises(images.CorruptImage, match="does not decode"):
            images.validate(data[:cut], LIMITS)
        with pytest.raises(images.CorruptImage, match="does not decode"):
            images.decode(data[:cut], LIMITS)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", images.NotAnImage, "image is empty"),
        (b"hello world", images.NotAnImage, "neither JPEG nor PNG"),
        (crafted.encode(crafted.scene(), "GIF"), images.NotAnImage, "image format GIF is not accepted"),
        (crafted.encode(crafted.scene(), "BMP"), images.NotAnImage, "image format BMP is not accepted"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, images.CorruptImage, "not a readable JPEG header"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, images.CorruptImage, "not a readable PNG header"),
        (crafted.declared_png(0, 10), images.CorruptImage, "not a readable PNG header"),
    ],
)
def test_refusals_say_why(data: bytes, error: type[images.ImageError], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        images.decode(data, LIMITS)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_decode_returns_a_new_writable_array() -> None:
    pixels = images.decode(crafted.encode(crafted.scene()), LIMITS)
    assert pixels.dtype == np.uint8
    assert pixels.flags.writeable
    assert pixels.flags.c_contiguous
