"""Generated test pictures (no downloads): distinct JPEG/PNG bytes from a seed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def picture(seed: int, width: int = 64, height: int = 48, fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, quality=90)
    return out.getvalue()
