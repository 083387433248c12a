"""Decoded candidates to ``Detections``: thresholds, NMS, limits, original-image coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionloop.common.v1 import category_pb2, detection_pb2, geometry_pb2, model_pb2
from visionloop.detector import decoders
from visionloop.detector.preprocess import Transform
from visionloop.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Settings:
    """Post-processing for one request: the request's values, else the model's defaults."""

    score_threshold: float
    iou_threshold: float
    max_objects: int
    class_agnostic: bool

    @classmethod
    def resolve(cls, options: object, defaults: model_pb2.DetectionDefaults) -> Settings:
        def pick(field: str, fallback: float) -> float:
            return getattr(options, field) if options.HasField(field) else fallback  # type: ignore[attr-defined]

        score = pick("score_threshold", defaults.score_threshold or 0.25)
        iou = pick("iou_threshold", defaults.iou_threshold or 0.45)
        limit = int(pick("max_objects", defaults.max_objects or 100))
        if not 0 <= score <= 1:
            raise InvalidArgument(f"options.score_threshold must be in [0, 1], got {score:g}")
        if not 0 <= iou <= 1:
            raise InvalidArgument(f"options.iou_threshold must be in [0, 1], got {iou:g}")
        if limit < 1:
            raise InvalidArgument(f"options.max_objects must be at least 1, got {limit}")
        return cls(score, iou, limit, bool(options.class_agnostic_nms))  # type: ignore[attr-defined]


def _suppress(candidates: decoders.Candidates, settings: Settings) -> decoders.Candidates:
    if candidates.scores.size == 0:
        return candidates
    boxes = candidates.boxes
    if not settings.class_agnostic:  # shift classes apart so boxes of different classes never overlap
        shift = (boxes.max() + 1.0) * candidates.classes.astype(np.float32)
        boxes = boxes + shift[:, None]
    keep = decoders.nms(boxes, candidates.scores, settings.iou_threshold)[: settings.max_objects]
    return decoders.Candidates(candidates.classes[keep], candidates.scores[keep], candidates.boxes[keep])


def to_detections(
    info: model_pb2.ModelInfo,
    outputs: list[np.ndarray],
    transform: Transform,
    image_size: tuple[int, int],
    settings: Settings,
) -> detection_pb2.Detections:
    """Detections in the original image's pixels, highest confidence first."""
    categories = info.categories
    result = detection_pb2.Detections()
    version = info.version
    decoder = info.output.decoder
    if decoder == model_pb2.OUTPUT_DECODER_CLASSIFIER:
        probabilities = decoders.classifier(outputs)
        for index in probabilities.argsort()[::-1][: settings.max_objects]:
            if probabilities[index] < settings.score_threshold or index >= len(categories):
                continue
            category = categories[index]
            result.classifications.append(
                detection_pb2.ClassificationDetection(
                    category_id=category.id,
                    category_name=category.name,
                    confidence=float(probabilities[index]),
                    model_version=version,
                )
            )
        return result
    if decoder == model_pb2.OUTPUT_DECODER_YOLOV8:
        candidates = decoders.yolov8(outputs, settings.score_threshold, len(categories))
    else:
        stride = int(info.output.parameters.get("stride", "4"))
        candidates = decoders.centernet(outputs, settings.score_threshold, stride)
    candidates = _suppress(candidates, settings)
    width, height = image_size
    x1, y1 = transform.to_original(candidates.boxes[:, 0], candidates.boxes[:, 1])
    x2, y2 = transform.to_original(candidates.boxes[:, 2], candidates.boxes[:, 3])
    x1, x2 = np.clip(x1, 0, width), np.clip(x2, 0, width)
    y1, y2 = np.clip(y1, 0, height), np.clip(y2, 0, height)
    # Plain Python floats and add() in place: a hundred boxes per frame make per-field numpy
    # scalars and message copies the larger part of post-processing.
    rows = zip(
        candidates.classes.tolist(),
        candidates.scores.tolist(),
        x1.tolist(),
        y1.tolist(),
        x2.tolist(),
        y2.tolist(),
        strict=True,
    )
    for class_index, score, left, top, right, bottom in rows:
        if class_index >= len(categories):
            continue
        category = categories[class_index]
        if category.type == category_pb2.CATEGORY_TYPE_POINT:
            result.points.add(
                category_id=category.id,
                category_name=category.name,
                confidence=score,
                model_version=version,
                point=geometry_pb2.Point(x=(left + right) / 2, y=(top + bottom) / 2),
            )
        else:
            result.boxes.add(
                category_id=category.id,
                category_name=category.name,
                confidence=score,
                model_version=version,
                box=geometry_pb2.Box(x=left, y=top, width=right - left, height=bottom - top),
            )
    return result
