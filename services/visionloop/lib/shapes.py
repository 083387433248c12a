"""Annotation geometry that several services read: bounding boxes of every shape kind, and masks.

A ``Mask`` (visionloop.common.v1) is run-length encoded in row-major order, background first.
COCO's RLE runs in column-major order and may be compressed to a string; ``from_coco_rle`` and
``to_coco_rle`` convert between the two. Masks are decoded whole (one byte a pixel): callers
bound the size by the image's, which the hub limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visionloop.common.v1 import geometry_pb2

Box = tuple[float, float, float, float]  # x, y, width, height in pixels


class BadMask(ValueError):
    """A mask or RLE that does not describe an image-sized binary mask; the message says why."""


def outline_box(points: Sequence[geometry_pb2.Point]) -> Box | None:
    if not points:
        return None
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def outlines(shape: geometry_pb2.Shape) -> list[geometry_pb2.Polygon]:
    """The outlines of a polygon or multi-polygon shape; none for other kinds."""
    kind = shape.WhichOneof("kind")
    if kind == "polygon":
        return [shape.polygon]
    if kind == "multi_polygon":
        return list(shape.multi_polygon.polygons)
    return []


def shape_box(shape: geometry_pb2.Shape) -> Box | None:
    """The bounding box of a box, outline(s) or mask; None for points, whole-image labels, empty shapes."""
    kind = shape.WhichOneof("kind")
    if kind == "box":
        return (shape.box.x, shape.box.y, shape.box.width, shape.box.height)
    if kind in ("polygon", "multi_polygon"):
        return outline_box([p for polygon in outlines(shape) for p in polygon.points])
    if kind == "mask":
        return mask_box(shape.mask)
    return None


def polygon_area(polygon: geometry_pb2.Polygon) -> float:
    """The shoelace area (outlines are taken as simple polygons, as COCO does)."""
    xs = np.array([p.x for p in polygon.points], dtype=np.float64)
    ys = np.array([p.y for p in polygon.points], dtype=np.float64)
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


# --- masks ------------------------------------------------------------------------------------


def _decode(counts: Sequence[int], length: int) -> np.ndarray:
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and runs.min() < 0:
        raise BadMask("a run length is negative")
    if int(runs.sum()) != length:
        raise BadMask(f"the runs cover {int(runs.sum())} pixels, the mask has {length}")
    values = np.zeros(runs.size, dtype=np.uint8)
    values[1::2] = 1  # runs alternate background, foreground
    return np.repeat(values, runs)


def _encode(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat 0/1 array, background first (0 when it starts with foreground)."""
    if flat.size == 0:
        return []
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def decode_mask(mask: geometry_pb2.Mask) -> np.ndarray:
    """The mask as a height x width uint8 array of 0 and 1; BadMask when its runs do not fit."""
    if mask.width <= 0 or mask.height <= 0:
        raise BadMask(f"the mask's size {mask.width}x{mask.height} is not positive")
    return _decode(mask.counts, mask.width * mask.height).reshape(mask.height, mask.width)


def encode_mask(pixels: np.ndarray) -> geometry_pb2.Mask:
    """A height x width array (non-zero is foreground) as a Mask."""
    height, width = pixels.shape
    return geometry_pb2.Mask(width=width, height=height, counts=_encode((pixels != 0).astype(np.uint8).ravel()))


def mask_box(mask: geometry_pb2.Mask) -> Box | None:
    """The bounding box of the foreground in pixels (None when it is empty or the runs are broken)."""
    try:
        pixels = decode_mask(mask)
    except BadMask:
        return None
    rows = np.flatnonzero(pixels.any(axis=1))
    cols = np.flatnonzero(pixels.any(axis=0))
    if rows.size == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0]))


def mask_area(mask: geometry_pb2.Mask) -> int:
    """Foreground pixels, counted from the runs alone."""
    return int(sum(mask.counts[1::2]))


def _uncompress(text: str) -> list[int]:
    """The run lengths of COCO's compressed RLE string (pycocotools' ``rleFrString``).

    Each count is a little-endian sequence of 5-bit groups in characters from '0'; 0x20 marks a
    further group, 0x10 in the last one the sign; from the third count on it is a difference
    to the count two before. Read here rather than by pycocotools, whose decoder trusts the runs
    to fit the mask's size.
    """
    counts: list[int] = []
    data = text.encode("ascii", errors="replace")
    at = 0
    while at < len(data):
        value, shift, more = 0, 0, True
        while more:
            if at >= len(data):
                raise BadMask("the compressed RLE ends inside a count")
            group = data[at] - 48
            if not 0 <= group < 64:
                raise BadMask(f"the compressed RLE has the character {chr(data[at])!r}")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            at += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def from_coco_rle(rle: Any, width: int, height: int) -> geometry_pb2.Mask:
    """A COCO RLE (``{"size": [h, w], "counts": [...] or "compressed"}``) of an image of this size."""
    if not isinstance(rle, dict) or not isinstance(rle.get("size"), list) or "counts" not in rle:
        raise BadMask("an RLE mask needs size [height, width] and counts")
    if rle["size"] != [height, width]:
        raise BadMask(f"the RLE's size {rle['size']} is not the image's [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _uncompress(counts)
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        raise BadMask("the RLE's counts must be a list of integers or a compressed string")
    column_major = _decode(counts, width * height)
    return geometry_pb2.Mask(width=width, height=height, counts=_encode(column_major.reshape(width, height).T.ravel()))


def to_coco_rle(mask: geometry_pb2.Mask) -> dict[str, Any]:
    """COCO's uncompressed RLE (column-major counts), as COCO writes crowd regions."""
    pixels = decode_mask(mask)
    return {"size": [mask.height, mask.width], "counts": _encode(pixels.T.ravel())}
