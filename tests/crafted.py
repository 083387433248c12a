"""Images crafted for the image rules' tests: bombs, lying headers, EXIF rotation, bad checksums.

All generated here (Pillow, numpy, zlib); nothing is downloaded.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image

ORIENTATION = 0x0112


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def zero_png(width: int = 12000, height: int = 12000) -> bytes:
    """A real, complete, all-black 8-bit grey PNG: 12000x12000 is about 140 KB and 144 MB of pixels.

    Compressed row by row, so making it never holds the pixels.
    """
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row's zeros
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def declared_png(width: int, height: int) -> bytes:
    """A small PNG whose header (with a valid checksum) claims ``width`` x ``height``."""
    small = encode(np.zeros((8, 8, 3), np.uint8), "PNG")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return small[:8] + _chunk(b"IHDR", header) + small[8 + 25 :]


def declared_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``width`` x ``height`` (at most 65535 each)."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def encode(pixels: np.ndarray, fmt: str = "JPEG", **options: object) -> bytes:
    """``pixels`` (HxWx3 RGB, or HxW) written by Pillow."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **options)
    return out.getvalue()


def scene(width: int = 200, height: int = 100, seed: int = 0) -> np.ndarray:
    """An RGB picture whose every quarter differs, so any flip or turn shows."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (4, 8, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.NEAREST)).copy()
    pixels[: height // 4, : width // 4] = (250, 20, 20)  # a red top-left corner
    return pixels


def exif_jpeg(pixels: np.ndarray, orientation: int, quality: int = 95) -> bytes:
    """A JPEG of ``pixels`` as stored, tagged with the EXIF ``orientation`` (6: turn 90° clockwise to view)."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return encode(pixels, "JPEG", quality=quality, exif=exif.tobytes())


def bad_crc_png(pixels: np.ndarray | None = None) -> bytes:
    """A PNG whose IDAT chunk has a wrong checksum (its data intact)."""
    data = bytearray(encode(scene() if pixels is None else pixels, "PNG"))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    crc_at = idat + 4 + length
    data[crc_at : crc_at + 4] = bytes(b ^ 0xFF for b in data[crc_at : crc_at + 4])
    return bytes(data)
