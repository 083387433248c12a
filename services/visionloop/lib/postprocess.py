"""Decoded candidates to ``Detections``: thresholds, NMS, limits, original-image coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from visionloop.common.v1 import category_pb2, detection_pb2, model_pb2
from visionloop.lib import decoders
from visionloop.lib.preprocess import Transform
from visionloop.lib.shapes import encode_mask
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
    """Greedy NMS, at most ``max_objects`` kept. Greedy NMS decides each box from higher-scored ones
    only, so NMS over the best ``k`` candidates keeps exactly the first boxes NMS over all would
    keep: start with ``k = max_objects`` and widen only while fewer than that survive. A frame
    with 266 candidates and 100 kept costs 0.1 ms instead of 0.6 ms (the work grows with k^2)."""
    if candidates.scores.size == 0:
        return candidates
    boxes = candidates.boxes
    if not settings.class_agnostic:  # shift classes apart so boxes of different classes never overlap
        shift = (boxes.max() + 1.0) * candidates.classes.astype(np.float32)
        boxes = boxes + shift[:, None]
    order = np.argsort(-candidates.scores, kind="stable")
    k = settings.max_objects
    while True:
        best = order[:k]
        kept = best[decoders.nms(boxes[best], candidates.scores[best], settings.iou_threshold)]
        if kept.size >= settings.max_objects or k >= order.size:
            break
        k *= 4
    return candidates.take(kept[: settings.max_objects])


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
    if decoder == model_pb2.OUTPUT_DECODER_YOLOV8_SEGMENT:
        masks = outputs[1].shape[0]
        candidates = _suppress(decoders.yolov8(outputs, settings.score_threshold, len(categories), masks), settings)
        return _segmentations(info, outputs[1], candidates, transform, image_size, result)
    if decoder == model_pb2.OUTPUT_DECODER_YOLOV8:
        candidates = decoders.yolov8(outputs, settings.score_threshold, len(categories))
    else:
        stride = int(info.output.parameters.get("stride", "4"))
        candidates = decoders.centernet(outputs, settings.score_threshold, stride)
    candidates = _suppress(candidates, settings)
    x1, y1, x2, y2 = _original_boxes(candidates.boxes, transform, image_size).T
    # Plain Python floats, add() in place and fields set on the nested message: a hundred boxes
    # per frame make per-field numpy scalars and message copies the larger part of post-processing.
    rows = zip(
        candidates.classes.tolist(),
        candidates.scores.tolist(),
        x1.tolist(),
        y1.tolist(),
        x2.tolist(),
        y2.tolist(),
        strict=True,
    )
    # (id, name, is a point) per class index, read from the protobuf once rather than per box.
    kinds = [(c.id, c.name, c.type == category_pb2.CATEGORY_TYPE_POINT) for c in categories]
    add_box, add_point = result.boxes.add, result.points.add
    for class_index, score, left, top, right, bottom in rows:
        if class_index >= len(kinds):
            continue
        category_id, category_name, is_point = kinds[class_index]
        if is_point:
            point = add_point(
                category_id=category_id, category_name=category_name, confidence=score, model_version=version
            ).point
            point.x, point.y = (left + right) / 2, (top + bottom) / 2
        else:
            box = add_box(
                category_id=category_id, category_name=category_name, confidence=score, model_version=version
            ).box
            box.x, box.y, box.width, box.height = left, top, right - left, bottom - top
    return result


def _original_boxes(boxes: np.ndarray, transform: Transform, image_size: tuple[int, int]) -> np.ndarray:
    """Boxes [K, 4] from model input pixels to the original image's, clipped to it."""
    width, height = image_size
    x1, y1 = transform.to_original(boxes[:, 0], boxes[:, 1])
    x2, y2 = transform.to_original(boxes[:, 2], boxes[:, 3])
    return np.stack([np.clip(x1, 0, width), np.clip(y1, 0, height), np.clip(x2, 0, width), np.clip(y2, 0, height)], 1)


def _segmentations(
    info: model_pb2.ModelInfo,
    protos: np.ndarray,
    candidates: decoders.Candidates,
    transform: Transform,
    image_size: tuple[int, int],
    result: detection_pb2.Detections,
) -> detection_pb2.Detections:
    """Masks for the kept candidates as Ultralytics' predict makes them: in the model input, then the
    letterbox's content scaled to the original image (bilinear, above one half). A candidate whose
    mask is empty in the model input is dropped, as Ultralytics drops it."""
    assert candidates.coefficients is not None
    width, height = image_size
    masks = decoders.instance_masks(
        protos, candidates.coefficients, candidates.boxes, (transform.input_width, transform.input_height)
    )
    left, top = round(transform.offset_x), round(transform.offset_y)
    right = left + max(1, round(width * transform.scale_x))
    bottom = top + max(1, round(height * transform.scale_y))
    boxes = _original_boxes(candidates.boxes, transform, image_size)
    categories, version = info.categories, info.version
    for index, class_index in enumerate(candidates.classes.tolist()):
        if class_index >= len(categories) or not masks[index].any():
            continue
        content = masks[index, top:bottom, left:right].astype(np.float32)
        mask = (cv2.resize(content, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
        category = categories[class_index]
        detection = result.segmentations.add(
            category_id=category.id,
            category_name=category.name,
            confidence=float(candidates.scores[index]),
            model_version=version,
        )
        x1, y1, x2, y2 = boxes[index].tolist()
        box = detection.bounding_box
        box.x, box.y, box.width, box.height = x1, y1, x2 - x1, y2 - y1
        detection.mask.CopyFrom(encode_mask(mask))
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if contours:
            outline = max(contours, key=cv2.contourArea).reshape(-1, 2).tolist()
            for x, y in outline:
                detection.polygon.points.add(x=float(x), y=float(y))
    return result
