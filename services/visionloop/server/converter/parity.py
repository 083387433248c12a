"""The parity check: a converted model publishes only when it still answers like its source.

FP32 conversions (PyTorch → ONNX, Triton entries) must match on every output value within
``CONVERTER_FP32_MAX_ABS_DIFF`` (1e-4) on sample inputs. FP16 and INT8 change values by design,
so they are judged by what matters: the mAP@0.5 change on the project's validation images,
decoded exactly as the detector decodes them, refused past the configured drop. Without
validation images the mAP change cannot be measured: the report then says so and carries the
largest output difference only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from visionloop.common.v1 import model_pb2
from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.lib import postprocess
from visionloop.lib.evaluation import evaluate, predictions_from_detections, truths_from_annotations
from visionloop.server.converter.exporters import Runner
from visionloop.server.converter.samples import Prepared

BATCH = 8
MAP_SCORE_THRESHOLD = 0.05  # AP needs the low-confidence detections too
NO_VALIDATION = "no validation images"


def max_abs_diff(reference: Sequence[np.ndarray], converted: Sequence[np.ndarray]) -> float:
    """Largest absolute difference over every output value; inf when shapes or counts differ or NaN appears."""
    if len(reference) != len(converted):
        return float("inf")
    worst = 0.0
    for a, b in zip(reference, converted, strict=True):
        if a.shape != b.shape:
            return float("inf")
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        with np.errstate(invalid="ignore"):
            diff = np.where(a64 == b64, 0.0, np.abs(a64 - b64))  # equal infinities are no difference
        if diff.size:
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    return worst


def run_batched(runner: Runner, inputs: np.ndarray, fixed_batch: int = 0) -> list[np.ndarray]:
    """``runner`` over ``inputs`` in batches of at most BATCH, outputs concatenated. A graph with a fixed
    batch dimension (``fixed_batch``, e.g. 1 for Ultralytics' default export) gets exactly that many
    images per run, the last run padded with zeros and its padding's outputs dropped."""
    step = fixed_batch or BATCH
    parts = []
    for start in range(0, len(inputs), step):
        chunk = inputs[start : start + step]
        count = len(chunk)
        if fixed_batch and count < fixed_batch:
            chunk = np.concatenate([chunk, np.zeros((fixed_batch - count, *chunk.shape[1:]), chunk.dtype)])
        parts.append([output[:count] for output in runner(np.ascontiguousarray(chunk))])
    return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]


def map50(runner: Runner, info: model_pb2.ModelInfo, images: Sequence[Prepared]) -> float:
    """mAP@0.5 of ``runner`` on ``images`` with the detector's decoding and the model's categories."""
    defaults = info.detection_defaults
    settings = postprocess.Settings(
        MAP_SCORE_THRESHOLD, defaults.iou_threshold or 0.45, defaults.max_objects or 100, class_agnostic=False
    )
    outputs = run_batched(runner, np.stack([p.tensor for p in images]), info.input.batch_size)
    truths, predictions = [], []
    for i, image in enumerate(images):
        detections = postprocess.to_detections(info, [o[i] for o in outputs], image.transform, image.size, settings)
        predictions.append(predictions_from_detections(detections))
        truths.append(truths_from_annotations(image.annotations))
    categories = [c.name for c in info.categories]
    return evaluate(truths, predictions, categories, score_threshold=defaults.score_threshold or 0.3).map50


@dataclass(frozen=True)
class Verdict:
    report: pb.ParityReport
    reason: str  # why it failed, or a note on a pass (e.g. no validation images); "" otherwise


def check_exact(
    reference: Runner, converted: Runner, inputs: np.ndarray, tolerance: float, fixed_batch: int = 0
) -> Verdict:
    """FP32: every output value within ``tolerance``."""
    diff = max_abs_diff(run_batched(reference, inputs, fixed_batch), run_batched(converted, inputs, fixed_batch))
    passed = diff <= tolerance
    report = pb.ParityReport(max_abs_diff=diff, samples=len(inputs), passed=passed)
    reason = "" if passed else f"parity check failed: max abs diff {diff:.3g} > {tolerance:g} on {len(inputs)} samples"
    return Verdict(report, reason)


def check_map(
    reference: Runner,
    converted: Runner,
    inputs: np.ndarray,
    info: model_pb2.ModelInfo,
    validation: Sequence[Prepared],
    max_drop: float,
) -> Verdict:
    """FP16/INT8: the mAP@0.5 drop on the validation images at most ``max_drop``."""
    batch = info.input.batch_size
    diff = max_abs_diff(run_batched(reference, inputs, batch), run_batched(converted, inputs, batch))
    annotated = [p for p in validation if p.annotations]
    if not annotated:
        report = pb.ParityReport(max_abs_diff=diff, samples=len(inputs), passed=True)
        return Verdict(report, f"{NO_VALIDATION}: mAP@0.5 change not measured; max abs diff {diff:.3g}")
    before, after = map50(reference, info, annotated), map50(converted, info, annotated)
    drop = before - after
    passed = drop <= max_drop + 1e-12
    report = pb.ParityReport(
        max_abs_diff=diff, source_map50=before, converted_map50=after, samples=len(annotated), passed=passed
    )
    reason = (
        ""
        if passed
        else f"parity check failed: mAP@0.5 dropped by {drop:.3f} ({before:.3f} -> {after:.3f}) on "
        f"{len(annotated)} validation images, more than the allowed {max_drop:g}"
    )
    return Verdict(report, reason)
