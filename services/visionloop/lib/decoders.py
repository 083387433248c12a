"""Model outputs to detections: the YOLOv8 export layouts (boxes, and boxes with masks), VisionLoop's
CenterNet layout, classifiers.

Decoders work in the model's input pixels and return candidates; ``postprocess`` applies NMS,
limits and the mapping back to the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from visionloop.common.v1 import model_pb2


@dataclass(frozen=True)
class Candidates:
    """Per candidate: class index, score, and a box (x1, y1, x2, y2) or a point (x, y, x, y)."""

    classes: np.ndarray  # int, [K]
    scores: np.ndarray  # float, [K]
    boxes: np.ndarray  # float, [K, 4]
    coefficients: np.ndarray | None = None  # float, [K, M]: mask coefficients (segmentation models)

    def take(self, keep: np.ndarray) -> Candidates:
        coefficients = None if self.coefficients is None else self.coefficients[keep]
        return Candidates(self.classes[keep], self.scores[keep], self.boxes[keep], coefficients)


_NEIGHBOURS = np.ones((3, 3), np.uint8)
EMPTY = Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 4), np.float32))


def yolov8(outputs: list[np.ndarray], score_threshold: float, classes: int, masks: int = 0) -> Candidates:
    """Ultralytics export: one output [4 + C (+ M), A] per image, (cx, cy, w, h), class scores, and
    for segmentation models M mask coefficients."""
    prediction = outputs[0]
    if prediction.ndim != 2 or prediction.shape[0] != 4 + classes + masks:
        extra = f"+{masks}" if masks else ""
        raise ValueError(f"YOLOv8 output must be [4+{classes}{extra}, anchors] per image, got {list(prediction.shape)}")
    # Threshold on the best score first, then argmax only the survivors: most anchors are background.
    scores = prediction[4 : 4 + classes].max(axis=0)
    keep = np.flatnonzero(scores >= score_threshold)
    if keep.size == 0:  # a segmentation model's candidates carry coefficients, if none
        return EMPTY if not masks else replace(EMPTY, coefficients=np.zeros((0, masks), np.float32))
    kept = prediction[:, keep]
    best = kept[4 : 4 + classes].argmax(axis=0)
    cx, cy, w, h = kept[:4]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    coefficients = kept[4 + classes :].T.astype(np.float32, copy=False) if masks else None
    return Candidates(best, scores[keep], boxes.astype(np.float32, copy=False), coefficients)


def instance_masks(
    protos: np.ndarray, coefficients: np.ndarray, boxes: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Binary masks [K, H, W] (uint8) at the model input's ``size`` (width, height), as Ultralytics'
    ``process_mask(upsample=True)``: prototypes [M, h, w] weighted by each candidate's coefficients,
    upsampled bilinearly (half-pixel centres), above 0, and cut to the candidate's box."""
    width, height = size
    count, (m, h, w) = coefficients.shape[0], protos.shape
    result = np.zeros((count, height, width), np.uint8)
    if count == 0:
        return result
    logits = (coefficients @ protos.reshape(m, h * w).astype(np.float32)).reshape(count, h, w)
    columns, rows = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    for index in range(count):
        upsampled = cv2.resize(logits[index], (width, height), interpolation=cv2.INTER_LINEAR)
        x1, y1, x2, y2 = boxes[index]
        inside = ((rows >= y1) & (rows < y2))[:, None] & ((columns >= x1) & (columns < x2))[None, :]
        np.logical_and(upsampled > 0, inside, out=result[index].view(bool))
    return result


def centernet(outputs: list[np.ndarray], score_threshold: float, stride: int) -> Candidates:
    """VisionLoop's reference layout: heatmap [C, H/s, W/s] (sigmoid scores), size [2, ...] (w, h in
    input pixels), offset [2, ...] (sub-cell x, y in cells). Peaks are 3x3 local maxima."""
    heatmap, size, offset = outputs[0], outputs[1], outputs[2]
    above = heatmap >= score_threshold
    # A 3x3 max filter per class with candidates (cv2.dilate treats outside as -inf): a peak equals
    # its neighbourhood's maximum. A numpy sliding-window max took 12 ms on a 640x640 input's maps.
    peaks = np.zeros(heatmap.shape, bool)
    for index in np.flatnonzero(above.reshape(above.shape[0], -1).any(axis=1)).tolist():
        plane = np.asarray(heatmap[index], np.float32)
        np.logical_and(above[index], plane >= cv2.dilate(plane, _NEIGHBOURS), out=peaks[index])
    cls, ys, xs = np.nonzero(peaks)
    if cls.size == 0:
        return EMPTY
    scores = heatmap[cls, ys, xs]
    cx = (xs + offset[0, ys, xs]) * stride
    cy = (ys + offset[1, ys, xs]) * stride
    w, h = size[0, ys, xs], size[1, ys, xs]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return Candidates(cls.astype(np.int64), scores.astype(np.float32), boxes)


def classifier(outputs: list[np.ndarray]) -> np.ndarray:
    """Class probabilities [C]; logits are turned into probabilities with softmax."""
    values = outputs[0].reshape(-1).astype(np.float64)
    if values.min() < 0 or values.max() > 1 or not np.isclose(values.sum(), 1.0, atol=1e-3):
        exp = np.exp(values - values.max())
        values = exp / exp.sum()
    return values.astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first (OpenCV's C++ loop)."""
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # Lists, not arrays: OpenCV's binding converts a list of boxes faster than an Nx4 array.
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou_threshold)  # scores were thresholded
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def decoder_name(decoder: int) -> str:
    return model_pb2.OutputDecoder.Name(decoder).removeprefix("OUTPUT_DECODER_").lower()
