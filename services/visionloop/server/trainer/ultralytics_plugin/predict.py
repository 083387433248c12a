"""Detections of an Ultralytics model on decoded images, as the trainer sends them to the hub.

Ultralytics' own predict (its letterbox, decoding and NMS) on BGR arrays; boxes of a point
category become points at their centres, as the detector answers them; a segmentation model
gives each object's mask at the image's size, its outline and its box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionloop.common.v1 import detection_pb2, geometry_pb2
from visionloop.lib.shapes import encode_mask

THRESHOLD = 0.1  # low enough that uncertain objects reach ranking and review (the reference trainer's)
IOU = 0.7  # Ultralytics' predict default, which the detector applies too
MAX_OBJECTS = 300


@dataclass(frozen=True)
class Output:
    """What class index k of a model stands for: its category id, name and type."""

    id: str
    name: str
    type: str  # "box", "point", "segmentation"


def detections(
    model: Any, images: Sequence[np.ndarray], outputs: Sequence[Output], imgsz: int, device: str | None
) -> list[detection_pb2.Detections]:
    """``model`` (an ultralytics ``YOLO``) on BGR ``images``: one ``Detections`` per image."""
    if not images:
        return []
    results = model.predict(
        list(images),
        imgsz=imgsz,
        conf=THRESHOLD,
        iou=IOU,
        max_det=MAX_OBJECTS,
        device=device,
        verbose=False,
    )
    return [_detections(result, outputs) for result in results]


def _detections(result: Any, outputs: Sequence[Output]) -> detection_pb2.Detections:
    found = detection_pb2.Detections()
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return found
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    scores = boxes.conf.cpu().numpy().tolist()
    classes = boxes.cls.cpu().numpy().astype(int).tolist()
    masks = result.masks
    for index, ((x1, y1, x2, y2), score, k) in enumerate(zip(xyxy, scores, classes, strict=True)):
        if not 0 <= k < len(outputs):
            continue
        output = outputs[k]
        confidence = float(min(max(score, 0.0), 1.0))
        if masks is not None:
            detection = found.segmentations.add(category_id=output.id, category_name=output.name, confidence=confidence)
            detection.bounding_box.CopyFrom(geometry_pb2.Box(x=x1, y=y1, width=x2 - x1, height=y2 - y1))
            detection.polygon.points.extend(geometry_pb2.Point(x=float(x), y=float(y)) for x, y in masks.xy[index])
            detection.mask.CopyFrom(encode_mask(_mask(masks.data[index], result.orig_shape)))
        elif output.type == "point":
            found.points.add(
                category_id=output.id,
                category_name=output.name,
                confidence=confidence,
                point=geometry_pb2.Point(x=(x1 + x2) / 2, y=(y1 + y2) / 2),
            )
        else:
            found.boxes.add(
                category_id=output.id,
                category_name=output.name,
                confidence=confidence,
                box=geometry_pb2.Box(x=x1, y=y1, width=x2 - x1, height=y2 - y1),
            )
    return found


def _mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """One mask of the model's input size at the image's ``shape`` (height, width), as Ultralytics scales them."""
    from ultralytics.utils import ops

    scaled = ops.scale_masks(mask[None, None].float(), shape)[0, 0]
    return (scaled > 0.5).cpu().numpy()
