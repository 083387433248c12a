"""Generated frames with coloured squares for the synthetic colour detector."""

from __future__ import annotations

import cv2
import numpy as np


def frame(width: int = 640, height: int = 480, squares: tuple[tuple[int, int, int, str], ...] = ()) -> np.ndarray:
    """A dark BGR frame with (x, y, size, colour) squares, colour "red" or "green"."""
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    for x, y, size, colour in squares:
        pixels[y : y + size, x : x + size] = (0, 0, 255) if colour == "red" else (0, 255, 0)
    return pixels


def jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()
