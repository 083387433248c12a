"""Annotation from ground truth, the demo's stand-in for people working through the hub's images.

The hub names an image by the sha256 of its bytes, and the detector uploads the robot's own JPEG
bytes, so an inbox image's id finds the frame it came from, and with it what the frame holds.
Each object becomes an annotation (``CreateAnnotation``, as an annotation tool makes them), then
the image is marked complete, which is what makes the trainer take it. In round 1 people label
the whole inbox (the bootstrap frames); later they work through the annotation queue, highest
priority first: the images the round's label budget picked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from visionloop.client.loop import LoopClient
from visionloop.common.v1 import category_pb2, image_pb2
from visionloop.demo.scenes import Frame
from visionloop.loop.v1 import annotation_service_pb2, image_service_pb2
from visionloop.testing.synthetic.seeding import shapes

INBOX = image_pb2.IMAGE_STATE_INBOX
QUEUE = image_pb2.IMAGE_STATE_ANNOTATE

# Every inbox image the people annotate trains: the trainer holds out the validation frames instead
# (tag test), so its 20 % split by image id takes no pictures away from the model.
TRAIN_TAG = "train"
TEST_TAG = "test"


class GroundTruth:
    """Every frame the robots sent, by the hub's image id."""

    def __init__(self) -> None:
        self._frames: dict[str, Frame] = {}

    def add(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            self._frames[frame.image_id] = frame

    def get(self, image_id: str) -> Frame | None:
        return self._frames.get(image_id)

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(frozen=True)
class Annotated:
    images: int  # images annotated and marked complete
    annotations: int  # annotations created on them
    unknown: int  # images no robot sent (left alone)


def annotate(
    client: LoopClient,
    truth: GroundTruth,
    categories: Mapping[str, category_pb2.Category],
    tick: Callable[[int], object] = lambda _: None,
    state: int = INBOX,
) -> Annotated:
    """Annotate every image in ``state`` a robot sent (the queue: highest priority first) and mark it complete."""
    order = image_service_pb2.IMAGE_ORDER_PRIORITY if state == QUEUE else image_service_pb2.IMAGE_ORDER_OLDEST
    waiting = list(client.list_images(order=order, states=[state]))
    images = annotations = unknown = 0
    for metadata in waiting:
        frame = truth.get(metadata.id)
        if frame is None:
            unknown += 1
            continue
        for annotation in shapes(frame.annotations, dict(categories), frame.width, frame.height):
            annotation.image_id = metadata.id
            request = annotation_service_pb2.CreateAnnotationRequest(ref=client.ref, annotation=annotation)
            client.annotations.CreateAnnotation(request, timeout=client.timeout)
            annotations += 1
        done = image_service_pb2.UpdateImageRequest(
            ref=client.ref, image_id=metadata.id, state=image_pb2.IMAGE_STATE_COMPLETE, add_tags=[TRAIN_TAG]
        )
        client.images.UpdateImage(done, timeout=client.timeout)
        images += 1
        tick(1)
    return Annotated(images, annotations, unknown)


def upload_validation(
    client: LoopClient,
    frames: Iterable[Frame],
    categories: Mapping[str, category_pb2.Category],
    tick: Callable[[int], object] = lambda _: None,
) -> int:
    """Upload annotated frames the trainer holds out (tag ``test``), as a team labels a validation
    set once: every training measures its new model and the deployed one on them, and the hub's
    promotion gate compares the two. Returns how many were uploaded."""
    count = 0
    for frame in frames:
        upload = image_service_pb2.ImageUpload(
            data=frame.data,
            metadata=image_pb2.ImageMetadata(
                tags=[TEST_TAG], source="demo:validation", state=image_pb2.IMAGE_STATE_COMPLETE
            ),
            annotations=shapes(frame.annotations, dict(categories), frame.width, frame.height),
        )
        client.images.UploadImage(
            image_service_pb2.UploadImageRequest(ref=client.ref, image=upload), timeout=client.timeout
        )
        count += 1
        tick(1)
    return count
