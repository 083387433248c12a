"""Image decoding: ``visionloop.lib.images`` next to the alternatives, CPU per image on one thread.

Not a test: it measures, prints a table and exits 0. On the hub benchmark's 640x480 JPEGs (and
the same pictures as PNG) it times

- the hub's check: ``images.validate`` (Pillow, JPEG at 1/8 scale in grey), the bare Pillow calls
  it is built on (``Image.open`` + ``draft`` + ``load``, without the library's rules), and
  OpenCV's reduced decode (``IMREAD_REDUCED_GRAYSCALE_8``);
- a consumer's decode to BGR pixels: ``images.decode`` (Pillow) and ``cv2.imdecode``.

Run from the repository root::

    .venv/bin/python -m benchmarks.image_benchmark [--images 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from benchmarks.hub_benchmark import pictures
from visionloop.lib import images

LIMITS = images.DEFAULT_LIMITS


def pillow_check(data: bytes) -> None:
    """The Pillow calls ``visionloop.lib.images`` checks with, without its rules (signature, orientation, limits)."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            image.draft("L", (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()


def opencv_reduced(data: bytes) -> None:
    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)


def opencv_decode(data: bytes) -> None:
    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


CANDIDATES: list[tuple[str, Callable[[bytes], object]]] = [
    ("check: images.validate", lambda data: images.validate(data, LIMITS)),
    ("check: Pillow open+draft+load", pillow_check),
    ("check: OpenCV reduced 1/8 grey", opencv_reduced),
    ("decode: images.decode (BGR)", lambda data: images.decode(data, LIMITS)),
    ("decode: cv2.imdecode (BGR)", opencv_decode),
]


def cpu_ms_per_image(function: Callable[[bytes], object], data: Sequence[bytes]) -> float:
    started = time.thread_time()
    for item in data:
        function(item)
    return (time.thread_time() - started) / len(data) * 1000


def as_png(jpegs: Sequence[bytes]) -> list[bytes]:
    out = []
    for data in jpegs:
        buffer = io.BytesIO()
        with Image.open(io.BytesIO(data)) as image:
            image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="pictures per format")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    args = parser.parse_args()
    jpegs = pictures(args.images, seed=7, desc="pictures")
    sets = {"JPEG": jpegs, "PNG": as_png(jpegs[: max(1, args.images // 4)])}
    print(f"{'':34s}" + "".join(f"{fmt + ' ms/img':>14s}" for fmt in sets))
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):  # interleaved: a slow spell of the machine hits every candidate
        for name, function in CANDIDATES:
            for fmt, data in sets.items():
                results.setdefault((name, fmt), []).append(cpu_ms_per_image(function, data))
    for name, _ in CANDIDATES:
        print(f"{name:34s}" + "".join(f"{statistics.median(results[(name, fmt)]):14.3f}" for fmt in sets))


if __name__ == "__main__":
    main()
