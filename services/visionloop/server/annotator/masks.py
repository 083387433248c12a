"""Binary masks and their wire forms: run-length encoding, outline, box, centre, IoU."""

from __future__ import annotations

import cv2
import numpy as np

from visionloop.common.v1 import geometry_pb2


def encode_rle(mask: np.ndarray) -> geometry_pb2.Mask:
    """Row-major runs alternating background and foreground, starting with background."""
    height, width = mask.shape
    flat = np.ascontiguousarray(mask, dtype=bool).ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return geometry_pb2.Mask(width=width, height=height, counts=counts)


def decode_rle(rle: geometry_pb2.Mask) -> np.ndarray:
    values = np.zeros(len(rle.counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(rle.counts, dtype=np.int64))
    if flat.size != rle.width * rle.height:
        raise ValueError(f"mask runs cover {flat.size} pixels, not {rle.width}x{rle.height}")
    return flat.reshape(rle.height, rle.width)


def polygon(mask: np.ndarray) -> geometry_pb2.Polygon:
    """Outline of the largest connected part (empty when the mask is)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return geometry_pb2.Polygon()
    largest = max(contours, key=cv2.contourArea)
    epsilon = min(1.0, 0.005 * cv2.arcLength(largest, closed=True))
    points = cv2.approxPolyDP(largest, epsilon, closed=True).reshape(-1, 2)
    if len(points) < 3:  # a line or a dot: its bounding square
        x, y, w, h = cv2.boundingRect(largest)
        points = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    return geometry_pb2.Polygon(points=[geometry_pb2.Point(x=float(x), y=float(y)) for x, y in points])


def box(mask: np.ndarray) -> geometry_pb2.Box:
    """Pixel-edge bounding box of the mask (zero box when empty)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return geometry_pb2.Box()
    x0, y0 = int(xs.min()), int(ys.min())
    return geometry_pb2.Box(x=x0, y=y0, width=int(xs.max()) + 1 - x0, height=int(ys.max()) + 1 - y0)


def centre(mask: np.ndarray) -> geometry_pb2.Point:
    """The mask pixel deepest inside the object (always on the object, unlike the centroid of a ring)."""
    if not mask.any():
        return geometry_pb2.Point()
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return geometry_pb2.Point(x=float(x) + 0.5, y=float(y) + 0.5)
