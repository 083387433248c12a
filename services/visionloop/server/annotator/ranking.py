"""Active-learning criteria: which queued image teaches the next model most.

Uncertainty criteria score each object the model saw. Detections of different categories on the
same spot (boxes or outlines overlapping at IoU >= 0.5, points within 8 px; all of an image's
classifications) form one object; its class distribution is their confidences plus the mass left
over (``1 - sum``, "none of these"), normalised. Per object, with s1 >= s2 the two largest
probabilities:

- least confidence: ``1 - s1``
- margin: ``1 - (s1 - s2)``
- entropy: ``-sum p log p / log K`` (K entries; 1 for a uniform distribution)

The image priority reduces the object scores with max or mean; an image without detections
scores 0 (nothing uncertain to learn from). The diversity criterion instead uses image embeddings:
greedy k-centre over the queue, each image's priority being its distance to the nearest image
already annotated or picked before it, so the queue walks the unexplored parts of image space first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import detection_pb2
from visionloop.lib.geometry import box_iou

SAME_SPOT_IOU = 0.5
SAME_SPOT_PIXELS = 8.0


@dataclass
class _Seen:
    kind: str
    where: tuple[float, ...]
    scores: list[float]


def _same_spot(kind: str, a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if kind == "point":
        return math.dist(a, b) <= SAME_SPOT_PIXELS
    if kind == "image":
        return True
    return box_iou(a, b) >= SAME_SPOT_IOU


def objects(detections: detection_pb2.Detections) -> list[list[float]]:
    """Per object, the confidences of the categories the model gave it."""
    seen: list[_Seen] = []
    items: list[tuple[str, tuple[float, ...], float]] = []
    for box in detections.boxes:
        items.append(("box", (box.box.x, box.box.y, box.box.width, box.box.height), box.confidence))
    for seg in detections.segmentations:
        b = seg.bounding_box
        items.append(("box", (b.x, b.y, b.width, b.height), seg.confidence))
    for point in detections.points:
        items.append(("point", (point.point.x, point.point.y), point.confidence))
    for label in detections.classifications:
        items.append(("image", (), label.confidence))
    for kind, where, confidence in items:
        for candidate in seen:
            if candidate.kind == kind and _same_spot(kind, candidate.where, where):
                candidate.scores.append(confidence)
                break
        else:
            seen.append(_Seen(kind, where, [confidence]))
    return [s.scores for s in seen]


def distribution(scores: Sequence[float]) -> np.ndarray:
    values = np.clip(np.asarray(scores, np.float64), 0, 1)
    rest = max(0.0, 1.0 - float(values.sum()))
    values = np.append(values, rest) if rest > 0 or len(values) == 1 else values
    return values / values.sum() if values.sum() > 0 else np.full(len(values), 1 / len(values))


def object_score(scores: Sequence[float], ranker: int) -> float:
    p = np.sort(distribution(scores))[::-1]
    if ranker == pb.RANKER_MARGIN:
        return float(1 - (p[0] - (p[1] if len(p) > 1 else 0.0)))
    if ranker == pb.RANKER_ENTROPY:
        nonzero = p[p > 0]
        return float(-(nonzero * np.log(nonzero)).sum() / math.log(len(p))) if len(p) > 1 else 0.0
    return float(1 - p[0])  # least confidence (the default)


def image_priority(detections: detection_pb2.Detections, ranker: int, reducer: int) -> float:
    scores = [object_score(s, ranker) for s in objects(detections)]
    if not scores:
        return 0.0
    return float(np.mean(scores)) if reducer == pb.REDUCER_MEAN else float(max(scores))


def embedding(image: np.ndarray) -> np.ndarray:
    """A small appearance vector: a grey 8x8 thumbnail and an 8-bin-per-channel colour histogram."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    thumb = cv2.resize(grey, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float64).ravel() / 255.0
    hist = np.concatenate([np.bincount(image[..., c].ravel() // 32, minlength=8) for c in range(3)]).astype(np.float64)
    hist /= max(1.0, hist.sum() / 3)
    return np.concatenate([thumb / 8.0, hist])


def k_centre(queue: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Greedy k-centre: each queued vector's distance to the nearest reference or earlier pick.

    With no reference the first pick is the queued vector farthest from the queue's mean.
    """
    count = len(queue)
    priorities = np.zeros(count)
    if count == 0:
        return priorities
    if len(reference):
        nearest = np.min(np.linalg.norm(queue[:, None, :] - reference[None, :, :], axis=2), axis=1)
    else:
        nearest = np.linalg.norm(queue - queue.mean(axis=0), axis=1)
    picked = np.zeros(count, bool)
    for _ in range(count):
        candidates = np.where(picked, -np.inf, nearest)
        index = int(np.argmax(candidates))
        priorities[index] = nearest[index]
        picked[index] = True
        nearest = np.minimum(nearest, np.linalg.norm(queue - queue[index], axis=1))
    return priorities
