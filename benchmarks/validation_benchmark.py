"""What the contract checks at the edge cost per request (runtime/validation.py).

Not a test: it prints a table and exits 0. Each row parses one typical request the way a
server does, once with the message class's own ``FromString`` and once through the guarded
deserializer every service uses (parse, drop unknown fields, check the limits); the difference
is what the checks add to the call. Timings are the best of 7 repeats of ``--calls`` calls.

    .venv/bin/python -m benchmarks.validation_benchmark
"""

from __future__ import annotations

import argparse
import io
import timeit
from collections.abc import Callable

import numpy as np
from PIL import Image

from visionloop.common.v1 import detection_pb2, geometry_pb2, image_pb2, transfer_pb2
from visionloop.detector.v1 import detector_service_pb2 as detector_pb
from visionloop.loop.v1 import image_service_pb2, project_service_pb2
from visionloop.runtime import validation

REF = project_service_pb2.ProjectRef(organization="acme", project="weeds")


def _jpeg(width: int = 640, height: int = 480) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=60)
    return out.getvalue()


def _detections(count: int) -> detection_pb2.Detections:
    return detection_pb2.Detections(
        boxes=[
            detection_pb2.BoxDetection(
                category_id="3f2a",
                category_name="thistle",
                confidence=0.5,
                model_version="1.2",
                box=geometry_pb2.Box(x=10, y=20, width=30, height=40),
            )
            for _ in range(count)
        ]
    )


def requests() -> list[tuple[str, type, bytes]]:
    picture = _jpeg()
    metadata = image_pb2.ImageMetadata(
        tags=["uncertain", "field-3"],
        camera_id="front",
        source="detector:robot-7",
        create_time={"seconds": 1_700_000_000},
    )
    options = detector_pb.DetectOptions(camera_id="front", tags=["field-3"], score_threshold=0.3, autoupload=1)
    return [
        (
            "UploadImage, no labels",
            image_service_pb2.UploadImageRequest,
            image_service_pb2.UploadImageRequest(
                ref=REF, image=image_service_pb2.ImageUpload(data=picture, metadata=metadata)
            ).SerializeToString(),
        ),
        (
            "UploadImage, 5 detections (detector outbox)",
            image_service_pb2.UploadImageRequest,
            image_service_pb2.UploadImageRequest(
                ref=REF, image=image_service_pb2.ImageUpload(data=picture, metadata=metadata, detections=_detections(5))
            ).SerializeToString(),
        ),
        (
            "UploadImages chunk (1 MiB)",
            image_service_pb2.UploadImagesRequest,
            image_service_pb2.UploadImagesRequest(
                chunk=transfer_pb2.BlobChunk(offset=0, data=bytes(1024 * 1024))
            ).SerializeToString(),
        ),
        (
            "Detect",
            detector_pb.DetectRequest,
            detector_pb.DetectRequest(image=image_pb2.Image(encoded=picture), options=options).SerializeToString(),
        ),
        (
            "DetectStream frame",
            detector_pb.DetectStreamRequest,
            detector_pb.DetectStreamRequest(frame_id=7, image=image_pb2.Image(encoded=picture)).SerializeToString(),
        ),
    ]


def _best(call: Callable[[], object], calls: int) -> float:
    return min(timeit.repeat(call, number=calls, repeat=7)) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="calls per repeat (default 5000)")
    args = parser.parse_args(argv)
    print(f"{'request':<45} {'bytes':>9} {'parse µs':>9} {'guarded µs':>11} {'checks add µs':>14}")
    for name, cls, data in requests():
        guarded = validation.decoder(cls.FromString)
        if type(guarded(data)) is not cls:
            raise SystemExit(f"{name}: refused: {guarded(data)}")
        plain = _best(lambda: cls.FromString(data), args.calls)  # noqa: B023 (timed at once)
        checked = _best(lambda: guarded(data), args.calls)  # noqa: B023
        print(f"{name:<45} {len(data):>9} {plain:>9.1f} {checked:>11.1f} {checked - plain:>14.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
