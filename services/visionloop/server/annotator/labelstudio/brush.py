"""Label Studio's brush masks: its run-length format (that of @thi.ng/rle-pack) over RGBA pixels.

A brush region's ``value.rle`` is a list of bytes holding a bit stream: 32 bits of value count,
5 bits of word size - 1, four 4-bit run-length field sizes - 1, then groups of one flag bit (1: a
run of one repeated value, 0: literal values), 2 bits choosing the length field, the length - 1
and the value(s). The values are the mask's RGBA bytes, row-major; the alpha channel is the mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_RLE_SIZES = (3, 4, 8, 16)
_HEADER_BITS = 32 + 5 + 4 * 4


class BadBrush(ValueError):
    """The RLE does not describe a mask of the expected size; the message says why."""


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.text = self.bits.tobytes().translate(bytes.maketrans(b"\x00\x01", b"01")).decode()
        self.at = 0

    def read(self, size: int) -> int:
        end = self.at + size
        if end > len(self.text):
            raise BadBrush("the brush RLE ends in the middle of a value")
        value = int(self.text[self.at : end], 2)
        self.at = end
        return value


def decode(rle: Sequence[int], width: int, height: int) -> np.ndarray:
    """The mask (height x width, bool) of a brush RLE of a ``width`` x ``height`` image."""
    if any(not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= 255 for b in rle):
        raise BadBrush("the brush RLE must be a list of bytes (integers 0-255)")
    if len(rle) * 8 < _HEADER_BITS:
        raise BadBrush("the brush RLE is shorter than its header")
    stream = _Bits(bytes(rle))
    count = stream.read(32)
    expected = width * height * 4
    if count != expected:  # checked before allocating: the header may claim anything
        raise BadBrush(f"the brush RLE holds {count} values; a {width}x{height} RGBA mask has {expected}")
    word = stream.read(5) + 1
    sizes = [stream.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, dtype=np.uint8)
    at = 0
    while at < count:
        repeated = stream.read(1)
        length = 1 + stream.read(sizes[stream.read(2)])
        end = min(count, at + length)
        if repeated:
            out[at:end] = stream.read(word)
        else:
            for i in range(at, end):
                out[i] = stream.read(word)
        at = end
    return out.reshape(height, width, 4)[:, :, 3] > 0


def encode(mask: np.ndarray) -> list[int]:
    """A brush RLE of a mask (height x width, bool): opaque white where the mask is set."""
    values = np.repeat(np.where(np.asarray(mask, dtype=bool).ravel(), 255, 0).astype(np.uint8), 4)
    count = values.size
    parts = [f"{count:032b}", f"{8 - 1:05b}", *(f"{size - 1:04b}" for size in _RLE_SIZES)]
    if count:
        changes = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate(([0], changes))
        lengths = np.diff(np.concatenate((starts, [count])))
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            value = f"{int(values[start]):08b}"
            while length > 0:
                run = min(length, 1 << 16)
                index = next(i for i, size in enumerate(_RLE_SIZES) if run <= 1 << size)
                parts.append(f"1{index:02b}{run - 1:0{_RLE_SIZES[index]}b}{value}")
                length -= run
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
