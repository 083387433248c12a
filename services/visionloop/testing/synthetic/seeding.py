"""Put synthetic frames and their ground truth into a hub project (tests, benchmarks, the demo)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2

from visionloop.client.loop import LoopClient
from visionloop.common.v1 import annotation_pb2, category_pb2, geometry_pb2, image_pb2
from visionloop.loop.v1 import image_service_pb2
from visionloop.testing.synthetic.world import Annotation, Sample

PERSON = "ground-truth"  # who "annotated" synthetic frames


def ensure_categories(client: LoopClient, categories: Iterable[tuple[str, str]]) -> dict[str, category_pb2.Category]:
    """The project's categories by name, creating the (name, type) ones that are missing."""
    existing = {c.name: c for c in client.list_categories()}
    for name, kind in categories:
        if name not in existing:
            existing[name] = client.create_category(name, kind)
    return existing


def shapes(
    annotations: Sequence[Annotation], categories: dict[str, category_pb2.Category], width: int, height: int
) -> list[annotation_pb2.Annotation]:
    """Ground truth as hub annotations, made by ``PERSON``, clipped to the ``width`` x ``height`` frame."""
    result = []
    for a in annotations:
        if a.box is not None:
            x0, y0 = max(a.box[0], 0.0), max(a.box[1], 0.0)
            x1, y1 = min(a.box[0] + a.box[2], width), min(a.box[1] + a.box[3], height)
            if x1 <= x0 or y1 <= y0:
                continue
            shape = geometry_pb2.Shape(box=geometry_pb2.Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0))
        elif a.point is not None:
            x, y = min(max(a.point[0], 0.0), width), min(max(a.point[1], 0.0), height)
            shape = geometry_pb2.Shape(point=geometry_pb2.Point(x=x, y=y))
        else:
            continue
        result.append(
            annotation_pb2.Annotation(
                category_id=categories[a.category].id,
                shape=shape,
                creator=annotation_pb2.Creator(person=PERSON),
            )
        )
    return result


def jpeg(sample: Sample, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(".jpg", sample.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("frame could not be encoded as JPEG")
    return data.tobytes()


def upload_annotated(
    client: LoopClient,
    samples: Iterable[Sample],
    categories: dict[str, category_pb2.Category],
    tags: Sequence[str] = (),
    state: int = image_pb2.IMAGE_STATE_COMPLETE,
) -> list[str]:
    """Upload frames with their ground truth in ``state``; returns the image ids in order."""
    ids = []
    for sample in samples:
        upload = image_service_pb2.ImageUpload(
            data=jpeg(sample),
            metadata=image_pb2.ImageMetadata(tags=list(tags), source="synthetic", state=state),  # type: ignore[arg-type]
            annotations=shapes(sample.annotations, categories, sample.image.shape[1], sample.image.shape[0]),
        )
        request = image_service_pb2.UploadImageRequest(ref=client.ref, image=upload)
        ids.append(client.images.UploadImage(request, timeout=client.timeout).metadata.id)
    return ids
