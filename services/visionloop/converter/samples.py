"""Images a conversion is checked and calibrated on: the project's own, as the detector sees them.

Validation images are the project's complete, annotated images: their annotations are the
truth the mAP@0.5 change is measured against. Every image goes through the detector's decoding
and pre-processing for the model at hand, so parity is judged on the inputs it will serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from visionloop.common.v1 import annotation_pb2, image_pb2, model_pb2
from visionloop.detector.preprocess import Frame, Transform, decode, prepare

MAX_IMAGE_BYTES = 64 * 1024**2
MAX_IMAGE_PIXELS = 100_000_000


@dataclass(frozen=True)
class ValidationImage:
    image_id: str
    data: bytes  # JPEG or PNG as stored by the hub
    annotations: Sequence[annotation_pb2.Annotation] = ()


@dataclass(frozen=True)
class Samples:
    """What a conversion runs on besides the model: validation images and calibration images."""

    validation: Sequence[ValidationImage] = ()
    calibration: Sequence[bytes] = ()


@dataclass(frozen=True)
class Prepared:
    tensor: np.ndarray  # [3, H, W] float32
    transform: Transform
    size: tuple[int, int]  # the frame's width, height
    annotations: Sequence[annotation_pb2.Annotation] = field(default_factory=tuple)


def _frame(data: bytes) -> Frame | None:
    try:
        return decode(image_pb2.Image(encoded=data), MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS)
    except Exception:  # a stored image that no longer decodes is left out, not a failed conversion
        return None


def prepare_all(images: Sequence[ValidationImage], spec: model_pb2.ModelInput) -> list[Prepared]:
    """Each image decoded and pre-processed for the model with input ``spec``."""
    prepared = []
    for image in images:
        frame = _frame(image.data)
        if frame is None:
            continue
        tensor, transform = prepare(frame, spec, spec.rescale_type)
        prepared.append(Prepared(tensor, transform, (frame.width, frame.height), tuple(image.annotations)))
    return prepared


def calibration_tensors(images: Sequence[bytes], spec: model_pb2.ModelInput) -> list[np.ndarray]:
    return [p.tensor for p in prepare_all([ValidationImage("", data) for data in images], spec)]


def parity_inputs(prepared: Sequence[Prepared], spec: model_pb2.ModelInput, count: int) -> np.ndarray:
    """A batch of ``count`` inputs: project images first, then seeded random images."""
    tensors = [p.tensor for p in prepared[:count]]
    rng = np.random.default_rng(0)
    while len(tensors) < count:
        tensors.append(rng.random((3, spec.height, spec.width), dtype=np.float32))
    return np.stack(tensors)
